"""One error body for every failure, in both seeds' shapes at once: ``{"detail", "code",
"field"}`` (seed 002's, a superset of FastAPI's ``{"detail"}``) and ``"error": {"code",
"message", "details", "request_id"}`` (seed 003's). Each domain error carries its HTTP status
(shared/errors.py), the same one the WebSocket handler answers with. An unexpected
exception answers 500 with a generic message and the request id; its detail goes to the
log only.

Two pure ASGI middlewares wrap every request: :class:`RequestContext` (the request id and
the caller's rate-limit state, written as headers on every response, whatever the route
returns) and :class:`BodySizeLimit` (413 once the body passes the limit, counted as it
arrives, chunked or not).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from functions.observability import logger
from shared import errors as e

_HTTP_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
}


def error_body(
    detail: str,
    code: str,
    field: str | None = None,
    *,
    request_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The error body: seed 002's fields at the top, seed 003's under ``error``."""
    details: dict[str, Any] = {k: v for k, v in extra.items() if k != "request_id"}
    if field:
        details = {"field": field, **details}
    return {
        "detail": detail,
        "code": code,
        "field": field,
        **extra,
        **({"request_id": request_id} if request_id else {}),
        "error": {"code": code, "message": detail, "details": details, "request_id": request_id},
    }


async def _domain(request: Request, exc: e.CrucibleError) -> JSONResponse:
    status = exc.http_status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    extra: dict[str, Any] = {}
    if isinstance(exc, e.RateLimited):
        headers.update(
            {
                "X-RateLimit-Limit": str(exc.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(exc.reset_at),
                "Retry-After": str(max(1, exc.reset_at - int(time.time()))),
            }
        )
        extra = {"limit": exc.limit, "reset_at": exc.reset_at}
    retry_after = getattr(exc, "retry_after", None)  # e.g. a model still warming up (503)
    if retry_after and "Retry-After" not in headers:
        headers["Retry-After"] = str(retry_after)
    extra.update(getattr(exc, "details", None) or {})  # e.g. an unknown model's suggestions
    body = error_body(
        exc.detail, exc.code, exc.field, request_id=request_id(request.scope), **extra
    )
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
    field = _field(first.get("loc", ()))
    detail = f"{field}: {first['msg']}" if field else str(first["msg"])
    errors = [
        {
            "loc": list(er.get("loc", ())),
            "field": _field(er.get("loc", ())),
            "msg": er["msg"],
            "type": er["type"],
        }
        for er in errs
    ]
    return JSONResponse(
        error_body(
            detail, "VALIDATION_ERROR", field, request_id=request_id(request.scope), errors=errors
        ),
        status_code=422,
    )


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    body = error_body(detail, code, request_id=request_id(request.scope))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


# botocore's names for "the service could not be reached" (the local emulator restarting,
# a network blip in AWS): the request may simply be tried again. Matched by name, since only
# adapters import botocore.
_UNREACHABLE = frozenset(
    {"EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError", "ReadTimeoutError"}
)


def _unreachable(exc: BaseException) -> bool:
    return any(
        cls.__name__ in _UNREACHABLE and cls.__module__.startswith("botocore")
        for cls in type(exc).__mro__
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    """A bug or an outage: the detail is logged with the request id, never sent. A backing
    service that cannot be reached for a moment is a 503 with ``Retry-After``."""
    rid = request_id(request.scope)
    if _unreachable(exc):
        logger.warning(
            "backing service unreachable in %s %s: %s", request.method, request.url.path, exc
        )
        body = error_body(
            "A service Crucible depends on is briefly unreachable; retry in a few seconds",
            "SERVICE_UNAVAILABLE",
            request_id=rid,
        )
        return JSONResponse(
            body, status_code=503, headers={"X-Request-ID": rid, "Retry-After": "2"}
        )
    logger.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, rid)
    body = error_body(
        f"Internal server error; quote request id {rid} when reporting it",
        "INTERNAL_ERROR",
        request_id=rid,
    )
    return JSONResponse(body, status_code=500, headers={"X-Request-ID": rid})


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.CrucibleError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unhandled)


# --- middleware ---------------------------------------------------------------------


def _state(scope: dict) -> dict[str, Any]:
    """The request's state (``request.state``), shared by the middlewares and the routes."""
    return scope.setdefault("state", {})


def request_id(scope: dict) -> str:
    """API Gateway's request id in Lambda (the one its logs show), else a new one."""
    state = _state(scope)
    if "request_id" not in state:
        ctx = (scope.get("aws.event") or {}).get("requestContext") or {}
        state["request_id"] = str(ctx.get("requestId") or uuid.uuid4().hex)
    return state["request_id"]


def set_rate_limit(scope: dict, limit: int, remaining: int, reset: int) -> None:
    """Record the caller's rate-limit state; :class:`RequestContext` writes it as headers."""
    _state(scope)["rate_limit"] = (limit, remaining, reset)


class RequestContext:
    """Give every response ``X-Request-ID`` and, once the caller is counted, the
    ``X-RateLimit-*`` headers: in the ASGI send, so a route returning its own
    ``Response`` (a stream, a redirect, a 204) carries them too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        state = _state(scope)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"x-request-id", rid.encode())]
                if state.get("rate_limit"):
                    limit, remaining, reset = state["rate_limit"]
                    extra += [
                        (b"x-ratelimit-limit", str(limit).encode()),
                        (b"x-ratelimit-remaining", str(remaining).encode()),
                        (b"x-ratelimit-reset", str(reset).encode()),
                    ]
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit; an HTTPException, so
    FastAPI's body parsing lets it through instead of calling it a parsing error."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


# The presigned routes that take what the API cannot (bodies past the Lambda event's
# limit), by the path a too-large body was sent to.
LARGER_FILES = (
    (
        "/audio-files/",
        "POST /api/v1/audio-files/presign (a presigned POST), or "
        "POST /api/v1/audio-files/multipart (a multipart upload)",
    ),
    ("/datasets", "POST /api/v1/datasets/presign (a presigned POST of the zip)"),
)


class BodySizeLimit:
    """Refuse a body larger than ``max_bytes`` with 413: at once when ``Content-Length``
    says so, else as soon as the bytes received pass it (a chunked body has no length).
    Whatever the app does with the refused body (it gets an exception on its next read),
    the client gets the 413; nothing after the limit is read into the app."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        detail = (
            f"Request body is larger than {self.max_bytes:,} bytes "
            f"({self.max_bytes / 2**20:.1f} MiB), the most the API takes"
        )
        path = scope.get("path", "")
        instead = next((route for part, route in LARGER_FILES if part in path), None)
        if instead:
            detail += f"; send larger files straight to storage: {instead}"
        body = error_body(detail, "PAYLOAD_TOO_LARGE", request_id=request_id(scope))
        await JSONResponse(body, status_code=413)(scope, receive, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received, too_large, started = 0, False, False

        async def counting_receive() -> dict:
            nonlocal received, too_large
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if too_large and not started:
                return  # the app's answer to the refused body; ours is sent below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large:  # however the app wrapped our exception, the answer is 413
                raise
        if too_large and not started:
            await self._refuse(scope, receive, send)
