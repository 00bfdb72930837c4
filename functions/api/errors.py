"""One error format for every failure: ``{"detail", "code", "field"}`` (seed 002's),
a superset of FastAPI's ``{"detail"}``. Each domain error carries its HTTP status
(shared/errors.py), the same one the WebSocket handler answers with."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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


def error_body(detail: str, code: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, "field": field, **extra}


async def _domain(_: Request, exc: e.CrucibleError) -> JSONResponse:
    status = exc.http_status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    extra: dict[str, Any] = {}
    if isinstance(exc, e.RateLimited):
        headers.update(
            {
                "X-RateLimit-Limit": str(exc.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(exc.reset_at),
                "Retry-After": "60",
            }
        )
        extra = {"limit": exc.limit, "reset_at": exc.reset_at}
    return JSONResponse(
        error_body(exc.detail, exc.code, exc.field, **extra), status_code=status, headers=headers
    )


def _field(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
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
        error_body(detail, "VALIDATION_ERROR", field, errors=errors), status_code=422
    )


async def _http(_: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(error_body(detail, code), status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.CrucibleError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)


class BodySizeLimit:
    """Refuse a body larger than ``max_bytes`` with 413 before reading it (pure ASGI)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                mb = self.max_bytes / 1024 / 1024
                body = error_body(f"Request body is larger than {mb:g} MB", "PAYLOAD_TOO_LARGE")
                await JSONResponse(body, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)
