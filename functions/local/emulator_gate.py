"""MiniStack behind a gate that checks every request's AWS signature.

Run by functions/local/emulator.py with MiniStack's own interpreter; it imports nothing
of Crucible but its two siblings: aws_signatures.py (SigV4 and SigV2 checks) and
post_policy.py (presigned POST forms).

MiniStack on its own answers anyone who can reach its port, and adds
``Access-Control-Allow-Origin: *`` to its answers, so any web page open in the
developer's browser could read and write the local stack's data. Its ``AUTH=true``
mode does not help: it never checks signatures made with its root key. So this wraps
MiniStack's ASGI application, in its own process, with a gate that

* answers only requests whose ``Host`` names this emulator on loopback
  (``127.0.0.1``, ``localhost``, ``[::1]`` or a ``*.localhost`` name, on its own port):
  a web page that rebinds its own name to 127.0.0.1 gets nothing;
* lets an HTTP request through only when it is signed with this data directory's
  secret key (``AWS_SECRET_ACCESS_KEY`` in this process's environment): a SigV4
  ``Authorization`` header, a presigned URL (SigV4 ``X-Amz-Credential`` or SigV2
  ``AWSAccessKeyId``), or a presigned POST form (its policy's signature). A
  header-signed request without ``x-amz-content-sha256`` (every JSON API) is read
  first and hashed;
* hands MiniStack only what a signature covers. A presigned URL or a POST form is
  given out to browsers, and signs only part of a request, while MiniStack picks the
  service from whatever it gets (``X-Amz-Target`` first, then an ``Authorization``
  credential scope, an ``Action`` in the query or in a form-encoded body, the path).
  So such a request must be an S3 request in every respect: a SigV4 presign must be
  scoped to ``s3`` and sign ``host``; it may carry no ``X-Amz-Target``, no
  ``Authorization``, no ``x-amz-*`` header it did not sign (S3 refuses those too),
  no form-encoded body, no query parameter SigV2 leaves unsigned; only its signed
  headers and plain HTTP ones (``FORWARDED``) reach MiniStack, and MiniStack's own
  router must send it to S3. A header-signed request must sign its ``X-Amz-Target``;
* enforces a presigned POST form as S3 does, and forwards the form it checked, not
  the bytes that came (post_policy.py);
* lets the health probe and WebSocket upgrades to an emulated API Gateway WebSocket
  API through unsigned (in AWS these are public; the API's own ``$connect``
  authenticates);
* drops every ``Access-Control-*`` header MiniStack sends and answers preflights
  itself: only origins listed in ``CRUCIBLE_EMULATOR_CORS_ORIGINS`` (the stack's
  ``CRUCIBLE_CORS_ORIGINS``, as the uploads bucket's CORS rules in AWS) get CORS.

Refusals are ``403`` with the reason (``400`` for a form S3 would call malformed or
too large), logged to the emulator's log.

With ``PERSIST_STATE=1`` it also makes what MiniStack acknowledges survive a SIGKILL
(functions/local/emulator_durability.py): DynamoDB writes are journaled before they are
answered and replayed at start; a request that changed another service's state is
answered once that state is written; the port opens only once the journal is replayed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import parse_qs

from ministack import app as ministack
from ministack.core.router import detect_service

from functions.local.aws_signatures import (
    QUERY_SIGNATURE,
    Refused,
    Scope,
    Verifier,
    first,
    request_headers,
    signed_headers,
)
from functions.local.emulator_durability import (
    Durability,
    is_lazy,
    is_read,
    s3_events,
    state_keys,
)
from functions.local.post_policy import Message, check_form

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("crucible.emulator_gate")

HEALTH = "/_ministack/health"
MAX_HASHED_BODY = 64 * 1024 * 1024  # a request whose body must be read to check it
CORS_METHODS = "GET, HEAD, PUT, POST"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})

# What a presigned URL or a POST form may carry to MiniStack unsigned: plain HTTP, none
# of which MiniStack routes on (its router reads X-Amz-Target, Authorization, the host,
# the path, the query and a form-encoded body; the S3 handler reads x-amz-* headers).
FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-md5",
        "transfer-encoding",
        "expect",
        "connection",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "cache-control",
        "content-disposition",
        "content-language",
        "expires",
    }
)

_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")


class Gate:
    def __init__(
        self,
        inner: Callable,
        *,
        key: str,
        secret: str,
        account: str,
        origins: frozenset[str],
        port: int | None = None,
        durability: Durability | None = None,
    ) -> None:
        self.inner = inner
        self.durability = durability  # None: MiniStack's own persistence (clean stops only)
        # The stack's key, and the account id MiniStack gives the Lambdas it runs (with
        # this same secret): whoever signs with the secret holds the data directory.
        self.verifier = Verifier({key, account}, secret)
        self.origins = origins
        self.port = port  # the Host header's port must be this one (None: any)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.inner(scope, receive, self._lifespan(send))
        headers = request_headers(scope)
        host = self._host(headers)
        if scope["type"] == "websocket":
            path = scope.get("path", "")
            if host and (path.startswith("/_aws/execute-api/") or ".execute-api." in host):
                return await self.inner(scope, receive, send)
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return None
        if host is None:
            log.warning(
                "refused %s %s: Host %r", scope["method"], scope.get("path"), headers.get("host")
            )
            return await _refuse(
                send, Refused("the Host header names no address of this emulator"), headers
            )
        origin = headers.get("origin", "")
        cors = origin if origin in self.origins else None
        if scope["method"] == "OPTIONS":
            return await self._preflight(headers, cors, send)
        body = _Body(receive)
        try:
            if scope["method"] in ("GET", "HEAD") and scope.get("path") == HEALTH:
                pass
            else:
                scope, receive = await self._authenticate(scope, headers, body)
        except Refused as refused:
            log.warning("refused %s %s: %s", scope["method"], scope.get("path"), refused)
            await body.drain()  # a client still sending would see a reset, not the answer
            return await _refuse(send, refused, headers)
        send = _without_cors(send, cors)
        if self.durability is not None:
            return await self._durably(scope, receive, send)
        await self.inner(scope, receive, send)

    # --- durability --------------------------------------------------------------------
    def _lifespan(self, send: Send) -> Send:
        """MiniStack's lifespan ``send``: once it has loaded its state, the journal is
        replayed before the startup is reported complete (and the port opened)."""
        if self.durability is None:
            return send

        async def started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.durability.recover(self.inner)
                except Exception as exc:  # refuse to serve state that lost writes
                    log.exception("recovery failed")
                    message = {"type": "lifespan.startup.failed", "message": f"recovery: {exc}"}
            await send(message)

        return started

    async def _durably(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request; when it changed the state of a service other than DynamoDB
        (which journals its own writes), answer only once that state is on disk."""
        headers = request_headers(scope)  # what MiniStack gets (a presigned URL: less)
        target = headers.get("x-amz-target", "")
        if target.startswith("DynamoDB") or scope["method"] in ("OPTIONS", "GET", "HEAD"):
            return await self.inner(scope, receive, send)
        if scope["path"].startswith("/_ministack/"):  # a reset: its state becomes the base
            return await self.inner(scope, receive, self._checkpointed(send))
        query = parse_qs(scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True)
        service = detect_service(scope["method"], scope["path"], headers, query)
        if service == "s3":
            events: list = []
            token = s3_events.set(events)  # the notifications this request fires
            try:
                return await self.inner(scope, receive, self._after(send, ("s3",), events))
            finally:
                s3_events.reset(token)
        action = target.rpartition(".")[2] or first(query, "Action") or ""
        lazy = is_lazy(action)  # a lost receipt or deletion only redelivers a message
        if is_read(action) and not lazy:
            return await self.inner(scope, receive, send)
        keys = state_keys(service)
        if not keys:
            return await self.inner(scope, receive, send)
        await self.inner(scope, receive, self._after(send, keys, wait=not lazy))

    def _checkpointed(self, send: Send) -> Send:
        durability = self.durability

        async def checkpointed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                await asyncio.shield(durability.checkpoint_soon())
            await send(message)

        return checkpointed_send

    def _after(
        self, send: Send, keys: Collection[str], events: list | None = None, *, wait: bool = True
    ) -> Send:
        """``send`` that holds a successful answer until ``keys``' state (and the SQS
        messages ``events`` deliver) is written."""
        durability = self.durability

        async def durable_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                if events:
                    await _settled(events)
                    keys_now = (*keys, "sqs")
                else:
                    keys_now = tuple(keys)
                written = durability.touch(*keys_now)
                if wait:
                    try:
                        await asyncio.shield(written)
                    except Exception as exc:
                        log.error("state not written: %s", exc)
                        failed = Refused(
                            f"the emulator could not save it: {exc}", 500, "InternalError"
                        )
                        return await _refuse(send, failed, {})
            await send(message)

        return durable_send

    def _host(self, headers: dict[str, str]) -> str | None:
        """The Host header's name when it is one of this emulator's on loopback, else None."""
        match = _HOST.fullmatch(headers.get("host", ""))
        if not match:
            return None
        name, port = match.group(1).lower(), match.group(2)
        if self.port is not None and port != str(self.port):
            return None
        return name if name in LOOPBACK or name.endswith(".localhost") else None

    async def _preflight(self, headers: dict[str, str], cors: str | None, send: Send) -> None:
        method = headers.get("access-control-request-method", "")
        if cors is None or method not in CORS_METHODS.split(", "):
            return await _refuse(send, Refused("CORS is not enabled for this origin"), headers)
        allow = [
            (b"access-control-allow-origin", cors.encode()),
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-max-age", b"3000"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        if requested := headers.get("access-control-request-headers"):
            allow.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": allow})
        await send({"type": "http.response.body", "body": b""})

    # --- authentication ----------------------------------------------------------
    async def _authenticate(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> tuple[Scope, Receive]:
        """Check the request's signature; returns the scope and ``receive`` to hand on
        (what the signature covers, replaying what had to be read), or raises
        :class:`Refused`."""
        query = parse_qs(scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        method, authorization = scope["method"], headers.get("authorization", "")
        query_signed = any(name.lower() in QUERY_SIGNATURE for name in query)
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            if query_signed:
                raise Refused("a request is signed either in its header or in its query")
            signature = self.verifier.header_signature(headers)
            if "x-amz-target" in headers and "x-amz-target" not in signed_headers(signature):
                raise Refused("X-Amz-Target is not signed")
            body = b""
            if not headers.get("x-amz-content-sha256"):
                body = await _read_all(receive)
                receive = _replay([_body_message(body)], receive)
            self.verifier.check_header(signature, method, raw_path, query, headers, body)
            return scope, receive
        if first(query, "X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
            signed = self.verifier.check_presigned(method, raw_path, query, headers)
            return _as_s3_request(scope, headers, query, signed), receive
        if authorization.startswith("AWS ") or first(query, "AWSAccessKeyId"):
            signed = self.verifier.check_sigv2(method, raw_path, query, headers)
            if authorization.startswith("AWS ") and query_signed:
                raise Refused("a request is signed either in its header or in its query")
            return _as_s3_request(scope, headers, query, signed), receive
        content_type = headers.get("content-type", "")
        if method == "POST" and content_type.startswith("multipart/form-data"):
            scope, messages = await check_form(
                scope,
                headers,
                functools.partial(_next_chunk, receive),
                self.verifier,
                own_address=self._host(headers) in LOOPBACK,
            )
            return scope, _replay(messages, receive)
        raise Refused("the request is not signed with this stack's credentials")


async def _settled(events: list, timeout: float = 10) -> None:
    """Wait for S3 notifications MiniStack fires from threads of its own."""
    done = [asyncio.wrap_future(e) for e in events]
    _, late = await asyncio.wait(done, timeout=timeout)
    if late:
        log.warning("%d S3 notifications still running after %s s", len(late), timeout)


# --- requests MiniStack could take for another service ------------------------------
def _as_s3_request(
    scope: Scope, headers: dict[str, str], query: dict, signed: Collection[str]
) -> Scope:
    """The request MiniStack gets for a presigned URL: its signed headers and plain HTTP
    ones, and nothing that could take it to a service other than S3."""
    if "authorization" in headers and "authorization" not in signed:
        raise Refused("a presigned URL carries no Authorization header")
    if "x-amz-target" in headers:
        raise Refused("a presigned URL carries no X-Amz-Target")
    if unsigned := sorted(n for n in headers if n.startswith("x-amz-") and n not in signed):
        raise Refused(f"headers present in the request were not signed: {', '.join(unsigned)}")
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        raise Refused("a presigned URL takes no form-encoded body")
    kept = [
        (name, value)
        for name, value in scope.get("headers", [])
        if (n := name.decode("latin-1").lower()) in signed or n in FORWARDED
    ]
    scope = {**scope, "headers": kept}
    if detect_service(scope["method"], scope["path"], request_headers(scope), query) != "s3":
        raise Refused("a presigned URL is for S3 only")
    return scope


# --- bodies and answers ---------------------------------------------------------------
class _Body:
    """The request's ``receive``, knowing whether the body has been read to its end."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self.receive()
        self.done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    async def drain(self, limit: int = MAX_HASHED_BODY) -> None:
        """Read (and drop) what is left of the body, up to ``limit`` bytes."""
        while not self.done and limit > 0:
            limit -= len((await self()).get("body", b""))


def _body_message(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


async def _next_chunk(receive: Receive) -> tuple[bytes, bool]:
    message = await receive()
    if message["type"] != "http.request":
        raise Refused("the client went away")
    return message.get("body", b""), message.get("more_body", False)


async def _read_all(receive: Receive) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        chunk, more = await _next_chunk(receive)
        size += len(chunk)
        if size > MAX_HASHED_BODY:
            raise Refused("the body is too large to check its signature", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then what the client sends next."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _without_cors(send: Send, origin: str | None) -> Send:
    """``send`` without MiniStack's ``Access-Control-*`` headers; an allowed origin gets
    its own."""

    async def filtered(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if not k.lower().startswith(b"access-control-")
            ]
            if origin:
                headers += [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-expose-headers", b"ETag"),
                    (b"vary", b"Origin"),
                ]
            message = {**message, "headers": headers}
        await send(message)

    return filtered


async def _refuse(send: Send, refused: Refused, headers: dict[str, str]) -> None:
    reason = str(refused)
    if "x-amz-target" in headers or "json" in headers.get("content-type", ""):
        content_type = b"application/x-amz-json-1.0"
        body = json.dumps({"__type": "UnrecognizedClientException", "message": reason}).encode()
    else:
        content_type = b"application/xml"
        message = reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = f"<Error><Code>{refused.code}</Code><Message>{message}</Message></Error>".encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the process ----------------------------------------------------------------------
def main() -> None:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret or secret == "test":  # noqa: S105 - refusing the well-known one
        raise SystemExit("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the emulator")
    origins = os.environ.get("CRUCIBLE_EMULATOR_CORS_ORIGINS", "")
    durability = None
    if os.environ.get("PERSIST_STATE") == "1":
        durability = Durability(os.environ["STATE_DIR"])
        durability.install()
    ministack.app = Gate(
        ministack.app,
        key=key,
        secret=secret,
        account=os.environ.get("MINISTACK_ACCOUNT_ID", "000000000000"),
        origins=frozenset(o.strip() for o in origins.split(",") if o.strip()),
        port=int(os.environ.get("GATEWAY_PORT", "4566")),
        durability=durability,
    )
    sys.argv = [sys.argv[0]]
    ministack.main()  # serves ministack.app, now the gate


if __name__ == "__main__":
    main()
