"""Event handlers: one small Lambda handler per event source, each idempotent.

Each module exposes ``handler(event, context)`` (the Lambda entry point) over a
``handle(event, container)`` that takes its services explicitly, so the local
dispatcher and the tests call the very same code with the very same event JSON.
"""
