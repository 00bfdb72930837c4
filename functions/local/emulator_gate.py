"""MiniStack behind a gate that checks every request's AWS signature.

Run by functions/local/emulator.py with MiniStack's own interpreter
(``<ministack venv>/bin/python -P emulator_gate.py``); it imports nothing of Crucible.

MiniStack on its own answers anyone who can reach its port, and adds
``Access-Control-Allow-Origin: *`` to its answers, so any web page open in the
developer's browser could read and write the local stack's data. Its ``AUTH=true``
mode does not help: it never checks signatures made with its root key. So this wraps
MiniStack's ASGI application, in its own process, with a gate that

* lets an HTTP request through only when it is signed with this data directory's
  secret key (``AWS_SECRET_ACCESS_KEY`` in this process's environment): a SigV4
  ``Authorization`` header, a presigned URL (SigV4 ``X-Amz-Credential`` or SigV2
  ``AWSAccessKeyId``), or a presigned POST form (its policy's signature). The
  signature is computed with MiniStack's own SigV4 primitives (and botocore's HmacV1
  for SigV2), over the payload hash the client declared; a header-signed request
  without ``x-amz-content-sha256`` (every JSON API) is read first and hashed;
* lets the health probe and WebSocket upgrades to an emulated API Gateway WebSocket
  API through unsigned (in AWS these are public; the API's own ``$connect``
  authenticates);
* drops every ``Access-Control-*`` header MiniStack sends and answers preflights
  itself: only origins listed in ``CRUCIBLE_EMULATOR_CORS_ORIGINS`` (the stack's
  ``CRUCIBLE_CORS_ORIGINS``, as the uploads bucket's CORS rules in AWS) get CORS.

Refusals are ``403`` with the reason, logged to the emulator's log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ministack import app as ministack
from ministack.core import sigv4

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("crucible.emulator_gate")

HEALTH = "/_ministack/health"
MAX_HASHED_BODY = 64 * 1024 * 1024  # a request whose body must be read to check it
MAX_FORM_PREFIX = 1024 * 1024  # a POST form's fields before its file
CORS_METHODS = "GET, HEAD, PUT, POST"


class Refused(Exception):
    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


class Gate:
    def __init__(
        self, inner: Callable, *, key: str, secret: str, account: str, origins: frozenset[str]
    ) -> None:
        self.inner = inner
        # The stack's key, and the account id MiniStack gives the Lambdas it runs (with
        # this same secret): whoever signs with the secret holds the data directory.
        self.keys = frozenset({key, account})
        self.secret = secret
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.inner(scope, receive, send)
        headers = _headers(scope)
        if scope["type"] == "websocket":
            host, path = headers.get("host", ""), scope.get("path", "")
            if path.startswith("/_aws/execute-api/") or ".execute-api." in host:
                return await self.inner(scope, receive, send)
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return None
        origin = headers.get("origin", "")
        cors = origin if origin in self.origins else None
        if scope["method"] == "OPTIONS":
            return await self._preflight(headers, cors, send)
        try:
            if scope["method"] in ("GET", "HEAD") and scope.get("path") == HEALTH:
                pass
            else:
                receive = await self._authenticate(scope, headers, receive)
        except Refused as refused:
            log.warning("refused %s %s: %s", scope["method"], scope.get("path"), refused)
            return await _refuse(send, refused, headers)
        await self.inner(scope, receive, _without_cors(send, cors))

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
    async def _authenticate(self, scope: Scope, headers: dict[str, str], receive: Receive):
        """Check the request's signature; returns the ``receive`` to hand on (replaying
        what had to be read), or raises :class:`Refused`."""
        query = parse_qs(scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        method, authorization = scope["method"], headers.get("authorization", "")
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            signature = self._sigv4(sigv4.parse_header_signature(headers))
            body = b""
            if not headers.get("x-amz-content-sha256"):
                body = await _read_all(receive)
                receive = _replay([_body_message(body)], receive)
            if sigv4.request_time_failure(signature):
                raise Refused("the request's date is too far from now")
            self._check_sigv4(signature, method, raw_path, query, headers, body, presigned=False)
            return receive
        if _first(query, "X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
            signature = self._sigv4(sigv4.parse_query_signature(query))
            try:
                expired = sigv4.presigned_request_is_expired(
                    signature.amz_date, _first(query, "X-Amz-Expires") or "0"
                )
            except ValueError:
                expired = True
            if expired:
                raise Refused("the presigned URL has expired")
            self._check_sigv4(signature, method, raw_path, query, headers, b"", presigned=True)
            return receive
        if authorization.startswith("AWS ") or _first(query, "AWSAccessKeyId"):
            self._check_sigv2(method, raw_path, query, headers)
            return receive
        content_type = headers.get("content-type", "")
        if method == "POST" and content_type.startswith("multipart/form-data"):
            return await self._check_form(content_type, receive)
        raise Refused("the request is not signed with this stack's credentials")

    def _sigv4(self, parsed: Any) -> sigv4.HeaderSignature:
        if isinstance(parsed, tuple):
            raise Refused(parsed[1])
        if parsed.region_set is not None:
            raise Refused("SigV4a signatures are not accepted")
        if parsed.access_key_id not in self.keys:
            raise Refused("unknown access key")
        return parsed

    def _check_sigv4(
        self,
        signature: sigv4.HeaderSignature,
        method: str,
        raw_path: str,
        query: dict,
        headers: dict[str, str],
        body: bytes,
        *,
        presigned: bool,
    ) -> None:
        if signature.date_stamp != signature.amz_date[:8]:
            raise Refused("the credential's date is not the request's")
        _, string_to_sign = sigv4.header_signing_documents(
            signature, method, raw_path, query, headers, body, presigned=presigned
        )
        expected = sigv4.calculate_signature(
            self.secret, signature.date_stamp, signature.region, signature.service, string_to_sign
        )
        if not sigv4.signatures_match(expected, signature.signature):
            raise Refused("signature mismatch")

    def _check_sigv2(
        self, method: str, raw_path: str, query: dict, headers: dict[str, str]
    ) -> None:
        """SigV2 (HmacV1), as S3 checks it: botocore's presigned S3 URLs in us-east-1."""
        from botocore.auth import HmacV1Auth
        from botocore.awsrequest import HTTPHeaders
        from botocore.credentials import Credentials

        authorization = headers.get("authorization", "")
        if authorization.startswith("AWS "):
            key, _, given = authorization[4:].rpartition(":")
            signed_date = headers.get("date", "")
        else:
            key, given, signed_date = (
                _first(query, n) for n in ("AWSAccessKeyId", "Signature", "Expires")
            )
            if not signed_date.isdigit() or int(signed_date) < time.time():
                raise Refused("the presigned URL has expired")
        if key not in self.keys:
            raise Refused("unknown access key")

        class Signer(HmacV1Auth):
            def _get_date(self) -> str:  # the date the client signed, not now
                return signed_date

        signer = Signer(Credentials(key, self.secret))
        http_headers = HTTPHeaders()
        for name, value in headers.items():
            http_headers[name] = value
        pairs = [(k, v) for k, values in query.items() for v in values]
        query_string = urlencode(pairs, quote_via=quote)  # HmacV1 unquotes with unquote
        split = urlsplit("http://host" + raw_path + ("?" + query_string if pairs else ""))
        expected = signer.get_signature(method, split, http_headers)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused("signature mismatch")

    async def _check_form(self, content_type: str, receive: Receive) -> Receive:
        """A presigned POST: the form's policy must be signed with the secret. Reads the
        fields (S3 wants the file last), and hands the bytes read on unchanged."""
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if not match:
            raise Refused("a multipart form without a boundary")
        boundary = match.group(1).encode("latin-1")
        messages, buffer, more = [], b"", True
        while more and len(buffer) < MAX_FORM_PREFIX and b'name="file"' not in buffer:
            message = await receive()
            if message["type"] != "http.request":
                raise Refused("the client went away")
            messages.append(message)
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
        fields = _form_fields(buffer, boundary)
        policy = fields.get("policy", "")
        if fields.get("x-amz-algorithm") == "AWS4-HMAC-SHA256":
            scope = fields.get("x-amz-credential", "").split("/")
            if len(scope) != 5 or scope[0] not in self.keys:
                raise Refused("unknown access key")
            expected = sigv4.calculate_signature(self.secret, scope[1], scope[2], "s3", policy)
            given = fields.get("x-amz-signature", "")
        else:
            if fields.get("awsaccesskeyid") not in self.keys:
                raise Refused("the form is not signed with this stack's credentials")
            digest = hmac.new(self.secret.encode(), policy.encode(), hashlib.sha1).digest()
            expected, given = base64.b64encode(digest).decode(), fields.get("signature", "")
        if not policy or not hmac.compare_digest(expected.encode(), given.encode()):
            raise Refused("the form's policy signature does not match")
        return _replay(messages, receive)


