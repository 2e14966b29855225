"""What every service shares, below them all: settings, live parameters, the
domain event bus, metrics, address networks, ids, logging, periodic tasks."""
