"""The `crucible` command's own logic, without a stack: the token file, refusals turned into
one line and an exit code, the request bodies built from options, the streamed upload
body, and the folder packing."""

from __future__ import annotations

import json
import stat
import zipfile

import httpx
import pytest

from crucible_cli import jobs, leaderboard, uploads
from crucible_cli.client import Api, CliError, Exit, TokenStore, clean, refusal


def test_the_token_file_is_the_users_only_and_keeps_a_session_per_url(tmp_path):
    store = TokenStore(tmp_path / "crucible")
    store.save("http://a", {"access_token": "x"})
    store.save("http://b", {"access_token": "y"})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert store.load("http://a") == {"access_token": "x"}
    store.save("http://a", None)
    assert store.load("http://a") is None and store.load("http://b") == {"access_token": "y"}
    assert list(store.dir.iterdir()) == [store.path]  # no temporary file left behind

    store.path.write_text("{not json")
    with pytest.raises(CliError) as bad:
        store.load("http://b")
    assert bad.value.code == Exit.AUTH and "crucible login" in bad.value.message


def response(status: int, body: object, **headers: str) -> httpx.Response:
    content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, Exit.REFUSED), (401, Exit.AUTH), (404, Exit.REFUSED), (409, Exit.REFUSED),
     (500, Exit.UNAVAILABLE), (503, Exit.UNAVAILABLE)],
)  # fmt: skip
def test_a_refusal_is_the_apis_words_and_an_exit_code(status, code):
    err = refusal(response(status, {"detail": "Training job not found", "code": "JOB_NOT_FOUND"}))
    assert err.code == code
    assert err.message == f"Training job not found (HTTP {status} JOB_NOT_FOUND)"


def test_a_refusal_without_the_apis_body_still_says_something():
    assert refusal(response(502, b"<html>Bad Gateway</html>")).message == (
        "<html>Bad Gateway</html> (HTTP 502)"
    )
    assert refusal(response(404, b"")).message == "Not Found (HTTP 404)"
    listed = refusal(response(422, {"detail": [{"msg": "field required"}, {"msg": "too big"}]}))
    assert listed.message == "field required; too big (HTTP 422)"
    too_many = response(429, {"detail": "Too many", "code": "RATE_LIMITED"})
    too_many.headers["Retry-After"] = "30"
    limited = refusal(too_many)
    assert limited.message.endswith("try again in 30 s") and limited.code == Exit.REFUSED


def test_text_from_the_api_cannot_drive_the_terminal():
    hostile = "ok\x1b]0;pwned\x07\x1b[2J\r\x9b31m done"
    assert clean(hostile) == "ok]0;pwned[2J31m done"
    err = refusal(response(400, {"detail": hostile, "code": "X"}))
    assert "\x1b" not in err.message and "\r" not in err.message


def test_an_expired_token_is_refreshed_once_and_kept(tmp_path):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers.get('authorization')}")
        if request.url.path == "/api/v1/auth/refresh":
            assert json.loads(request.content) == {"refresh_token": "r1"}
            return response(200, {"access_token": "a2", "expires_in": 900})
        if request.headers["authorization"] == "Bearer a1":
            return response(401, {"detail": "Token has expired", "code": "TOKEN_EXPIRED"})
        return response(200, {"id": 7})

    store = TokenStore(tmp_path)
    store.save("http://api", {"access_token": "a1", "refresh_token": "r1", "expires_at": 1e12})
    api = Api("http://api", store)
    api.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    assert api.get("/api/v1/auth/me") == {"id": 7}
    assert seen == [
        "GET /api/v1/auth/me Bearer a1",
        "POST /api/v1/auth/refresh None",
        "GET /api/v1/auth/me Bearer a2",
    ]
    assert store.load("http://api")["access_token"] == "a2"