# --- helpers ---------------------------------------------------------------------------
def _first(query: dict, name: str) -> str:
    values = query.get(name) or query.get(name.lower()) or [""]
    return values[0]


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; a header sent on several lines is its values joined by a bare
    comma, as SigV4 signs it."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key, text = name.decode("latin-1").lower(), sigv4.decode_header_value(value)
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


def _body_message(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


async def _read_all(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Refused("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_HASHED_BODY:
            raise Refused("the body is too large to check its signature", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then what the client sends next."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _form_fields(buffer: bytes, boundary: bytes) -> dict[str, str]:
    """The complete, non-file parts of a multipart form's beginning, by lower-case name."""
    fields: dict[str, str] = {}
    for part in buffer.split(b"--" + boundary)[1:-1]:  # the last one may be cut short
        head, sep, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if sep and name and b"filename=" not in head:
            fields[name.group(1).decode("utf-8", "replace").lower()] = value.removesuffix(
                b"\r\n"
            ).decode("utf-8", "replace")
    return fields


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
        body = f"<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>".encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret or secret == "test":  # noqa: S105 - refusing the well-known one
        raise SystemExit("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the emulator")
    origins = os.environ.get("CRUCIBLE_EMULATOR_CORS_ORIGINS", "")
    ministack.app = Gate(
        ministack.app,
        key=key,
        secret=secret,
        account=os.environ.get("MINISTACK_ACCOUNT_ID", "000000000000"),
        origins=frozenset(o.strip() for o in origins.split(",") if o.strip()),
    )
    sys.argv = [sys.argv[0]]
    ministack.main()  # serves ministack.app, now the gate


if __name__ == "__main__":
    main()
