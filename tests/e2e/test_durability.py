"""Nothing acknowledged is lost: the local stack killed with SIGKILL (the whole process
tree, or the emulator alone) at random moments under load keeps every item the API
acknowledged (2xx), and a dead emulator is started again by the stack by itself.

The randomness is seeded; the seed is printed (``-s``) and can be set again with
``CRUCIBLE_DURABILITY_SEED``; ``CRUCIBLE_DURABILITY_ROUNDS`` kills the tree more times.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.audio.synth import cry, wav_bytes
from tests.conftest import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CRUCIBLE_DURABILITY_SEED") or random.randrange(2**32))
ENV = {
    "CRUCIBLE_RATE_LIMIT_PER_MINUTE": "0",
    "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "0",
    # nothing here trains: no MLflow store to create at each start
    "CRUCIBLE_MLFLOW_TRACKING_URI": "file:///nonexistent/mlruns",
}
WAV = wav_bytes(cry(16_000, 0.6, [(0.1, 0.4, 450)]), 16_000)
WORKERS = 4
ROUNDS = int(os.environ.get("CRUCIBLE_DURABILITY_ROUNDS") or 2)  # kills of the whole tree
DONE = ("completed", "failed")


@dataclass
class User:
    email: str
    password: str
    token: str = ""


@dataclass
class Acked:
    """What the API acknowledged, by kind: ids per user, and the users themselves."""

    users: list[User] = field(default_factory=list)
    items: list[tuple[str, User, int | str]] = field(default_factory=list)  # kind, owner, id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, owner: User, ident: int | str) -> None:
        with self.lock:
            self.items.append((kind, owner, ident))


def _client(stack: Stack, user: User | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {user.token}"} if user and user.token else {}
    return httpx.Client(base_url=stack.base + "/api/v1", timeout=30, headers=headers)


def _sign_up(http: httpx.Client, acked: Acked) -> User | None:
    user = User(f"{uuid.uuid4().hex[:10]}@example.com", secrets.token_urlsafe(12))
    r = http.post("/auth/register", json={"email": user.email, "password": user.password})
    if r.status_code != 201:
        return None
    with acked.lock:
        acked.users.append(user)
    r = http.post("/auth/login", json={"email": user.email, "password": user.password})
    if r.status_code != 200:
        return None
    user.token = r.json()["access_token"]
    return user


def _work(
    stack: Stack, user: User, acked: Acked, rng: random.Random, stop: threading.Event
) -> None:
    """One user's load until ``stop`` or the stack goes away: tags, projects and
    recordings, each recorded once answered 2xx."""
    try:
        with _client(stack, user) as http:
            while not stop.is_set():
                kind = rng.choice(("tag", "project", "recording"))
                if kind == "tag":
                    r = http.post("/tags/", json={"name": f"t-{uuid.uuid4().hex[:8]}"})
                    if r.status_code == 201:
                        acked.add("tag", user, r.json()["id"])
                elif kind == "project":
                    r = http.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:8]}"})
                    if r.status_code == 201:
                        acked.add("project", user, r.json()["id"])
                else:
                    r = http.post(
                        "/audio-files/upload",
                        files={"file": ("cry.wav", WAV, "audio/wav")},
                        data={"recording_start_time": "2024-01-01T10:00:00Z"},
                    )
                    if r.status_code == 201:
                        acked.add("recording", user, r.json()["file"]["id"])
    except httpx.HTTPError:
        return  # the stack was killed under us: what was answered is in ``acked``


def _load(
    stack: Stack, users: list[User], acked: Acked, rng: random.Random
) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=_work, args=(stack, u, acked, random.Random(rng.random()), stop))
        for u in users
    ]
    for t in threads:
        t.start()
    return stop, threads


def _kill_tree(stack: Stack, rng: random.Random) -> list[str]:
    """SIGKILL the stack and everything it started, in a random order."""
    root = psutil.Process(stack.proc.pid)
    procs = [root, *root.children(recursive=True)]
    rng.shuffle(procs)
    names = []
    for p in procs:
        try:
            names.append(p.name())
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=20)
    stack.proc.wait(20)
    return names


def _check(stack: Stack, acked: Acked, *, sign_in: bool = False) -> None:
    """Every acknowledged item is found by its owner, by id and in the owner's lists;
    with ``sign_in``, every acknowledged user signs in too."""
    if sign_in:
        with _client(stack) as http:
            for user in acked.users:
                r = http.post("/auth/login", json={"email": user.email, "password": user.password})
                assert r.status_code == 200, f"user {user.email} lost: {r.status_code} {r.text}"
    by_user: dict[str, list[tuple[str, int | str]]] = {}
    for kind, owner, ident in acked.items:
        by_user.setdefault(owner.email, []).append((kind, ident))
    users = {u.email: u for u in acked.users}
    for email, items in by_user.items():
        with _client(stack, users[email]) as http:
            tags = {t["id"] for t in http.get("/tags/", params={"limit": 1000}).json()["tags"]}
            listed = http.get("/audio-files/", params={"limit": 1000}).json()
            for kind, ident in items:
                if kind == "tag":
                    assert ident in tags, f"tag {ident} of {email} lost"
                elif kind == "project":
                    r = http.get(f"/projects/{ident}")
                    assert r.status_code == 200, f"project {ident} of {email} lost: {r.text}"
                else:
                    r = http.get(f"/audio-files/{ident}")
                    assert r.status_code == 200, f"recording {ident} of {email} lost: {r.text}"
            recordings = {i for k, i in items if k == "recording"}
            assert recordings <= {f["id"] for f in listed["files"]}, "the user's list lost some"


@dataclass
class Run:
    """One data directory through every kill of this module, and what was acknowledged."""

    data: Path
    stack: Stack
    acked: Acked
    users: list[User]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    print(f"durability seed {SEED} (CRUCIBLE_DURABILITY_SEED={SEED} repeats it)")
    data = tmp_path_factory.mktemp("durability") / "data"
    acked = Acked()
    stack = start_stack(data, ENV)
    r = Run(data, stack, acked, [])
    try:
        with _client(stack) as http:  # signing up is slow (password hashing): done once
            r.users = [_sign_up(http, acked) for _ in range(WORKERS)]
        assert all(r.users), "could not sign up"
        yield r
    finally:
        if r.stack.proc.poll() is None:
            stop_stack(r.stack)


def test_sigkill_of_the_whole_stack_under_load_loses_nothing_acknowledged(run: Run):
    rng = random.Random(SEED)
    for iteration in range(ROUNDS):
        before = len(run.acked.items)
        stop, threads = _load(run.stack, run.users, run.acked, rng)
        deadline = time.monotonic() + 30
        while len(run.acked.items) == before:  # the load is under way: the kill comes within it
            assert time.monotonic() < deadline, "the load acknowledged nothing in 30 s"
            time.sleep(0.02)
        after = rng.uniform(0.1, 2.5)
        time.sleep(after)
        killed = _kill_tree(run.stack, rng)
        stop.set()
        for t in threads:
            t.join(30)
        began = time.monotonic()
        run.stack = start_stack(run.data, ENV)
        print(
            f"iteration {iteration}: killed {killed} {after:.2f} s into the load, with "
            f"{len(run.acked.items)} items acknowledged; up again in "
            f"{time.monotonic() - began:.1f} s"
        )
        _check(run.stack, run.acked, sign_in=iteration == ROUNDS - 1)
    assert len(run.acked.items) > 0


def test_a_killed_emulator_is_started_again_and_loses_nothing(run: Run):
    rng = random.Random(SEED + 1)
    stack, users, acked = run.stack, run.users, run.acked
    before = len(acked.items)
    stop, threads = _load(stack, users, acked, rng)
    deadline = time.monotonic() + 30
    while len(acked.items) == before:
        assert time.monotonic() < deadline, "the load acknowledged nothing in 30 s"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.1, 1.5))  # the moment of the kill, under load
    pidfile = run.data / "aws" / "ministack.pid"
    old = int(pidfile.read_text())
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    stop.set()
    for t in threads:
        t.join(30)
    user = users[0]
    with _client(stack, user) as http:
        deadline = killed_at + 30
        while True:
            try:
                # a list: read from DynamoDB (``/auth/me`` would answer from the token)
                if http.get("/tags/").status_code == 200 and int(pidfile.read_text()) != old:
                    break
            except (httpx.HTTPError, ValueError, FileNotFoundError):
                pass
            assert time.monotonic() < deadline, "the stack did not recover within 30 s"
            time.sleep(0.2)
        print(f"serving again {time.monotonic() - killed_at:.1f} s after the emulator died")
        r = http.post("/tags/", json={"name": "after"})  # writes work again
        assert r.status_code == 201, r.text
        acked.add("tag", user, r.json()["id"])
        # and the events path: an upload now is analysed (the dispatcher started over)
        r = http.post(
            "/audio-files/upload",
            files={"file": ("cry.wav", WAV, "audio/wav")},
            data={"recording_start_time": "2024-01-01T10:00:00Z"},
        )
        assert r.status_code == 201, r.text
        new = r.json()["file"]["id"]
        acked.add("recording", user, new)
        deadline = time.monotonic() + 60
        while http.get(f"/analysis/{new}/status").json().get("status") not in DONE:
            assert time.monotonic() < deadline, "an upload after the restart was not analysed"
            time.sleep(0.3)
    _check(stack, acked)
