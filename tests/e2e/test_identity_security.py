"""Who a request is, over HTTP and WebSocket against the local stack: static API tokens
that no registration can claim, roles only an administrator grants (and takes back, at
once, sockets included), bodies counted as they arrive, and limits on everything that
runs before authentication.

Two stacks of their own: ``strict`` (the defaults, a small body limit, no limit on
sign-ins so that creating users is free) and ``open_limited`` (the seed's open
registration, and a low sign-in limit). Loopback has many addresses: requests sent from
127.0.0.2, .3, ... are different clients to the server.
"""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import websockets

from tests.audio.synth import cry, wav_bytes
from tests.conftest import ROOT, Client, start_stack, stop_stack

pytestmark = pytest.mark.e2e

TOKEN = "ci-token-0123456789"
MAX_BODY = 64 * 1024
SIGN_IN_LIMIT = 5


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("strict") / "data",
        {
            "API_TOKENS": f"ci-bot={TOKEN}",
            "CRUCIBLE_MAX_REQUEST_BYTES": str(MAX_BODY),
            "CRUCIBLE_RATE_LIMIT_PER_MINUTE": "600",
            "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    yield s
    stop_stack(s)


@pytest.fixture(scope="module")
def open_limited(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("open") / "data",
        {
            "CRUCIBLE_SELF_REGISTER_ROLES": "user,researcher",
            "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": str(SIGN_IN_LIMIT),
        },
    )
    yield s
    stop_stack(s)


def from_address(stack, address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (any 127.x.y.z reaches the server)."""
    return httpx.Client(
        base_url=stack.base + "/api/v1",
        transport=httpx.HTTPTransport(local_address=address),
        timeout=30,
    )


def small_wav() -> bytes:
    return wav_bytes(cry(16_000, 1.5, [(0.2, 1.0, 450)]), 16_000)


# --- static API tokens ---------------------------------------------------------------


def test_registering_a_tokens_address_does_not_take_the_token_over(strict):
    anon = httpx.Client(base_url=strict.base + "/api/v1", timeout=30)
    squat = {"email": "ci-bot@api-tokens.crucible", "password": "attacker-password"}
    taken = anon.post("/auth/register", json=squat)
    assert taken.status_code == 400, taken.text
    assert taken.json()["code"] == "EMAIL_RESERVED" and taken.json()["field"] == "email"
    assert anon.post("/auth/login", json=squat).status_code == 401  # nothing was stored

    bot = {"Authorization": f"Bearer {TOKEN}"}
    me = anon.get("/auth/me", headers=bot).json()
    assert me["full_name"] == "ci-bot"
    made = anon.post("/projects", json={"name": "ci only"}, headers=bot).json()
    # The token's service user has no password: nobody signs in as it.
    for password in ("!", "attacker-password"):
        login = anon.post("/auth/login", json={"email": me["email"], "password": password})
        assert login.status_code == 401
    other = Client(strict)
    assert other.id != me["id"]
    assert other.http.get(f"/projects/{made['project_id']}").status_code == 404
    assert anon.get("/auth/me", headers=bot).json()["id"] == me["id"]  # stable

    # The operator grants the token's user a role by the token's name.
    where = ["--data-dir", str(strict.data_dir), "--endpoint", strict.emulator_endpoint]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "functions.local.admin",
            *where,
            "promote",
            "ci-bot",
            "--token",
            "--role",
            "researcher",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 15  # the server re-reads a user it knows every few seconds
    while anon.get("/users/", headers=bot).status_code != 200:
        assert time.monotonic() < deadline, "the token's user did not become a researcher"
        time.sleep(0.5)


# --- roles ------------------------------------------------------------------------------


def test_self_registration_gives_user_and_an_administrator_grants_researcher(strict):
    anon = httpx.Client(base_url=strict.base + "/api/v1", timeout=30)
    who = {"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "password123"}
    refused = anon.post("/auth/register", json={**who, "role": "researcher"})
    assert refused.status_code == 403 and refused.json()["field"] == "role"
    assert "administrator grants" in refused.json()["detail"]
    assert anon.post("/auth/login", json=who).status_code == 401  # nothing was stored
    made = anon.post("/auth/register", json=who)
    assert made.status_code == 201 and made.json()["role"] == "user"


def test_open_registration_is_a_setting(open_limited):
    http = from_address(open_limited, "127.0.0.9")
    who = {"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "password123"}
    made = http.post("/auth/register", json={**who, "role": "researcher"})
    assert made.status_code == 201 and made.json()["role"] == "researcher"
    admin = http.post("/auth/register", json={**who, "email": "x" + who["email"], "role": "admin"})
    assert admin.status_code == 403  # never, whatever the setting


def test_a_demoted_researchers_token_and_socket_lose_the_role(strict):
    alice = Client(strict)
    researcher = Client(strict, role="researcher")
    admin = Client(strict, role="admin")
    up = alice.http.post("/audio-files/upload", files={"file": ("a.wav", small_wav(), "audio/wav")})
    assert up.status_code == 201, up.text
    file_id = up.json()["file"]["id"]
    wait_analysed(alice, file_id)
    assert researcher.http.get("/users/").status_code == 200
    topic = f"{strict.ws}/api/v1/ws?topic=file:{file_id}&token="

    async def scenario():
        async with (
            websockets.connect(topic + alice.token) as mine,
            websockets.connect(topic + researcher.token) as theirs,
        ):
            # Both follow the file while the researcher is one.
            assert rerun_when_idle(alice, file_id).status_code == 200
            await until_final(mine)
            await until_final(theirs)

            demoted_at = datetime.now(UTC)
            demoted = admin.http.put(f"/users/{researcher.id}/role", json={"role": "user"})
            assert demoted.status_code == 200 and demoted.json()["role"] == "user"
            deadline = time.monotonic() + 15
            while (listed := researcher.http.get("/users/")).status_code == 200:
                assert time.monotonic() < deadline, "the old token kept the researcher role"
                await asyncio.sleep(0.5)
            assert listed.status_code == 403

            # Events of the analysis before may still be on their way (a busy machine):
            # the next analysis starts once it is done.
            assert rerun_when_idle(alice, file_id).status_code == 200
            # The researcher is served nothing made after the demotion: the socket is closed
            # (a policy violation) on the first delivery that re-checks it.
            deadline, code = time.monotonic() + 60, None
            while code is None:
                try:
                    raw = await asyncio.wait_for(theirs.recv(), deadline - time.monotonic())
                except websockets.ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else -1
                    break
                msg = json.loads(raw)
                made = datetime.fromisoformat(msg["timestamp"])
                assert made < demoted_at, f"the demoted researcher still receives: {msg}"
            assert code == 1008

    asyncio.run(scenario())


def wait_analysed(client: Client, file_id: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.http.get(f"/analysis/{file_id}/status").json()
        if st.get("status") in ("completed", "failed"):
            return
        time.sleep(0.5)
    raise AssertionError(f"analysis of {file_id} did not finish")


def rerun(client: Client, file_id: int) -> httpx.Response:
    return client.http.post(f"/analysis/{file_id}/start")


def rerun_when_idle(client: Client, file_id: int, timeout: float = 90) -> httpx.Response:
    """Start a new analysis as soon as the one running (if any) has ended."""
    deadline = time.monotonic() + timeout
    while (r := rerun(client, file_id)).status_code == 409 and time.monotonic() < deadline:
        time.sleep(0.5)
    return r


async def until_final(ws, timeout: float = 90) -> None:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg.get("kind") in ("status", "error") and msg["data"]["status"] in (
            "completed",
            "failed",
        ):
            return


# --- bodies ------------------------------------------------------------------------------


def test_a_chunked_body_is_counted_as_it_arrives(strict):
    alice = Client(strict)
    wav = wav_bytes(cry(44_100, 3.0, [(0.5, 1.5, 450)]), 44_100)
    assert len(wav) > 3 * MAX_BODY
    boundary = uuid.uuid4().hex

    def body():  # no Content-Length: httpx sends it chunked
        yield (
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n"
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        for i in range(0, len(wav), 16 * 1024):
            yield wav[i : i + 16 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = alice.http.post(
        "/audio-files/upload",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE" and "X-Request-ID" in r.headers
    assert alice.http.get("/audio-files/").json()["total"] == 0  # nothing stored


# --- headers -------------------------------------------------------------------------------


def test_rate_limit_headers_on_every_response(strict):
    alice = Client(strict)
    tag = alice.http.post("/tags/", json={"name": "x"}).json()
    for r in (
        alice.http.delete(f"/tags/{tag['id']}"),  # a route that returns its own Response
        alice.http.delete(f"/tags/{tag['id']}"),  # an error after the caller was counted
    ):
        assert r.status_code in (204, 404)
        assert int(r.headers["X-RateLimit-Limit"]) == 600
        assert int(r.headers["X-RateLimit-Remaining"]) < 600
        assert int(r.headers["X-RateLimit-Reset"]) > time.time()
        assert r.headers["X-Request-ID"]


# --- before authentication -------------------------------------------------------------------


def fresh_window(needed_s: float = 30) -> None:
    """Limits count per minute of the clock: start where the whole scenario fits in one."""
    deadline = time.monotonic() + 65
    while 60 - time.time() % 60 < needed_s:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_sign_ins_are_limited_per_client_and_per_account_without_locking_the_owner_out(
    open_limited,
):
    fresh_window()
    b, c, d = (from_address(open_limited, f"127.0.0.{n}") for n in (2, 3, 4))
    victim = {"email": f"v{uuid.uuid4().hex[:8]}@example.com", "password": "password123"}
    other = {"email": f"w{uuid.uuid4().hex[:8]}@example.com", "password": "password123"}
    for who in (victim, other):
        assert b.post("/auth/register", json=who).status_code == 201

    # One client, any accounts: the limit, then 429 on every route before authentication.
    a = from_address(open_limited, "127.0.0.1")
    for _ in range(SIGN_IN_LIMIT):
        nobody = {"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "guess-guess"}
        assert a.post("/auth/login", json=nobody).status_code == 401
    assert_limited(a.post("/auth/login", json=other))
    assert_limited(a.post("/auth/token", json=other))
    assert_limited(a.post("/auth/refresh", json={"refresh_token": "x"}))
    assert_limited(a.post("/auth/register", json={**other, "email": "n" + other["email"]}))
    assert b.post("/auth/login", json=other).status_code == 200  # other clients are not

    # One account, any clients: once an account has failed the limit's worth of times, a
    # client that failed for it is refused; one that has not (its owner) still signs in,
    # and a single failure then stops that client too. Other accounts are not affected.
    wrong = {**victim, "password": "wrong-password"}
    for _ in range(SIGN_IN_LIMIT):
        assert c.post("/auth/login", json=wrong).status_code == 401
    assert_limited(c.post("/auth/login", json=wrong))
    assert_limited(c.post("/auth/login", json=victim))  # this address guessed: refused
    assert d.post("/auth/login", json=victim).status_code == 200  # the owner gets in
    assert d.post("/auth/login", json=wrong).status_code == 401
    assert_limited(d.post("/auth/login", json=wrong))
    assert d.post("/auth/login", json=other).status_code == 200


def test_the_internal_callback_limits_wrong_secrets_per_client(open_limited):
    fresh_window()
    secret = (Path(open_limited.data_dir) / "internal-secret").read_text().strip()
    e, f = (from_address(open_limited, f"127.0.0.{n}") for n in (5, 6))
    call = {"job_id": 999999, "event": "progress", "data": {}}

    def post(client, key):
        return client.post(
            "/internal/training/callback", json=call, headers={"X-Internal-Auth": key}
        )

    for _ in range(SIGN_IN_LIMIT):
        assert post(e, "wrong-secret").status_code == 401
    assert_limited(post(e, "wrong-secret"))
    assert_limited(post(e, secret))  # refused before the secret is looked at
    # Right secrets are not counted: a trainer reports as often as it likes.
    for _ in range(SIGN_IN_LIMIT + 1):
        assert post(f, secret).status_code == 404  # (no such job)
