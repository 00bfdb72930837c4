"""The API's answer to an unexpected exception, over HTTP into the ASGI app (no AWS: the
service that fails is the only one the request reaches)."""

import asyncio

import httpx

from functions.api.app import create_app
from shared.settings import load_settings
from shared.wiring import build


class BrokenAuth:
    """Whichever of its methods the API calls, it fails unexpectedly."""

    def __getattr__(self, name):
        def broken(*args, **kwargs):
            raise RuntimeError("botocore: table crucible-prod-data in 123456789012 is unreachable")

        return broken


def test_an_unexpected_error_answers_a_generic_500_with_the_request_id(caplog):
    settings = load_settings(rate_limit_per_minute=0)
    container = build(settings)
    container.auth = BrokenAuth()
    app = create_app(settings, container)

    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.get("/api/v1/auth/me", headers={"Authorization": "Bearer x"})

    r = asyncio.run(call())
    assert r.status_code == 500
    body = r.json()
    rid = r.headers["X-Request-ID"]
    assert body["code"] == "INTERNAL_ERROR" and body["request_id"] == rid and rid in body["detail"]
    assert r.headers["content-type"] == "application/json"
    assert body["error"] == {  # seed 003's shape of the same error
        "code": "INTERNAL_ERROR",
        "message": body["detail"],
        "details": {},
        "request_id": rid,
    }
    assert "crucible-prod-data" not in r.text and "botocore" not in r.text
    # The detail is for the operator: in the log, with the same request id.
    assert any(rid in rec.getMessage() for rec in caplog.records)


class UnreachableAuth:
    """Whichever of its methods the API calls, the user table cannot be reached."""

    def __getattr__(self, name):
        def unreachable(*args, **kwargs):
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/")

        return unreachable


def test_an_unreachable_backing_service_answers_503_with_retry_after():
    """The local emulator restarting (or a blip in AWS) is worth a retry, not a 500."""
    settings = load_settings(rate_limit_per_minute=0)
    container = build(settings)
    container.auth = UnreachableAuth()
    app = create_app(settings, container)

    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.get("/api/v1/auth/me", headers={"Authorization": "Bearer x"})

    r = asyncio.run(call())
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json()["code"] == "SERVICE_UNAVAILABLE" and "4566" not in r.text
    responses = app.openapi()["paths"]["/api/v1/auth/me"]["get"]["responses"]
    assert "Retry-After" in responses["503"]["headers"]


def test_every_error_has_both_shapes_and_the_request_id():
    app = create_app(load_settings(rate_limit_per_minute=0))

    async def calls():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return [
                await http.get("/api/v1/nowhere"),  # 404 from the router
                await http.delete("/api/v1/health"),  # 405
                await http.get("/api/v1/auth/me"),  # 401, a domain error
                await http.post(
                    "/api/v1/auth/login", content=b"{", headers={"content-type": "application/json"}
                ),  # 422
            ]

    for r in asyncio.run(calls()):
        body, rid = r.json(), r.headers["X-Request-ID"]
        assert r.status_code in (401, 404, 405, 422), r.text
        assert {"detail", "code", "field", "error"} <= set(body), body
        err = body["error"]
        assert err["code"] == body["code"] and err["message"] == body["detail"]
        assert err["request_id"] == rid and isinstance(err["details"], dict)


def test_the_openapi_declares_the_error_bodies_actually_sent():
    """Every 4xx/5xx is ErrorOut (a 422 ValidationErrorOut, `detail` a string, as seed 002
    has it), never FastAPI's HTTPValidationError; the bodies sent validate against them."""
    from functions.api.routers.common import ErrorOut, ValidationErrorOut

    app = create_app(load_settings(rate_limit_per_minute=0, auth_rate_limit_per_minute=0))
    doc = app.openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "500" in responses, (method, path)
            if op.get("security"):
                assert {"401", "429"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status[0] in "45" and status != "503":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    name = "ValidationErrorOut" if status == "422" else "ErrorOut"
                    assert ref == f"#/components/schemas/{name}", (method, path, status)
                assert "X-Request-ID" in response["headers"], (method, path, status)

    async def calls():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return (
                await http.post("/api/v1/auth/login", json={"email": 3}),
                await http.get("/api/v1/auth/me"),
            )

    invalid, unauthenticated = asyncio.run(calls())
    assert invalid.status_code == 422 and unauthenticated.status_code == 401
    body = ValidationErrorOut.model_validate(invalid.json())
    assert isinstance(body.detail, str) and body.errors[0].loc[0] == "body"
    ErrorOut.model_validate(unauthenticated.json())


def test_every_openapi_link_resolves():
    """The links that let a stateful client follow what it created: each source, status
    and target exists, so a renamed route cannot drop one silently."""
    from functions.api.openapi import LINKS

    doc = create_app(load_settings(rate_limit_per_minute=0)).openapi()

    def op(spec):
        method, path = spec.split(" ", 1)
        return doc["paths"][path][method.lower()]

    declared = 0
    for (source, status), targets in LINKS.items():
        links = op(source)["responses"][status]["links"]
        for target, parameters, _body in targets:
            target_op = op(target)
            names = {p["name"] for p in target_op.get("parameters", [])}
            assert set(parameters) <= names, (source, target)
        declared += len(targets)
        assert len(links) == len(targets), source
    assert declared >= 60
