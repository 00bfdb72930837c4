"""API Gateway WebSocket routes: ``$connect``, ``$disconnect`` and ``$default``.

``$connect`` takes the token as the subprotocol pair ``Sec-WebSocket-Protocol: bearer,
<token>`` (a browser's ``new WebSocket(url, ["bearer", token])``, which keeps it out of
URLs and logs; the answer carries ``Sec-WebSocket-Protocol: bearer``, as the handshake
requires), or else as seed 003's ``?token=``; ``topic`` (``job:5``) and ``format``
(``crucible``, ``seed000``, ``seed003``) come from the query string. ``$default``
accepts ``{"action": "subscribe", "topic": ..., "format": ...}`` and
``{"action": "ping"}``. The local dev server builds these same events for its ``/ws``
endpoints and calls this same code.
"""

from __future__ import annotations

import json
from typing import Any

from functions.events.runtime import container
from functions.observability import logger
from shared.errors import CrucibleError, InvalidInput, Unauthorized
from shared.wiring import Container

BEARER = "bearer"  # the subprotocol that carries the token


def _reply(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"statusCode": status, "body": json.dumps(body)}
    if headers:
        out["headers"] = headers
    return out


def _offered_protocols(event: dict[str, Any]) -> list[str]:
    """The subprotocols the client offered, in order (``Sec-WebSocket-Protocol``, any case)."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    value = headers.get("sec-websocket-protocol") or ""
    return [p.strip() for p in value.split(",") if p.strip()]


def _credentials(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The bearer token of a ``$connect``, and the headers its answer must carry."""
    offered = _offered_protocols(event)
    if BEARER in offered:
        i = offered.index(BEARER)
        if i + 1 >= len(offered):
            raise Unauthorized("Offer the token after 'bearer': protocols ['bearer', <token>]")
        return offered[i + 1], {"Sec-WebSocket-Protocol": BEARER}
    token = (event.get("queryStringParameters") or {}).get("token")
    if not token:
        raise Unauthorized(
            "Send the access token as the subprotocols ['bearer', <token>], or as ?token=<token>"
        )
    return token, {}


def _error(exc: CrucibleError) -> dict[str, Any]:
    """The API's error body and status (shared/errors.py); a refused ``$connect`` is
    refused whatever the status, a ``$default`` reply is the body."""
    return _reply(exc.http_status, {"detail": exc.detail, "code": exc.code, "field": exc.field})


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ctx = event["requestContext"]
    route, cid = ctx["routeKey"], ctx["connectionId"]
    try:
        if route == "$connect":
            params = event.get("queryStringParameters") or {}
            token, headers = _credentials(event)
            principal = c.auth.authenticate(token)
            c.push.connect(
                principal, cid, topic=params.get("topic"), fmt=params.get("format", "crucible")
            )
            return _reply(200, {"connected": cid}, headers)
        if route == "$disconnect":
            c.push.disconnect(cid)
            return _reply(200, {"disconnected": cid})
        return _default(cid, event.get("body"), c)
    except CrucibleError as exc:
        logger.info("websocket %s refused: %s", route, exc.detail)
        return _error(exc)


def _default(cid: str, body: str | None, c: Container) -> dict[str, Any]:
    try:
        msg = json.loads(body or "{}")
    except json.JSONDecodeError:
        raise InvalidInput("Messages must be JSON objects") from None
    if not isinstance(msg, dict):
        raise InvalidInput("Messages must be JSON objects")
    action = msg.get("action")
    if action == "ping":
        return _reply(200, {"type": "pong"})
    if action == "subscribe":
        topic = msg.get("topic")
        if not isinstance(topic, str):
            raise InvalidInput("subscribe needs a 'topic' such as 'job:5'", field="topic")
        sub = c.push.subscribe(cid, topic, msg.get("format", "crucible"))
        return _reply(200, {"type": "subscribed", "topic": sub.topic, "format": sub.format})
    raise InvalidInput("Unknown action: use 'subscribe' or 'ping'", field="action")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
