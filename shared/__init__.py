"""Crucible's core library: settings, domain models, ports, services, adapters and event contracts.

No web framework is imported here; the same code runs in Lambda, in Batch
containers and in the local all-in-one stack.
"""
