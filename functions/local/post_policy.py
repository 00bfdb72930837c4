"""Presigned POST forms, enforced as S3 enforces them, for the emulator's gate.

Part of functions/local/emulator_gate.py, run with MiniStack's interpreter; imports
nothing of Crucible. :func:`check_form` parses the form once, strictly (quoted names,
each once, ``filename`` only on ``file``, ``file`` last, nothing after it), verifies its
policy's signature and checks every condition (every field but the signature's must be
covered; ``bucket`` is the path's; the file's size within ``content-length-range``), and
gives MiniStack a new form made of exactly those fields and the file, on a form path of
a bucket with no query. A form S3 would call malformed or too large is a ``400``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from ministack.core.router import detect_service

from functions.local.aws_signatures import Refused, Scope, Verifier, request_headers

Message = dict[str, Any]
NextChunk = Callable[[], Awaitable[tuple[bytes, bool]]]  # the body's next bytes, more to come

MAX_FORM_PREFIX = 1024 * 1024  # a POST form's fields before its file
MAX_FORM_FIELDS = 64
MAX_FORM_FILE = 5 * 1024**3  # S3's largest POST upload, for a policy without a size range
FORM_EXEMPT = frozenset({"policy", "x-amz-signature", "awsaccesskeyid", "signature"})

_BUCKET_FORM_PATH = re.compile(r"/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/?")
_BOUNDARY = re.compile(
    r"[0-9A-Za-z'()+_,./:=?-]([0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?"
)
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DISPOSITION = re.compile(r'form-data((?:[ \t]*;[ \t]*[A-Za-z]+="[^"\\\r\n]*")+)[ \t]*', re.I)
_DISPOSITION_PARAM = re.compile(r'[ \t]*;[ \t]*([A-Za-z]+)="([^"\\\r\n]*)"')


def _malformed(reason: str) -> Refused:
    return Refused(reason, 400, "MalformedPOSTRequest")


async def check_form(
    scope: Scope,
    headers: dict[str, str],
    next_chunk: NextChunk,
    verifier: Verifier,
    *,
    own_address: bool,
) -> tuple[Scope, list[Message]]:
    """A presigned POST (sent to the emulator's own address when ``own_address``),
    checked as S3 checks it: the scope and body messages of the form MiniStack gets."""
    for name in ("authorization", "x-amz-target"):
        if name in headers:
            raise Refused(f"a POST form carries no {name} header")
    bucket = _BUCKET_FORM_PATH.fullmatch(scope["path"])
    raw_path = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string") or not bucket or raw_path != scope["path"].encode():
        raise Refused("a POST form goes to a bucket's path, with no query")
    if not own_address:
        raise Refused("a POST form goes to the emulator's own address")
    boundary = _boundary(headers["content-type"])

    buffer, more, prefix = bytearray(), True, None
    while prefix is None:
        if not more:
            raise _malformed("the form ends before its file")
        chunk, more = await next_chunk()
        buffer += chunk
        prefix = _form_prefix(buffer, boundary)
        if prefix is None and len(buffer) > MAX_FORM_PREFIX:
            raise _malformed("the form's fields are too large")
    raw_fields, filename, file_start = prefix
    fields = _form_values(raw_fields, filename)
    policy = _policy_document(verifier.check_form(fields))
    sizes = _check_policy(policy, fields, bucket.group(1))

    limit = file_start + min((hi for _, hi in sizes), default=MAX_FORM_FILE)
    limit += len(boundary) + 8  # "\r\n--" boundary "--\r\n"
    while more:
        chunk, more = await next_chunk()
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
    if detect_service("POST", scope["path"], request_headers(scope), {}) != "s3":
        raise Refused("MiniStack would not take this form as an S3 upload")
    return scope, messages


def _policy_document(policy: str) -> dict:
    """The form's (signed) policy, decoded: an unexpired policy document."""
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


# --- the policy's conditions ----------------------------------------------------------
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


# --- the form MiniStack gets ----------------------------------------------------------
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
