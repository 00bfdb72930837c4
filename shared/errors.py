"""Domain errors. Each carries a stable machine-readable ``code``; the API maps
the error class to an HTTP status in one place (functions/api/errors.py)."""

from __future__ import annotations


class CrucibleError(Exception):
    """Base class: a message for people, a code for programs, and the field at fault."""

    code = "BAD_REQUEST"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code:
            self.code = code


class InvalidInput(CrucibleError):
    code = "INVALID_REQUEST"


class Unauthorized(CrucibleError):
    code = "UNAUTHORIZED"


class Forbidden(CrucibleError):
    code = "FORBIDDEN"


class NotFound(CrucibleError):
    code = "NOT_FOUND"


class Conflict(CrucibleError):
    code = "CONFLICT"


class InvalidState(CrucibleError):
    """A state change that the state machine does not allow from the current state."""

    code = "INVALID_STATUS"


class TooLarge(CrucibleError):
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(CrucibleError):
    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, detail: str, *, limit: int, reset_at: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.reset_at = reset_at
