"""Lambda entry point: the FastAPI app behind API Gateway, through Mangum.

Import cost is the cold start. boto3, argon2 and jwt are imported only when a request
first needs them (see shared/wiring.py), and building routes is most of what is left: a
request gets an app of only the router modules its path can reach
(``functions/api/routes.py``), built on first use and kept, all over one container.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from functions.api.app import create_app
from functions.api.errors import error_body
from functions.api.routes import modules_for
from functions.observability import logger
from shared.settings import load_settings
from shared.wiring import build

settings = load_settings()
container = build(settings)


@cache
def _asgi(modules: frozenset[str] | None) -> Mangum:
    return Mangum(create_app(settings, container, modules=modules), lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    path = event.get("path") or event.get("rawPath") or "/"
    if "%2f" in path.lower():
        # API Gateway routes /a%2Fb as one segment, the app (decoded) as two: such a path
        # could reach a route past the gateway's authorizer and usage plan for it.
        detail = "An encoded slash (%2F) is not allowed in a path"
        return _refused(detail, "ENCODED_SLASH", getattr(context, "aws_request_id", None))
    return _asgi(modules_for(unquote(path)))(event, context)


def _refused(detail: str, code: str, request_id: str | None) -> dict[str, Any]:
    return {
        "statusCode": 400,
        "headers": {"Content-Type": "application/json", "X-Request-ID": request_id or ""},
        "body": json.dumps(error_body(detail, code, request_id=request_id)),
        "isBase64Encoded": False,
    }
