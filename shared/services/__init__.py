"""Use cases. Services take ports and settings, return domain models, raise domain errors."""
