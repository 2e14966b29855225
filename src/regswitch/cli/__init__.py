"""The `regswitch` command: `serve` (it starts the server: this package sits
above it) and the operator commands, which use the HTTP API only."""
