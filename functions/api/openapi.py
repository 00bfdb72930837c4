"""The OpenAPI document as the API really answers (``app.openapi()``, ``/openapi.json``).

FastAPI describes what it sees in the routes' signatures; the rest is added here, for
every operation alike, so that a client (or a fuzzer: `make fuzz`) can trust it:

- **Error bodies.** Every error is :func:`functions.api.errors.error_body`, declared as
  ``ErrorOut``; a 422 is ``ValidationErrorOut`` (``detail`` a string, ``errors`` a list),
  not FastAPI's ``HTTPValidationError``.
- **Errors any operation may answer**: 401 and 429 where a caller is authenticated (or an
  internal secret checked), 400 (a body that cannot be parsed), 413 and 422 where a body
  is read, 422 where parameters are, and 500 (JSON that quotes the request id).
- **Headers**: ``X-Request-ID`` on every response; ``X-RateLimit-*`` on authenticated
  ones (absent when limits are off); ``Retry-After`` on every 429.
- **Links** (:data:`LINKS`): which response's field feeds which operation's parameter,
  so that a stateful client follows a created resource to the routes that read, change
  and delete it (POST /projects -> GET /projects/{project_id}, ...).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from functions.api.routers.common import ErrorOut, ValidationErrorOut

V1 = "/api/v1"
_ERROR = {"$ref": "#/components/schemas/ErrorOut"}
_VALIDATION = {"$ref": "#/components/schemas/ValidationErrorOut"}
_STANDARD_ERRORS = {
    "400": "Bad request: a value was refused, or the body could not be parsed",
    "401": "Not authenticated: no, a wrong or an expired credential",
    "413": "The request body is larger than the API takes (at most 4.4 MiB, what the API "
    "Lambda's event carries; the detail names the presigned route for larger files)",
    "422": "The request does not match its schema; `errors` lists every problem",
    "429": "Rate limit exceeded: wait `Retry-After` seconds",
    "500": "Unexpected error: the body quotes the request id (nothing else)",
    "503": "A service the API depends on is briefly unreachable: retry after `Retry-After` s",
}
_REQUEST_ID = {
    "description": "The request's id (API Gateway's in AWS): quote it when reporting a problem",
    "required": True,
    "schema": {"type": "string"},
}
_RATE_HEADERS = {
    name: {"description": text, "schema": {"type": "integer"}}
    for name, text in (
        ("X-RateLimit-Limit", "Requests allowed in the window that binds the caller"),
        ("X-RateLimit-Remaining", "Requests left in that window"),
        ("X-RateLimit-Reset", "When that window resets (Unix time, seconds)"),
    )
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer"},
}

# --- links: (source operation, its status) -> [(target operation, parameters, body)] -------
# Parameters and bodies hold OpenAPI runtime expressions ($response.body#/id, ...).
_FILE_ID_TARGETS = [
    f"GET {V1}/audio-files/{{file_id}}",
    f"PATCH {V1}/audio-files/{{file_id}}",
    f"GET {V1}/audio-files/{{file_id}}/stream",
    f"POST {V1}/analysis/{{file_id}}/start",
    f"GET {V1}/analysis/{{file_id}}/status",
    f"GET {V1}/analysis/{{file_id}}/result",
    f"GET {V1}/export/{{file_id}}/csv",
    f"GET {V1}/export/{{file_id}}/json",
    f"GET {V1}/visualization/{{file_id}}/waveform",
    f"GET {V1}/visualization/{{file_id}}/spectrogram",
    f"PUT {V1}/tags/{{file_id}}/tags",
    f"DELETE {V1}/audio-files/{{file_id}}",
]
_JOB_TARGETS = [
    f"GET {V1}/training/jobs/{{job_id}}",
    f"GET {V1}/training/jobs/{{job_id}}/metrics",
    f"GET {V1}/training/jobs/{{job_id}}/logs",
    f"GET {V1}/validation/results/{{job_id}}",
    f"POST {V1}/training/jobs/{{job_id}}/start",
    f"POST {V1}/training/stop/{{job_id}}",
]
_WORKFLOW_TARGETS = [
    f"GET {V1}/workflows/{{workflow_id}}",
    f"GET {V1}/workflows/{{workflow_id}}/metrics",
    f"GET {V1}/workflows/{{workflow_id}}/logs",
    f"POST {V1}/inference/{{workflow_id}}/predict",
    f"POST {V1}/inference/{{workflow_id}}/batch",
    f"DELETE {V1}/workflows/{{workflow_id}}",
]
_DATASET_TARGETS = [
    f"GET {V1}/datasets/{{dataset_id}}",
    f"POST {V1}/datasets/{{dataset_id}}/validate",
]


def _each(targets: list[str], name: str, expression: str) -> list[tuple]:
    return [(target, {name: expression}, None) for target in targets]


def _leaderboard(prefix: str) -> dict[tuple[str, str], list[tuple]]:
    job = {"job_id": "$response.body#/job_id"}
    on_job = [
        (f"GET {prefix}/jobs/{{job_id}}/status", job, None),
        (f"GET {prefix}/jobs/{{job_id}}/logs", job, None),
        (f"GET {prefix}/jobs/{{job_id}}/results", job, None),
        (f"POST {prefix}/jobs/{{job_id}}/cancel", job, None),
        (f"POST {prefix}/jobs/{{job_id}}/rerun", job, None),
    ]
    return {
        (f"POST {prefix}/submissions", "200"): [
            (f"POST {prefix}/jobs", {}, {"submission_id": "$response.body#/submission_id"})
        ],
        (f"POST {prefix}/jobs", "200"): on_job,
        (f"POST {prefix}/jobs/{{job_id}}/rerun", "200"): on_job,
    }


LINKS: dict[tuple[str, str], list[tuple[str, dict[str, str], dict | None]]] = {
    (f"POST {V1}/auth/register", "201"): [
        (
            f"POST {V1}/auth/login",
            {},
            {"email": "$request.body#/email", "password": "$request.body#/password"},
        ),
        (f"GET {V1}/users/{{user_id}}", {"user_id": "$response.body#/id"}, None),
    ],
    (f"POST {V1}/auth/login", "200"): [
        (f"POST {V1}/auth/refresh", {}, {"refresh_token": "$response.body#/refresh_token"})
    ],
    (f"POST {V1}/auth/token", "200"): [
        (f"POST {V1}/auth/refresh", {}, {"refresh_token": "$response.body#/refresh_token"})
    ],
    (f"POST {V1}/projects", "201"): [
        (f"GET {V1}/projects/{{project_id}}", {"project_id": "$response.body#/id"}, None)
    ],
    (f"POST {V1}/tags/", "201"): [
        (f"DELETE {V1}/tags/{{tag_id}}", {"tag_id": "$response.body#/id"}, None),
        (f"POST {V1}/tags/{{file_id}}/tags/{{tag_id}}", {"tag_id": "$response.body#/id"}, None),
        (f"DELETE {V1}/tags/{{file_id}}/tags/{{tag_id}}", {"tag_id": "$response.body#/id"}, None),
    ],
    (f"POST {V1}/audio-files/upload", "201"): _each(
        _FILE_ID_TARGETS, "file_id", "$response.body#/file/id"
    ),
    (f"POST {V1}/audio-files/presign", "201"): _each(
        _FILE_ID_TARGETS, "file_id", "$response.body#/file_id"
    ),
    (f"POST {V1}/audio-files/multipart", "201"): [
        *_each(_FILE_ID_TARGETS, "file_id", "$response.body#/file_id"),
        (
            f"POST {V1}/audio-files/{{file_id}}/multipart/complete",
            {"file_id": "$response.body#/file_id"},
            {"upload_id": "$response.body#/upload_id"},
        ),
    ],
    (f"POST {V1}/datasets", "201"): _each(_DATASET_TARGETS, "dataset_id", "$response.body#/id"),
    (f"POST {V1}/datasets/upload", "201"): _each(
        _DATASET_TARGETS, "dataset_id", "$response.body#/id"
    ),
    (f"POST {V1}/datasets/presign", "201"): _each(
        _DATASET_TARGETS, "dataset_id", "$response.body#/dataset_id"
    ),
    (f"POST {V1}/training/jobs", "201"): _each(_JOB_TARGETS, "job_id", "$response.body#/id"),
    (f"GET {V1}/validation/results/{{job_id}}", "200"): [
        (
            f"GET {V1}/validation/images/{{validation_result_id}}",
            {"validation_result_id": "$response.body#/results/0/id"},
            None,
        )
    ],
    (f"POST {V1}/workflows", "201"): _each(
        _WORKFLOW_TARGETS, "workflow_id", "$response.body#/workflow_id"
    ),
    (f"POST {V1}/inference/{{workflow_id}}/batch", "202"): [
        (
            f"GET {V1}/inference/{{workflow_id}}/batch/{{job_id}}",
            {"workflow_id": "$response.body#/workflow_id", "job_id": "$response.body#/job_id"},
            None,
        )
    ],
    (f"POST {V1}/chat/message", "200"): [
        (
            f"GET {V1}/chat/sessions/{{session_id}}",
            {"session_id": "$response.body#/session_id"},
            None,
        ),
        (f"POST {V1}/chat/message", {}, {"session_id": "$response.body#/session_id"}),
        (
            f"DELETE {V1}/chat/sessions/{{session_id}}",
            {"session_id": "$response.body#/session_id"},
            None,
        ),
    ],
    **_leaderboard(""),
    **_leaderboard(f"{V1}/leaderboard"),
}


def install(app: FastAPI) -> None:
    """Serve :func:`document` as ``app.openapi()`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    doc = FastAPI.openapi(app)  # FastAPI's own, built from the routes
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # FastAPI's 422, never sent
    doc["components"]["headers"] = {
        "X-Request-ID": _REQUEST_ID,
        "Retry-After": _RETRY_AFTER,
        **_RATE_HEADERS,
    }
    for item in doc.get("paths", {}).values():
        for op in item.values():
            _declare_errors(op)
            _declare_headers(op)
    _declare_links(doc)
    return doc


def _error_response(status: str, schema: dict, description: str | None = None) -> dict:
    return {
        "description": description or _STANDARD_ERRORS.get(status, "Error"),
        "content": {"application/json": {"schema": schema}},
    }


def _authenticated(op: dict) -> bool:
    """A bearer credential or the internal secret is checked: 401 and 429 may answer."""
    return bool(op.get("security")) or any(
        p.get("in") == "header" and p.get("name", "").lower() == "x-internal-auth"
        for p in op.get("parameters", [])
    )


def _declare_errors(op: dict) -> None:
    responses = op.setdefault("responses", {})
    has_body = "requestBody" in op
    has_params = bool(op.get("parameters"))
    wanted = ["500", "503"]
    if _authenticated(op):
        wanted += ["401", "429"]
    if has_body:
        wanted += ["400", "413", "422"]
    elif has_params:
        wanted.append("422")
    for status in wanted:
        responses.setdefault(status, {"description": _STANDARD_ERRORS[status]})
    for status, response in responses.items():
        if status[0] not in "45" or "HealthOut" in str(response.get("content")):
            continue  # the health check's 503 has its own body
        schema = _VALIDATION if status == "422" else _ERROR
        response["content"] = {"application/json": {"schema": schema}}
        response.setdefault("description", _STANDARD_ERRORS.get(status, "Error"))
        if response.get("description") == "Validation Error":  # FastAPI's
            response["description"] = _STANDARD_ERRORS["422"]


def _declare_headers(op: dict) -> None:
    names = ["X-Request-ID"]
    if op.get("security"):
        names += list(_RATE_HEADERS)
    for status, response in op.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        for name in [*names, *(["Retry-After"] if status in ("429", "503") else [])]:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})


def _pointer(path: str, method: str) -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"#/paths/{escaped}/{method.lower()}"


def _declare_links(doc: dict) -> None:
    paths = doc.get("paths", {})

    def operation(spec: str) -> dict | None:
        method, path = spec.split(" ", 1)
        return paths.get(path, {}).get(method.lower())

    for (source, status), targets in LINKS.items():
        op = operation(source)
        if op is None or status not in op.get("responses", {}):
            continue
        links = op["responses"][status].setdefault("links", {})
        for target, parameters, body in targets:
            if operation(target) is None:
                continue
            method, path = target.split(" ", 1)
            link: dict[str, Any] = {"operationRef": _pointer(path, method)}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            name = f"{method.lower()}{''.join(w.title() for w in path.split('/') if w)}"
            links[name.replace("{", "").replace("}", "").replace("-", "").replace("_", "")] = link
