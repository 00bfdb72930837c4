"""MiniStack behind a gate that checks every request's AWS signature.

Run by functions/local/emulator.py with MiniStack's own interpreter
(``<ministack venv>/bin/python -P emulator_gate.py``); it imports nothing of Crucible.

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
  ``AWSAccessKeyId``), or a presigned POST form (its policy's signature). The
  signature is computed with MiniStack's own SigV4 primitives (and botocore's HmacV1
  for SigV2), over the payload hash the client declared; a header-signed request
  without ``x-amz-content-sha256`` (every JSON API) is read first and hashed;
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
  the bytes that came: the form is parsed once, strictly (quoted names, each once,
  ``filename`` only on ``file``, ``file`` last, nothing after it), its policy's
  signature verified and every condition checked (every field but the signature's
  must be covered; ``bucket`` is the path's; the file's size within
  ``content-length-range``), and MiniStack gets a new form made of exactly those
  fields and the file, on a form path of a bucket with no query;
* lets the health probe and WebSocket upgrades to an emulated API Gateway WebSocket
  API through unsigned (in AWS these are public; the API's own ``$connect``
  authenticates);
* drops every ``Access-Control-*`` header MiniStack sends and answers preflights
  itself: only origins listed in ``CRUCIBLE_EMULATOR_CORS_ORIGINS`` (the stack's
  ``CRUCIBLE_CORS_ORIGINS``, as the uploads bucket's CORS rules in AWS) get CORS.

Refusals are ``403`` with the reason (``400`` for a form S3 would call malformed or
too large), logged to the emulator's log.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ministack import app as ministack
from ministack.core import sigv4
from ministack.core.router import detect_service

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("crucible.emulator_gate")

HEALTH = "/_ministack/health"
MAX_HASHED_BODY = 64 * 1024 * 1024  # a request whose body must be read to check it
MAX_FORM_PREFIX = 1024 * 1024  # a POST form's fields before its file
MAX_FORM_FIELDS = 64
MAX_FORM_FILE = 5 * 1024**3  # S3's largest POST upload, for a policy without a size range
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
# The query parameters HmacV1 (SigV2) signs, and its own: any other one is unsigned.
SIGV2_QUERY = frozenset(
    {"AWSAccessKeyId", "Signature", "Expires"}
    | {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber",
        "policy", "requestPayment", "torrent", "versioning", "versionId", "versions",
        "website", "uploads", "uploadId", "response-content-type",
        "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle",
        "tagging", "restore", "storageClass", "notification", "replication", "analytics",
        "metrics", "inventory", "select", "select-type", "object-lock",
    }
)  # fmt: skip
QUERY_SIGNATURE = frozenset(
    {"x-amz-algorithm", "x-amz-credential", "x-amz-signature", "awsaccesskeyid", "signature"}
)
FORM_SIGV4 = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
FORM_EXEMPT = frozenset({"policy", "x-amz-signature", "awsaccesskeyid", "signature"})

_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")
_BUCKET_FORM_PATH = re.compile(r"/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/?")
_BOUNDARY = re.compile(
    r"[0-9A-Za-z'()+_,./:=?-]([0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?"
)
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DISPOSITION = re.compile(r'form-data((?:[ \t]*;[ \t]*[A-Za-z]+="[^"\\\r\n]*")+)[ \t]*', re.I)
_DISPOSITION_PARAM = re.compile(r'[ \t]*;[ \t]*([A-Za-z]+)="([^"\\\r\n]*)"')


class Refused(Exception):
    def __init__(self, reason: str, status: int = 403, code: str = "AccessDenied") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


def _malformed(reason: str) -> Refused:
    return Refused(reason, 400, "MalformedPOSTRequest")


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
    ) -> None:
        self.inner = inner
        # The stack's key, and the account id MiniStack gives the Lambdas it runs (with
        # this same secret): whoever signs with the secret holds the data directory.
        self.keys = frozenset({key, account})
        self.secret = secret
        self.origins = origins
        self.port = port  # the Host header's port must be this one (None: any)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.inner(scope, receive, send)
        headers = _headers(scope)
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
        await self.inner(scope, receive, _without_cors(send, cors))

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
            signature = self._sigv4(sigv4.parse_header_signature(headers))
            if "x-amz-target" in headers and "x-amz-target" not in _signed(signature):
                raise Refused("X-Amz-Target is not signed")
            body = b""
            if not headers.get("x-amz-content-sha256"):
                body = await _read_all(receive)
                receive = _replay([_body_message(body)], receive)
            if sigv4.request_time_failure(signature):
                raise Refused("the request's date is too far from now")
            self._check_sigv4(signature, method, raw_path, query, headers, body, presigned=False)
            return scope, receive
        if _first(query, "X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
            signature = self._sigv4(sigv4.parse_query_signature(query))
            if signature.service != "s3" or "host" not in _signed(signature):
                raise Refused("a presigned URL must be an S3 one that signs its host")
            try:
                expired = sigv4.presigned_request_is_expired(
                    signature.amz_date, _first(query, "X-Amz-Expires") or "0"
                )
            except ValueError:
                expired = True
            if expired:
                raise Refused("the presigned URL has expired")
            self._check_sigv4(signature, method, raw_path, query, headers, b"", presigned=True)
            return _as_s3_request(scope, headers, query, _signed(signature)), receive
        if authorization.startswith("AWS ") or _first(query, "AWSAccessKeyId"):
            if unsigned := sorted(set(query) - SIGV2_QUERY):
                raise Refused(f"query parameters SigV2 does not sign: {', '.join(unsigned)}")
            self._check_sigv2(method, raw_path, query, headers)
            # HmacV1 signs every x-amz-* header, Content-Type and Content-MD5.
            signed = {n for n in headers if n.startswith("x-amz-")}
            signed |= {"content-type", "content-md5"}
            if authorization.startswith("AWS "):
                if query_signed:
                    raise Refused("a request is signed either in its header or in its query")
                signed |= {"authorization", "date"}
            return _as_s3_request(scope, headers, query, signed), receive
        content_type = headers.get("content-type", "")
        if method == "POST" and content_type.startswith("multipart/form-data"):
            return await self._check_form(scope, headers, receive)
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

    # --- presigned POST forms ------------------------------------------------------
    async def _check_form(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> tuple[Scope, Receive]:
        """A presigned POST, checked as S3 checks it; MiniStack gets the form checked."""
        for name in ("authorization", "x-amz-target"):
            if name in headers:
                raise Refused(f"a POST form carries no {name} header")
        bucket = _BUCKET_FORM_PATH.fullmatch(scope["path"])
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string") or not bucket or raw_path != scope["path"].encode():
            raise Refused("a POST form goes to a bucket's path, with no query")
        if self._host(headers) not in LOOPBACK:
            raise Refused("a POST form goes to the emulator's own address")
        boundary = _boundary(headers["content-type"])

        buffer, more, prefix = bytearray(), True, None
        while prefix is None:
            if not more:
                raise _malformed("the form ends before its file")
            chunk, more = await _next_chunk(receive)
            buffer += chunk
            prefix = _form_prefix(buffer, boundary)
            if prefix is None and len(buffer) > MAX_FORM_PREFIX:
                raise _malformed("the form's fields are too large")
        raw_fields, filename, file_start = prefix
        fields = _form_values(raw_fields, filename)
        policy = self._verified_policy(fields)
        sizes = _check_policy(policy, fields, bucket.group(1))

        limit = file_start + min((hi for _, hi in sizes), default=MAX_FORM_FILE)
        limit += len(boundary) + 8  # "\r\n--" boundary "--\r\n"
        while more:
            chunk, more = await _next_chunk(receive)
            buffer += chunk
            if len(buffer) > limit:
                raise Refused("the file is larger than the policy allows", 400, "EntityTooLarge")
        file_end = _form_file_end(buffer, file_start, boundary)
        size = file_end - file_start
        for lo, hi in sizes:
            if size < lo:
                raise Refused("the file is smaller than the policy allows", 400, "EntityTooSmall")
            if size > hi:
                raise Refused("the file is larger than the policy allows", 400, "EntityTooLarge")

        content_type, messages = _form_messages(fields, buffer, file_start, file_end)
        del buffer
        kept = [(k, v) for k, v in scope["headers"] if k.lower() in (b"host", b"user-agent")]
        length = sum(len(m["body"]) for m in messages)
        kept += [(b"content-type", content_type), (b"content-length", b"%d" % length)]
        scope = {**scope, "headers": kept}
        if detect_service("POST", scope["path"], _headers(scope), {}) != "s3":
            raise Refused("MiniStack would not take this form as an S3 upload")
        return scope, _replay(messages, receive)

    def _verified_policy(self, fields: dict[str, str]) -> dict:
        """The form's policy document, once its signature is this stack's."""
        policy = fields.get("policy", "")
        if any(name in fields for name in FORM_SIGV4):  # as MiniStack tells SigV4 forms
            scope = fields.get("x-amz-credential", "").split("/")
            if (
                fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256"
                or len(scope) != 5
                or scope[3:] != ["s3", "aws4_request"]
                or fields.get("x-amz-date", "")[:8] != scope[1]
            ):
                raise Refused("the form's signing fields are not a SigV4 S3 signature")
            if scope[0] not in self.keys:
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
        try:
            document = json.loads(base64.b64decode(policy, validate=True))
            expires = dt.datetime.fromisoformat(document["expiration"].replace("Z", "+00:00"))
            if not isinstance(document["conditions"], list) or expires.tzinfo is None:
                raise ValueError("conditions")
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            raise Refused("the form's policy is not a policy document", 400) from exc
        if expires <= dt.datetime.now(dt.UTC):
            raise Refused("the form's policy has expired")
        return document


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
    if detect_service(scope["method"], scope["path"], _headers(scope), query) != "s3":
        raise Refused("a presigned URL is for S3 only")
    return scope


def _signed(signature: sigv4.HeaderSignature) -> frozenset[str]:
    return frozenset(n.strip().lower() for n in signature.signed_headers.split(";") if n.strip())


# --- multipart/form-data, strictly ----------------------------------------------------
def _boundary(content_type: str) -> bytes:
    kind, _, parameters = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise _malformed("not a multipart/form-data body")
    found = []
    for parameter in parameters.split(";"):
        name, equals, value = parameter.strip().partition("=")
        if not equals:
            raise _malformed("a malformed Content-Type")
        if name.strip().lower() == "boundary":
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    raise _malformed("a malformed boundary")
                value = value[1:-1]
            found.append(value)
    if len(found) != 1 or not _BOUNDARY.fullmatch(found[0]):
        raise _malformed("a multipart form needs one valid boundary")
    return found[0].encode("ascii")


def _form_prefix(
    buffer: bytearray, boundary: bytes
) -> tuple[list[tuple[str, bytes]], str | None, int] | None:
    """The fields before the ``file`` part, its filename and where its bytes start; None
    while more of the body is needed. Raises for anything but a plain, well-formed form."""
    opening = b"--" + boundary + b"\r\n"
    if len(buffer) < len(opening):
        if not opening.startswith(bytes(buffer)):
            raise _malformed("the body does not start with the form's boundary")
        return None
    if not buffer.startswith(opening):
        raise _malformed("the body does not start with the form's boundary")
    delimiter = b"\r\n--" + boundary
    fields: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    position = len(opening)
    while True:
        head_end = buffer.find(b"\r\n\r\n", position)
        if head_end < 0:
            if len(buffer) - position > 8192:
                raise _malformed("a form part's headers are too long")
            return None
        name, filename = _part_head(bytes(buffer[position:head_end]))
        if name in seen:
            raise Refused(f"the form has more than one {name!r} field")
        seen.add(name)
        start = head_end + 4
        if name == "file":
            return fields, filename, start
        if filename is not None:
            raise Refused(f"the form field {name!r} has a filename: only 'file' is a file")
        end = buffer.find(delimiter, start)
        after = buffer[end + len(delimiter) : end + len(delimiter) + 2] if end >= 0 else b""
        if len(after) < 2:
            return None
        if after == b"--":
            raise _malformed("the form has no file")
        if after != b"\r\n":
            raise _malformed("a malformed form boundary")
        fields.append((name, bytes(buffer[start:end])))
        if len(fields) > MAX_FORM_FIELDS:
            raise _malformed("the form has too many fields")
        position = end + len(delimiter) + 2


def _part_head(raw: bytes) -> tuple[str, str | None]:
    """A form part's lower-case name and filename, from its headers (a quoted
    ``Content-Disposition: form-data`` and perhaps a ``Content-Type``, each once)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("a form part's headers are not UTF-8") from exc
    found: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or name not in ("content-disposition", "content-type") or name in found:
            raise Refused(f"a form part with a header {line[:60]!r}")
        found[name] = value.strip()
    disposition = _DISPOSITION.fullmatch(found.get("content-disposition", ""))
    if not disposition:
        raise Refused("a form part without a quoted Content-Disposition: form-data name")
    parameters: dict[str, str] = {}
    for key, value in _DISPOSITION_PARAM.findall(disposition.group(1)):
        key = key.lower()
        if key in parameters or key not in ("name", "filename"):
            raise Refused(f"a form part's Content-Disposition names {key!r} more than once")
        parameters[key] = value
    name = parameters.get("name", "")
    if not _FIELD_NAME.fullmatch(name):
        raise Refused(f"a form field named {name[:60]!r}")
    return name.lower(), parameters.get("filename")


