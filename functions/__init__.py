"""Lambda functions: the HTTP API (functions/api) and the event handlers (functions/events)."""
