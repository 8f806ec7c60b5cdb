"""The SDK's version (one place, read by packaging and by task-service metadata)."""

__version__ = "0.1.0"