def test_a_refused_refresh_ends_the_session_with_exit_3(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        return response(401, {"detail": "Invalid token", "code": "INVALID_TOKEN"})

    store = TokenStore(tmp_path)
    store.save("http://api", {"access_token": "a1", "refresh_token": "r1", "expires_at": 0})
    api = Api("http://api", store)
    api.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    with pytest.raises(CliError) as ended:
        api.get("/api/v1/auth/me")
    assert ended.value.code == Exit.AUTH and "crucible login" in ended.value.message


def test_the_websocket_url_carries_no_token():
    api = Api("https://crucible.example", TokenStore())
    assert api.ws_url("job:5") == "wss://crucible.example/api/v1/ws?topic=job%3A5&format=crucible"


def test_a_job_request_from_a_file_options_and_settings(tmp_path):
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "experiment_name": "from file",
                "config": {
                    "framework": "timm",
                    "model_name": "resnet50",
                    "dataset_id": "d1",
                    "epochs": 50,
                    "advanced_config": {"image_size": 224},
                },
            }
        )
    )
    body = jobs.request_body(
        config,
        {"model_name": "resnet10t", "epochs": None, "learning_rate": 0.01},
        {"tags": ["a"], "notes": None},
        ["image_size=32", "optimizer=adamw", "mixed_precision=true", "betas=[0.9,0.99]"],
    )
    assert body == {
        "experiment_name": "from file",
        "tags": ["a"],
        "config": {
            "framework": "timm",
            "model_name": "resnet10t",
            "dataset_id": "d1",
            "epochs": 50,
            "learning_rate": 0.01,
            "advanced_config": {
                "image_size": 32,
                "optimizer": "adamw",
                "mixed_precision": True,
                "betas": [0.9, 0.99],
            },
        },
    }
    only_config = tmp_path / "config.json"
    only_config.write_text(json.dumps({"model_name": "m", "dataset_id": "d"}))
    assert jobs.request_body(only_config, {}, {}, [])["config"] == {
        "model_name": "m",
        "dataset_id": "d",
    }


@pytest.mark.parametrize(
    ("config", "options", "settings", "words"),
    [
        (None, {"model_name": "m"}, [], "--dataset"),
        (None, {"dataset_id": "d", "model_name": "m"}, ["image_size"], "key=value"),
        ("[1, 2]", {}, [], "JSON object"),
        ("{oops", {}, [], "is not JSON"),
    ],
)
def test_a_job_request_that_cannot_be_is_a_usage_error(tmp_path, config, options, settings, words):
    path = None
    if config is not None:
        path = tmp_path / "c.json"
        path.write_text(config)
    with pytest.raises(CliError) as bad:
        jobs.request_body(path, options, {}, settings)
    assert bad.value.code == Exit.USAGE and words in bad.value.message


def test_a_streamed_form_is_what_a_multipart_parser_reads(tmp_path):
    path = tmp_path / '夜泣き "quoted".wav'
    data = bytes(range(256)) * 3000
    path.write_bytes(data)
    sent: list[int] = []
    headers, body = uploads.form([("key", "audio/1/x.wav")], "file", path, sent.append)
    raw = b"".join(body)
    assert int(headers["Content-Length"]) == len(raw) and sum(sent) == len(data)
    request = httpx.Request("POST", "http://x", content=raw, headers=headers)
    from starlette.formparsers import MultiPartParser  # the API's own parser

    async def parse():
        async def stream():
            yield request.content

        return await MultiPartParser(request.headers, stream()).parse()

    import asyncio

    parsed = asyncio.run(parse())
    assert parsed["key"] == "audio/1/x.wav"
    uploaded = parsed["file"]
    assert asyncio.run(uploaded.read()) == data
    assert uploaded.filename == "夜泣き %22quoted%22.wav"  # as a browser sends it


def test_a_folder_is_packed_without_hidden_files_caches_or_links(tmp_path):
    src = tmp_path / "code"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "main.py").write_text("print(1)")
    (src / "config.yaml").write_text("a: 1")
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (src / ".git" / "HEAD").write_text("ref")
    (src / ".env").write_text("SECRET=1")
    (src / "link.py").symlink_to(tmp_path / "elsewhere.py")
    target = tmp_path / "out.zip"
    uploads.zip_folder(src, target)
    with zipfile.ZipFile(target) as z:
        assert sorted(z.namelist()) == ["config.yaml", "main.py", "pkg/__init__.py"]


def test_leaderboard_metadata_takes_the_board():
    assert json.loads(leaderboard.metadata('{"method": "padim"}', "b1")) == {
        "method": "padim",
        "leaderboard": "b1",
    }
    assert leaderboard.metadata(None, None) is None
    with pytest.raises(CliError) as bad:
        leaderboard.metadata("[1]", None)
    assert bad.value.code == Exit.USAGE
