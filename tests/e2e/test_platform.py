"""The local all-in-one stack driven like a frontend: HTTP and WebSocket against the
real `python -m functions.local` process (API, dispatcher, emulator)."""

import asyncio
import json
import time
import uuid

import boto3
import httpx
import jwt
import pytest
import websockets

from tests.conftest import Client, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def s3_client(stack):
    return boto3.client("s3", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")


def test_docs_and_health(stack):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(stack.base + path).status_code == 200
    spec = httpx.get(stack.base + "/openapi.json").json()
    assert "/api/v1/auth/login" in spec["paths"] and "/api/v1/projects" in spec["paths"]
    assert httpx.get(stack.api("/health")).json()["status"] == "ok"
    ready = httpx.get(stack.api("/health/ready"))
    assert ready.status_code == 200 and ready.json()["checks"] == {"table": "ok"}


def test_frontend_journey_with_a_pushed_message(stack, alice):
    # register -> login (done by the Client) -> me
    me = alice.http.get("/auth/me")
    assert (
        me.status_code == 200 and me.json()["email"] == alice.email and me.json()["role"] == "user"
    )
    assert set(alice.login) >= {"access_token", "token_type", "user", "refresh_token", "expires_in"}
    # project and tag
    p = alice.http.post("/projects", json={"name": "Cats", "description": "3 breeds"})
    assert p.status_code == 201 and p.json()["owner_id"] == alice.id
    assert alice.http.get(f"/projects/{p.json()['project_id']}").json()["name"] == "Cats"
    assert [x["name"] for x in alice.http.get("/projects").json()["projects"]] == ["Cats"]
    t = alice.http.post("/tags/", json={"name": "夜泣き"})
    assert t.status_code == 201
    assert alice.http.get("/tags/").json() == {"total": 1, "tags": [t.json()], "next_cursor": None}

    # A WebSocket with the token; an upload lands in S3 and the event reaches the socket.
    async def listen():
        async with websockets.connect(f"{stack.ws}/ws?token={alice.token}") as ws:
            key = f"scratch/{alice.id}/{uuid.uuid4().hex}/notes.txt"
            await asyncio.to_thread(
                s3_client(stack).put_object,
                Bucket="crucible-local-uploads",
                Key=key,
                Body=b"x" * 10,
            )
            msg = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert msg["type"] == "status"  # seed 000's {"type", "payload"} shape on /ws
            assert msg["payload"]["key"] == key and msg["payload"]["size"] == 10

    asyncio.run(listen())


def test_websocket_needs_a_valid_token_and_a_readable_topic(stack, alice):
    async def scenario():
        for url in (
            f"{stack.ws}/ws",
            f"{stack.ws}/ws?token=nope",
            f"{stack.ws}/ws/workflows/999999?token={alice.token}",
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            assert refused.value.response.status_code == 403
        async with websockets.connect(f"{stack.ws}/api/v1/ws?token={alice.token}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
            await ws.send(json.dumps({"action": "subscribe", "topic": f"user:{alice.id + 1}"}))
            assert json.loads(await ws.recv())["code"] == "TOPIC_NOT_FOUND"
            await ws.send("not json")
            assert json.loads(await ws.recv())["code"] == "INVALID_REQUEST"

    asyncio.run(scenario())


def test_a_user_holds_a_bounded_number_of_connections(stack, alice, bob):
    """At most ws_max_connections_per_user (20) sockets per user: one more is refused
    (and counts for nothing: closing one of the 20 makes room for exactly one); another
    user's are not counted."""
    cap = 20
    url = f"{stack.ws}/api/v1/ws?token={alice.token}"

    async def ping(ws) -> None:
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"type": "pong"}

    async def refused(url: str) -> None:
        with pytest.raises(websockets.InvalidStatus) as answer:
            async with websockets.connect(url):
                pass
        assert answer.value.response.status_code == 403

    async def scenario():
        held = [await websockets.connect(url) for _ in range(cap)]
        try:
            for ws in held:
                await ping(ws)
            await refused(url)
            await refused(f"{stack.ws}/ws?token={alice.token}")  # any endpoint counts
            async with websockets.connect(f"{stack.ws}/ws?token={bob.token}") as other:
                await ping(other)  # bob's are his own
            await held.pop().close()  # its $disconnect makes room, soon
            deadline = time.monotonic() + 30
            while True:
                try:
                    held.append(await websockets.connect(url))
                    break
                except websockets.InvalidStatus:
                    assert time.monotonic() < deadline, "a closed connection never made room"
                    await asyncio.sleep(0.2)
            await ping(held[-1])
            await refused(url)  # room for one, not more
            for ws in held:  # the refusals dropped none of those held
                await ping(ws)
        finally:
            for ws in held:
                await ws.close()

    asyncio.run(scenario())


def test_tokens_refresh_and_bad_tokens(stack, alice):
    r = alice.http.post("/auth/token", json={"email": alice.email, "password": alice.password})
    assert (
        r.status_code == 200
        and r.json()["expires_in"] == 3600
        and r.json()["token_type"] == "bearer"
    )
    fresh = alice.http.post("/auth/refresh", json={"refresh_token": r.json()["refresh_token"]})
    assert fresh.status_code == 200 and set(fresh.json()) == {
        "access_token",
        "token_type",
        "expires_in",
    }
    assert (
        httpx.get(
            stack.api("/auth/me"),
            headers={"Authorization": f"Bearer {fresh.json()['access_token']}"},
        ).status_code
        == 200
    )

    claims = jwt.decode(alice.token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "role": "admin"}, "not-the-secret-" + "x" * 30, algorithm="HS256"
    )
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, "wrong" * 10, algorithm="HS256")
    none_alg = jwt.encode(claims, None, algorithm="none")
    for bad in (forged, expired, none_alg, "malformed", r.json()["refresh_token"]):
        resp = httpx.get(stack.api("/auth/me"), headers={"Authorization": f"Bearer {bad}"})
        assert resp.status_code == 401, bad
        assert resp.json()["code"] in ("INVALID_TOKEN", "TOKEN_EXPIRED")
    assert httpx.get(stack.api("/auth/me")).json()["code"] == "UNAUTHORIZED"
    wrong = httpx.post(
        stack.api("/auth/login"), json={"email": alice.email, "password": "wrong-password"}
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "INVALID_CREDENTIALS"


def test_static_api_token(stack):
    h = {"Authorization": "Bearer ci-token-0123456789"}
    me = httpx.get(stack.api("/auth/me"), headers=h)
    assert me.status_code == 200 and me.json()["full_name"] == "ci-bot"
    made = httpx.post(stack.api("/projects"), json={"name": "from CI"}, headers=h)
    assert made.status_code == 201 and made.json()["owner_id"] == me.json()["id"]


def test_one_user_never_sees_anothers_data(stack, alice, bob):
    project = alice.http.post("/projects", json={"name": "private"}).json()
    tag = alice.http.post("/tags/", json={"name": "mine"}).json()
    assert bob.http.get(f"/projects/{project['project_id']}").status_code == 404
    assert bob.http.get("/projects").json()["projects"] == []
    assert bob.http.get("/tags/").json()["total"] == 0
    gone = bob.http.delete(f"/tags/{tag['id']}")
    body = gone.json()
    assert gone.status_code == 404 and body == {  # seed 002's shape and seed 003's, in one
        "detail": "Tag not found",
        "code": "TAG_NOT_FOUND",
        "field": None,
        "request_id": gone.headers["X-Request-ID"],
        "error": {
            "code": "TAG_NOT_FOUND",
            "message": "Tag not found",
            "details": {},
            "request_id": gone.headers["X-Request-ID"],
        },
    }
    assert alice.http.get("/tags/").json()["total"] == 1  # nothing of alice's was touched
    assert bob.http.get(f"/users/{alice.id}").status_code == 404
    assert bob.http.get("/users/").status_code == 403
    assert bob.http.put(f"/users/{bob.id}/role", json={"role": "admin"}).status_code == 403

    researcher = Client(stack, role="researcher")
    listed = researcher.http.get("/users/", params={"skip": 0, "limit": 500}).json()
    assert listed["total"] >= 3 and {alice.id, bob.id} <= {u["id"] for u in listed["users"]}
    assert researcher.http.get(f"/users/{alice.id}").json()["email"] == alice.email
    assert len(researcher.http.get("/users/", params={"skip": 1, "limit": 2}).json()["users"]) == 2


def test_error_shapes_and_codes(stack, alice):
    dup = httpx.post(
        stack.api("/auth/register"), json={"email": alice.email, "password": "password123"}
    )
    assert dup.status_code == 409 and dup.json()["field"] == "email"
    bad = httpx.post(
        stack.api("/auth/register"), json={"email": "not-an-email", "password": "short"}
    )
    assert bad.status_code == 422
    body = bad.json()
    assert (
        body["code"] == "VALIDATION_ERROR" and body["field"] == "email" and len(body["errors"]) == 2
    )
    admin = httpx.post(
        stack.api("/auth/register"),
        json={
            "email": f"x{uuid.uuid4().hex[:6]}@example.com",
            "password": "password123",
            "role": "admin",
        },
    )
    assert admin.status_code == 403 and admin.json()["field"] == "role"
    tag = alice.http.post("/tags/", json={"name": "dup"})
    again = alice.http.post("/tags/", json={"name": "DUP"})
    assert (
        tag.status_code == 201 and again.status_code == 409 and again.json()["code"] == "TAG_EXISTS"
    )
    assert alice.http.get("/projects/not-a-number").status_code == 422
    assert alice.http.get("/no-such-route").json()["code"] == "NOT_FOUND"
    assert alice.http.get("/tags/", params={"limit": 0}).status_code == 422


def test_rate_limit_headers_and_429(stack, alice):
    first = alice.http.get("/tags/")
    limit = int(first.headers["X-RateLimit-Limit"])
    assert int(first.headers["X-RateLimit-Remaining"]) < limit
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    # Windows are fixed minutes: if one ends mid-run the count restarts, so allow two.
    for _ in range(2 * limit + 2):
        r = alice.http.get("/tags/")
        if r.status_code != 200:
            break
    assert r.status_code == 429 and r.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert r.headers["X-RateLimit-Remaining"] == "0" and int(r.headers["Retry-After"]) > 0


def test_restart_keeps_data(tmp_path):
    first = start_stack(tmp_path / "data")
    try:
        user = Client(first)
        project = user.http.post("/projects", json={"name": "survives"}).json()
        tag = user.http.post("/tags/", json={"name": "kept"}).json()
        key = f"scratch/{user.id}/keep.bin"
        s3_client(first).put_object(Bucket="crucible-local-uploads", Key=key, Body=b"RIFFdata")
    finally:
        stop_stack(first)

    second = start_stack(tmp_path / "data")
    try:
        http = httpx.Client(base_url=second.base + "/api/v1")
        login = http.post("/auth/login", json={"email": user.email, "password": user.password})
        assert login.status_code == 200
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        assert http.get(f"/projects/{project['project_id']}").json()["name"] == "survives"
        assert http.get("/tags/").json()["tags"] == [tag]
        # The old token still works too: the secret lives in the data directory.
        assert (
            http.get("/auth/me", headers={"Authorization": f"Bearer {user.token}"}).status_code
            == 200
        )
        body = s3_client(second).get_object(Bucket="crucible-local-uploads", Key=key)["Body"].read()
        assert body == b"RIFFdata"
        # New ids never reuse old ones (a restarted process takes a fresh block of ids).
        new = http.post("/tags/", json={"name": "new"}).json()
        assert new["id"] != tag["id"]
        assert sorted(x["id"] for x in http.get("/tags/").json()["tags"]) == sorted(
            [tag["id"], new["id"]]
        )
    finally:
        stop_stack(second)


def test_operator_promotes_the_first_admin(stack, alice, bob):
    from tests.conftest import promote  # the operator's CLI: functions.local.admin

    promote(stack, alice.email, "admin")
    token = httpx.post(
        stack.api("/auth/login"), json={"email": alice.email, "password": alice.password}
    ).json()
    admin = httpx.Client(
        base_url=stack.base + "/api/v1",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert token["user"]["role"] == "admin"
    made = admin.put(f"/users/{bob.id}/role", json={"role": "researcher"})
    assert made.status_code == 200 and made.json()["role"] == "researcher"
    assert admin.get("/projects", params={"all_users": True}).status_code == 200


def test_oversized_body_is_413_before_it_is_read(stack):
    import socket
    from urllib.parse import urlparse

    url = urlparse(stack.base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n{"
        )
        reply = b""
        while b"PAYLOAD_TOO_LARGE" not in reply and (chunk := s.recv(4096)):
            reply += chunk  # headers and body may arrive in separate segments
    assert reply.startswith(b"HTTP/1.1 413") and b"PAYLOAD_TOO_LARGE" in reply
