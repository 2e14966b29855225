"""The running switch: `Switch` holds the services (registrar, calls,
protection, keepalive, retention) that the server builds and the console
operates."""
