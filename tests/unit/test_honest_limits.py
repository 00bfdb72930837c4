"""The API's limits are what AWS can really take: a request body no larger than a Lambda
event can carry (413 past it, naming the presigned route), and a prediction that could not
be answered in time is a 503 with ``Retry-After``, declared in the OpenAPI document.
Over HTTP into the ASGI app; nothing behind it is reached."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from functions.api.app import create_app
from shared.adapters.runners import InferenceUnavailable
from shared.settings import (
    LAMBDA_PAYLOAD_BYTES,
    MAX_API_BODY_BYTES,
    SettingsError,
    load_settings,
)
from shared.wiring import build

BOUNDARY = "----crucible0123456789abcdef"


def multipart(data: bytes, filename: str = "a.wav") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def rest_event(body: bytes) -> dict:
    """An API Gateway REST proxy event as it reaches the API Lambda, with headers at API
    Gateway's 10 KiB cap (a long bearer token, cookies), which the event carries twice."""
    headers = {
        "Authorization": "Bearer " + "t" * 1500,
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Cookie": "c=" + "x" * 7000,
        "User-Agent": "Mozilla/5.0 " + "u" * 400,
        "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678",
        "X-Forwarded-For": "203.0.113.1, 198.51.100.2",
        "Host": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
    }
    assert sum(len(k) + len(v) + 4 for k, v in headers.items()) <= 10 * 1024
    return {
        "resource": "/{proxy+}",
        "path": "/api/v1/audio-files/upload",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "api/v1/audio-files/upload"},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "POST",
            "path": "/prod/api/v1/audio-files/upload",
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.1", "userAgent": headers["User-Agent"]},
            "domainName": headers["Host"],
            "requestTimeEpoch": 1767225600000,
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def test_the_largest_body_the_api_takes_fits_in_a_lambda_event():
    largest = multipart(b"\x00" * (MAX_API_BODY_BYTES - len(multipart(b""))))
    assert len(largest) == MAX_API_BODY_BYTES
    event = json.dumps(rest_event(largest)).encode()
    assert len(event) <= LAMBDA_PAYLOAD_BYTES
    # ... with a margin, and not much more: a file of 4.4 MiB goes through the API
    assert LAMBDA_PAYLOAD_BYTES - len(event) < 128 * 1024
    assert MAX_API_BODY_BYTES - len(multipart(b"")) > int(4.4 * 2**20)


def test_the_setting_cannot_claim_more_than_lambda_takes():
    assert load_settings().max_request_bytes == MAX_API_BODY_BYTES
    assert load_settings(max_request_bytes=1024 * 1024).max_request_bytes == 1024 * 1024
    with pytest.raises(SettingsError, match="CRUCIBLE_MAX_REQUEST_BYTES"):
        load_settings(max_request_bytes=10 * 1024 * 1024)


def _call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(call())


@pytest.fixture(scope="module")
def app():
    settings = load_settings(rate_limit_per_minute=0)
    return create_app(settings, build(settings))


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/v1/audio-files/upload", "/api/v1/audio-files/presign"),
        ("/api/v1/audio-files/upload/batch", "/api/v1/audio-files/multipart"),
        ("/api/v1/datasets", "/api/v1/datasets/presign"),
        ("/api/v1/datasets/upload", "/api/v1/datasets/presign"),
    ],
)
def test_a_body_past_the_limit_is_413_naming_the_presigned_route(app, path, route):
    over = _call(app, "POST", path, content=multipart(b"\x00" * MAX_API_BODY_BYTES))
    assert over.status_code == 413, over.text
    body = over.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE" and route in body["detail"]
    assert f"{MAX_API_BODY_BYTES:,} bytes" in body["detail"]
    # at the limit, the body is taken: the request goes on (to authentication)
    at = multipart(b"\x00" * (MAX_API_BODY_BYTES - len(multipart(b""))))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    assert _call(app, "POST", path, content=at, headers=headers).status_code == 401


def test_a_body_past_the_limit_elsewhere_is_413_too(app):
    over = _call(app, "POST", "/submissions", content=b"\x00" * (MAX_API_BODY_BYTES + 1))
    assert over.status_code == 413 and over.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_the_openapi_document_states_the_limits(app):
    doc = app.openapi()
    text = doc["info"]["description"]
    assert f"{MAX_API_BODY_BYTES:,} bytes" in text and "/api/v1/audio-files/presign" in text
    assert "MODEL_WARMING_UP" in text
    for path in ("/api/v1/test-inference", "/inference", "/api/v1/inference/{workflow_id}/predict"):
        warming = doc["paths"][path]["post"]["responses"]["503"]
        assert "MODEL_WARMING_UP" in warming["description"], path
        assert "Retry-After" in warming["headers"], path


class ColdTraining:
    """The training service, its predictor timing out on a cold function."""

    def __getattr__(self, name):
        def cold(*args, **kwargs):
            raise InferenceUnavailable("The model is warming up; retry in 10 s")

        return cold


class Caller:
    """Authentication that knows one user, never reading a table."""

    def identify(self, token, read=True):
        from shared.models import Principal

        return (Principal(user_id=7, role="user"), None) if token == "ok" else None


def test_a_prediction_that_cannot_answer_in_time_is_503_with_retry_after():
    settings = load_settings(rate_limit_per_minute=0)
    container = build(settings)
    container.training, container.auth = ColdTraining(), Caller()
    app = create_app(settings, container)
    r = _call(
        app,
        "POST",
        "/inference",
        files={"file": ("a.wav", b"RIFF....", "audio/wav")},
        headers={"Authorization": "Bearer ok"},
    )
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "MODEL_WARMING_UP" and "warming up" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) == InferenceUnavailable.retry_after
