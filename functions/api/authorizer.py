"""The REST API's Lambda authorizer (TOKEN) on the routes that start work.

API Gateway calls it with the ``Authorization`` header of a request to one of
``EXPENSIVE_ROUTES`` (infra/constructs/api.py) and caches its answer per header for
five minutes. The bearer credential is checked as the API checks it
(``AuthService.identify``: a JWT access token or a static API token, resolved to its
user as stored now); the answer allows this API stage's methods (any of them: the
answer is cached per token, whichever expensive route asked) and names the user's key
(``usageIdentifierKey``), which puts the request in the usage plan of the user's plan
tier: that plan's throttle and daily quota, per user, before the function is invoked.
A missing, bad or expired credential: "Unauthorized", which API Gateway answers 401.

The API checks the credential again, with the user's own windows (functions/api/deps.py):
a plan change or a demotion shows there within seconds, in the gateway's plan after the
cache's five minutes at most.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from functions.observability import logger
from shared.errors import Unauthorized
from shared.settings import load_settings
from shared.wiring import Container, build

SCHEME = "bearer"


@cache
def container() -> Container:
    return build(load_settings())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    c = container()
    scheme, _, token = (event.get("authorizationToken") or "").strip().partition(" ")
    try:
        if scheme.lower() != SCHEME or not token.strip():
            raise Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
        found = c.auth.identify(token.strip())
        if found is None:  # never so: with read=True it reads the user
            raise Unauthorized("Invalid token", code="INVALID_TOKEN")
    except Unauthorized as exc:
        logger.info("refused", extra={"reason": exc.code})
        raise Exception("Unauthorized") from None  # API Gateway answers 401
    principal, user = found
    plan = c.plans.plan_of(principal.user_id, user).name
    return {
        "principalId": str(principal.user_id),
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": stage_methods(event["methodArn"]),
                }
            ],
        },
        "usageIdentifierKey": c.usage_keys.key_for(principal.user_id, plan),
        "context": {"user_id": principal.user_id, "plan": plan},
    }


def stage_methods(method_arn: str) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<VERB>/<path>`` -> every
    method of that API stage (``.../<api>/<stage>/*``)."""
    prefix, _, path = method_arn.partition(":execute-api:")
    parts = path.split("/")
    if not prefix or len(parts) < 3:
        raise ValueError(f"not a method ARN: {method_arn!r}")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}/*"