def _form_file_end(buffer: bytearray, start: int, boundary: bytes) -> int:
    """Where the file ends: the form's closing boundary, with no part after the file."""
    delimiter = b"\r\n--" + boundary
    for closing in (delimiter + b"--\r\n", delimiter + b"--"):
        if buffer.endswith(closing):
            end = len(buffer) - len(closing)
            break
    else:
        raise _malformed("the form does not end right after its file")
    if end < start or buffer.find(delimiter, start) != end:
        raise Refused("the form has parts after its file")
    return end


def _form_values(raw: list[tuple[str, bytes]], filename: str | None) -> dict[str, str]:
    """The fields as S3 reads them: text, with ``${filename}`` expanded (not in the
    signature's own fields)."""
    if "${filename}" in (filename or ""):
        raise Refused("a file named with '${filename}'")
    fields = {}
    for name, value in raw:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed(f"the form field {name!r} is not UTF-8") from exc
        if name not in FORM_EXEMPT:
            text = text.replace("${filename}", filename or "")
        fields[name] = text
    return fields


def _check_policy(policy: dict, fields: dict[str, str], bucket: str) -> list[tuple[int, int]]:
    """Every field (and the path's bucket) against the policy's conditions, as S3 checks
    them; returns the size ranges the file must be within."""
    if not fields.get("key"):
        raise Refused("the form has no key", 400, "InvalidArgument")
    if fields.get("bucket", bucket) != bucket:
        raise Refused("the form's bucket is not the one it is posted to")
    values = {**fields, "bucket": bucket}
    covered, sizes = set(), []
    for condition in policy["conditions"]:
        if isinstance(condition, dict) and condition:
            checks = [("eq", f"${name}", value) for name, value in condition.items()]
        elif isinstance(condition, list) and len(condition) == 3:
            operator = condition[0].lower() if isinstance(condition[0], str) else None
            if operator == "content-length-range":
                lo, hi = (_integer(bound) for bound in condition[1:])
                if lo < 0 or hi < lo:
                    raise Refused("the policy's content-length-range is empty", 400)
                sizes.append((lo, hi))
                continue
            checks = [(operator, condition[1], condition[2])]
        else:
            raise Refused(f"the policy has a condition {json.dumps(condition)[:80]}", 400)
        for operator, field, expected in checks:
            if (
                operator not in ("eq", "starts-with")
                or not isinstance(field, str)
                or not field.startswith("$")
                or not isinstance(expected, str)
            ):
                raise Refused(f"the policy has a condition {json.dumps(condition)[:80]}", 400)
            name = field[1:].lower()
            actual = values.get(name)
            several = name == "content-type" and operator == "starts-with" and actual is not None
            candidates = actual.split(",") if several else [actual]
            if actual is None or not all(
                c == expected if operator == "eq" else c.startswith(expected) for c in candidates
            ):
                raise Refused(f"Policy Condition failed: {json.dumps([operator, field, expected])}")
            covered.add(name)
    extra = sorted(
        name
        for name in values
        if name not in covered and name not in FORM_EXEMPT and not name.startswith("x-ignore-")
    )
    if extra:
        raise Refused(f"Extra input fields: {', '.join(extra)}")
    return sizes


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Refused("the policy's content-length-range is not two numbers", 400)
    try:
        return int(value)
    except ValueError as exc:
        raise Refused("the policy's content-length-range is not two numbers", 400) from exc


