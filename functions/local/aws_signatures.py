"""AWS request signatures, checked as AWS checks them, for the emulator's gate.

Part of functions/local/emulator_gate.py, run with MiniStack's interpreter: it uses
MiniStack's own SigV4 primitives (and botocore's HmacV1 for SigV2) and imports nothing
of Crucible. A :class:`Verifier` holds the keys and the one secret a request may be
signed with, and checks a SigV4 ``Authorization`` header (over the payload hash the
client declared, or the body the gate read), a presigned URL (SigV4 ``X-Amz-Credential``
or SigV2 ``AWSAccessKeyId``) and a presigned POST form's policy signature. Every check
raises :class:`Refused`, the gate's refusal, with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ministack.core import sigv4

Scope = dict[str, Any]

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


class Refused(Exception):
    """A request the gate refuses: answered with ``status`` and the S3 error ``code``."""

    def __init__(self, reason: str, status: int = 403, code: str = "AccessDenied") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


class Verifier:
    """Checks signatures made by one of ``keys`` with ``secret``."""

    def __init__(self, keys: Collection[str], secret: str) -> None:
        self.keys = frozenset(keys)
        self.secret = secret

    def header_signature(self, headers: dict[str, str]) -> sigv4.HeaderSignature:
        """A SigV4 ``Authorization`` header, parsed, by one of the keys (not yet checked:
        :meth:`check_header`, once the body it covers is known)."""
        return self._known(sigv4.parse_header_signature(headers))

    def check_header(
        self,
        signature: sigv4.HeaderSignature,
        method: str,
        raw_path: str,
        query: dict,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if sigv4.request_time_failure(signature):
            raise Refused("the request's date is too far from now")
        self._check_sigv4(signature, method, raw_path, query, headers, body, presigned=False)

    def check_presigned(
        self, method: str, raw_path: str, query: dict, headers: dict[str, str]
    ) -> frozenset[str]:
        """A SigV4 presigned URL, which must be an unexpired S3 one that signs its host;
        returns the headers it signs."""
        signature = self._known(sigv4.parse_query_signature(query))
        signed = signed_headers(signature)
        if signature.service != "s3" or "host" not in signed:
            raise Refused("a presigned URL must be an S3 one that signs its host")
        try:
            expired = sigv4.presigned_request_is_expired(
                signature.amz_date, first(query, "X-Amz-Expires") or "0"
            )
        except ValueError:
            expired = True
        if expired:
            raise Refused("the presigned URL has expired")
        self._check_sigv4(signature, method, raw_path, query, headers, b"", presigned=True)
        return signed

    def check_sigv2(
        self, method: str, raw_path: str, query: dict, headers: dict[str, str]
    ) -> set[str]:
        """SigV2 (HmacV1), as S3 checks it: botocore's presigned S3 URLs in us-east-1, or
        an ``Authorization: AWS`` header. Returns the headers it signs."""
        if unsigned := sorted(set(query) - SIGV2_QUERY):
            raise Refused(f"query parameters SigV2 does not sign: {', '.join(unsigned)}")
        from botocore.auth import HmacV1Auth
        from botocore.awsrequest import HTTPHeaders
        from botocore.credentials import Credentials

        authorization = headers.get("authorization", "")
        if authorization.startswith("AWS "):
            key, _, given = authorization[4:].rpartition(":")
            signed_date = headers.get("date", "")
        else:
            key, given, signed_date = (
                first(query, n) for n in ("AWSAccessKeyId", "Signature", "Expires")
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
        # HmacV1 signs every x-amz-* header, Content-Type and Content-MD5.
        signed = {n for n in headers if n.startswith("x-amz-")}
        signed |= {"content-type", "content-md5"}
        if authorization.startswith("AWS "):
            signed |= {"authorization", "date"}
        return signed

    def check_form(self, fields: dict[str, str]) -> str:
        """A presigned POST form's ``policy`` (still encoded), once its SigV4 or SigV2
        signature is one of the keys'."""
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
        return policy

    def _known(self, parsed: Any) -> sigv4.HeaderSignature:
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


def signed_headers(signature: sigv4.HeaderSignature) -> frozenset[str]:
    return frozenset(n.strip().lower() for n in signature.signed_headers.split(";") if n.strip())


def first(query: dict, name: str) -> str:
    """A query parameter's first value (its name as given, or in lower case), or ``""``."""
    values = query.get(name) or query.get(name.lower()) or [""]
    return values[0]


def request_headers(scope: Scope) -> dict[str, str]:
    """An ASGI request's headers: lower-case names; a header sent on several lines is its
    values joined by a bare comma, as SigV4 signs it."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key, text = name.decode("latin-1").lower(), sigv4.decode_header_value(value)
        out[key] = f"{out[key]},{text}" if key in out else text
    return out
