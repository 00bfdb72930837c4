"""The Lambda handler builds only the router modules a path can reach: the route table it
reads must be current, and must never leave out a module with a route that matches."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import compile_path

from functions.api import routes
from functions.api.app import create_app
from shared.settings import load_settings


@pytest.fixture(scope="module")
def full_app():
    return create_app(load_settings(rate_limit_per_minute=0))


def test_the_route_table_is_current():
    stored = json.loads(routes.TABLE.read_text())
    assert stored == routes.generate(), "run: python -m functions.api.routes"


def _samples() -> list[str]:
    paths = []
    for _, template in json.loads(routes.TABLE.read_text()):
        for value in ("1", "abc", "x.y"):
            path = re.sub(r"\{[^}]+\}", value, template)
            paths += [path, path + "/"]
    return [*paths, "/", "/docs", "/openapi.json", "/api/v1/nothing", "/jobs/1/nothing"]


def test_every_module_with_a_matching_route_is_built(full_app):
    table = [
        (route.endpoint.__module__.rpartition(".")[2], compile_path(route.path)[0])
        for route in iter_route_contexts(full_app.routes)
        if route.endpoint.__module__.startswith("functions.api.routers.")
    ]
    for path in _samples():
        matching = {module for module, regex in table if regex.match(path)}
        chosen = routes.modules_for(path)
        assert matching <= (chosen or set()), path  # None (the full app) only if no match


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/audio-files"),  # 401 without a token
        ("DELETE", "/api/v1/health"),  # 405
        ("GET", "/jobs/abc/status"),  # seed 000's and seed 004's /jobs overlap
        ("GET", "/api/v1/nothing"),  # 404 from the full app
    ],
)
def test_a_partial_app_answers_as_the_full_one(full_app, method, path):
    settings = load_settings(rate_limit_per_minute=0)
    part = create_app(settings, full_app.state.container, modules=routes.modules_for(path))
    with TestClient(full_app) as a, TestClient(part) as b:
        ra, rb = a.request(method, path), b.request(method, path)
    assert (ra.status_code, ra.headers.get("allow")) == (rb.status_code, rb.headers.get("allow"))
    strip = lambda body: {k: v for k, v in body.items() if k not in ("error", "request_id")}  # noqa: E731
    assert strip(ra.json()) == strip(rb.json())


def _event(path: str) -> dict:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "POST",
        "headers": {"Host": "api.example.com"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path[1:]},
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "POST",
            "path": "/prod" + path,
            "stage": "prod",
            "requestId": "r1",
            "identity": {"sourceIp": "127.0.0.1"},
        },
    }


class _Context:
    function_name = "api"
    memory_limit_in_mb = 1024
    aws_request_id = "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:api"


def test_the_lambda_handler_refuses_an_encoded_slash_the_gateway_would_route_elsewhere():
    from functions.api.handler import handler

    # API Gateway sees one segment (its {proxy+}, no authorizer); the app would see two
    out = handler(_event("/api/v1/training%2Fjobs"), _Context())
    body = json.loads(out["body"])
    assert out["statusCode"] == 400 and body["code"] == "ENCODED_SLASH"
    assert out["headers"]["X-Request-ID"] == "req-1"
    # an ordinary request goes through (a 401: no token)
    assert handler(_event("/api/v1/training/jobs"), _Context())["statusCode"] == 401