def _form_messages(
    fields: dict[str, str], buffer: bytearray, start: int, end: int
) -> tuple[bytes, list[Message]]:
    """The form the gate checked, made anew (its own boundary, quoted names, the file
    last and without a filename): the Content-Type and the body's messages."""
    encoded = {name: value.encode("utf-8") for name, value in fields.items()}
    while True:
        boundary = b"crucible-" + secrets.token_hex(24).encode()
        delimiter = b"--" + boundary
        if delimiter not in buffer and not any(delimiter in v for v in encoded.values()):
            break
    head = b"".join(
        delimiter + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        + value + b"\r\n"
        for name, value in encoded.items()
    )  # fmt: skip
    head += delimiter + b'\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
    step = 1024 * 1024
    bodies = [head] + [bytes(buffer[i : min(i + step, end)]) for i in range(start, end, step)]
    bodies.append(b"\r\n" + delimiter + b"--\r\n")
    messages = [{"type": "http.request", "body": b, "more_body": True} for b in bodies]
    messages[-1]["more_body"] = False
    return b"multipart/form-data; boundary=" + boundary, messages


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
        port=int(os.environ.get("GATEWAY_PORT", "4566")),
    )
    sys.argv = [sys.argv[0]]
    ministack.main()  # serves ministack.app, now the gate


if __name__ == "__main__":
    main()
