"""Lambda entry point: the FastAPI app behind API Gateway, through Mangum.

Import cost is the cold start: the app is built here, but boto3, argon2 and jwt
are imported only when a request first needs them (see shared/wiring.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from functions.api.app import create_app
from functions.observability import logger
from shared.settings import load_settings

app = create_app(load_settings())
_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _asgi(event, context)
