"""The local all-in-one stack (`make dev`): the embedded AWS emulator, its resources,
the event dispatcher that stands in for Lambda triggers, and the dev server."""
