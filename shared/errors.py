"""Domain errors. Each carries a stable machine-readable ``code`` and the HTTP status it
answers with (``http_status``), so the API and the WebSocket handler map errors alike."""

from __future__ import annotations


class CrucibleError(Exception):
    """Base class: a message for people, a code for programs, and the field at fault."""

    code = "BAD_REQUEST"
    http_status = 400

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code:
            self.code = code


class InvalidInput(CrucibleError):
    code = "INVALID_REQUEST"
    http_status = 400


class Unauthorized(CrucibleError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(CrucibleError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(CrucibleError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(CrucibleError):
    code = "CONFLICT"
    http_status = 409


class InvalidState(CrucibleError):
    """A state change that the state machine does not allow from the current state."""

    code = "INVALID_STATUS"
    http_status = 409


class TooLarge(CrucibleError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class RateLimited(CrucibleError):
    code = "RATE_LIMIT_EXCEEDED"
    http_status = 429

    def __init__(self, detail: str, *, limit: int, reset_at: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.reset_at = reset_at
