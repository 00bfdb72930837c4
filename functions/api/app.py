"""The FastAPI application: everything under /api/v1, OpenAPI at /docs, /redoc, /openapi.json."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import FastAPI

from functions.api import errors, openapi, routers
from shared.settings import Settings
from shared.wiring import Container, build

DESCRIPTION = """
Crucible unifies five systems (infant-cry analysis, ASR training, vision training,
chat-driven workflows, a research leaderboard) on one serverless core.

**Auth**: `POST /api/v1/auth/login` (or `/auth/token`) returns a bearer token; send it as
`Authorization: Bearer <token>`. Static API tokens (`API_TOKENS`) work the same way.

**Errors** carry both seeds' shapes in one body: `{{"detail", "code", "field"}}` and
`"error": {{"code", "message", "details", "request_id"}}`; every response carries
`X-Request-ID` (an unexpected error's body quotes it, and nothing else).

**Rate limits**: authenticated responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining`
and `X-RateLimit-Reset`; past the limit the API answers 429 with `Retry-After`. Register,
login, token, refresh and the internal callback are limited per client address and per
account named, before authentication.

**Uploads**: a request body through the API is at most {max_body:,} bytes
({max_body_mib:.1f} MiB; in AWS the API runs in Lambda, whose 6 MiB event carries a file
base64-encoded); past it the API answers 413 naming the route to use instead. Larger
files go straight to storage: `POST /api/v1/audio-files/presign` (a presigned POST, up
to seed 001's {max_audio_mb} MB) or `/audio-files/multipart`, and
`POST /api/v1/datasets/presign` for dataset zips.

**Predictions** invoke the model once, never retried into a second invocation: a cold
model that cannot answer within the API's time answers 503 `MODEL_WARMING_UP` with
`Retry-After`; it goes on loading, so the retry finds it warm.
"""


def create_app(
    settings: Settings,
    container: Container | None = None,
    *,
    modules: Collection[str] | None = None,
) -> FastAPI:
    """The API; with ``modules``, only those routers' routes (the Lambda handler builds
    what a request's path can reach: ``functions/api/routes.py``)."""
    app = FastAPI(
        title="Crucible",
        version="0.1.0",
        description=DESCRIPTION.format(
            max_body=settings.max_request_bytes,
            max_body_mib=settings.max_request_bytes / 2**20,
            max_audio_mb=settings.max_audio_bytes // 2**20,
        ),
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    app.state.container = container or build(settings)
    errors.install(app)
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(errors.RequestContext)  # outside BodySizeLimit: its 413 gets the headers
    routers.include(app, modules)
    openapi.install(app)  # the error bodies, headers and links the routes cannot declare
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Retry-After",
                "X-Request-ID",
            ],
        )
    return app
