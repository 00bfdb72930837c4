"""Shared fixtures: the embedded AWS emulator, a stage's resources in it, and the
local stack as a real process driven over HTTP and WebSocket.

Nothing stands in for AWS: integration tests speak boto3 over HTTP to MiniStack.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from functions.local.emulator import Credentials, credentials, new_credentials

ROOT = Path(__file__).resolve().parent.parent
MINISTACK = ROOT / ".ministack" / "bin" / "ministack"
JWT_SECRET = "test-secret-" + "x" * 40
# The emulator takes only the access key of its data directory; every emulator the tests
# start gets this session's (``seed``), so boto3 in the tests reaches any of them.
CREDENTIALS: Credentials = new_credentials()

os.environ.update(CREDENTIALS.environ())
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("CRUCIBLE_JWT_SECRET", JWT_SECRET)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests (tests/browser) run last: Playwright's sync API keeps an event loop
    running in the main thread from its first test to the session's end, and the tests
    that drive WebSockets with ``asyncio.run`` cannot run inside it. Under pytest-xdist
    (`make test` runs ``-n 2 --dist loadgroup``), each worker runs its tests in this order,
    so there too the browser tests come after every other test of the worker."""
    browser = ROOT / "tests" / "browser"
    items.sort(key=lambda item: Path(str(item.path)).is_relative_to(browser))  # stable


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """A bytes argument (an archive, a recording) is named by its size and digest, not
    spelt out; every xdist worker must collect the same names, so test data is made
    deterministic (tests/datasets.py)."""
    if isinstance(val, bytes | bytearray) and len(val) > 32:
        return f"{argname}-{len(val)}B-{hashlib.sha256(val).hexdigest()[:8]}"
    return None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under ``--dist loadgroup`` tests are spread one by one, except those that share
    something costly to build: the tests of a module with a module-scoped fixture (a
    trained job, a stack of its own) run on one worker, as do the template tests (one
    synthesis of the CDK app, shared by the session).

    Marked as each item is collected: xdist reads the marks in its own
    ``pytest_collection_modifyitems``, which may run before any conftest's."""
    path = Path(str(item.path))
    if path.is_relative_to(ROOT / "tests" / "infra"):
        item.add_marker(pytest.mark.xdist_group("infra"))
    elif _uses_a_module_fixture(item):
        item.add_marker(pytest.mark.xdist_group(path.relative_to(ROOT).as_posix()))


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    fixtures = getattr(item, "_fixtureinfo", None)  # pytest's own record of what it requests
    if fixtures is None:
        return False
    return any(defs[-1].scope == "module" for defs in fixtures.name2fixturedefs.values() if defs)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from functions.local.emulator import Emulator, free_port

    if not MINISTACK.exists():
        pytest.fail(f"MiniStack is not installed at {MINISTACK}: run the tests through `make test`")
    state = tmp_path_factory.mktemp("ministack")
    credentials(state, seed=CREDENTIALS)
    emu = Emulator(MINISTACK, state, free_port()).start()
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = emu.endpoint
    yield emu
    emu.stop()
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous


@pytest.fixture(scope="session")
def settings(emulator):
    from shared.settings import load_settings

    # A stage of its own per session: names never clash with anything else in the emulator.
    return load_settings(stage=f"t{uuid.uuid4().hex[:8]}", rate_limit_per_minute=0)


@pytest.fixture(scope="session")
def container(settings):
    from functions.local.bootstrap import ensure_resources
    from shared.adapters.push import LocalHub
    from shared.wiring import build

    c = build(settings, hub=LocalHub())
    c.resources = ensure_resources(c)
    return c


@pytest.fixture(scope="session")
def dispatcher(container):
    """The local event dispatcher over the session's stage (EventBridge -> SQS -> handlers)."""
    from functions.local.dispatcher import Dispatcher

    d = Dispatcher(container, container.resources["queues"], poll_s=0.05).start()
    yield d
    d.stop()


def wait_for_job(container, job_id: int, statuses: set[str], timeout: float = 240):
    """Poll a training job until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = container.jobs.jobs.get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {job.status}, not {statuses}")


def job_events_told(container, job_id: int, final, timeout: float = 60) -> list:
    """A training job's events once one of them is ``final`` and every state change its
    runner sent has been handled (the batch-state queue is empty). A handler stores the
    job's state, then publishes the event: a test that saw the state waits for the event,
    and for the rest, so that anything published after the end would be seen."""
    sqs, url = container.client("sqs"), container.resources["queues"]["batch-job-state-change"]
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while True:
        events = container.push.events.recent(f"job:{job_id}", limit=20)
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"]
        drained = all(int(attrs.get(n, 0)) == 0 for n in counts)
        if drained and any(final(e) for e in events):
            return events
        assert time.monotonic() < deadline, ([(e.kind, e.data) for e in events], attrs)
        time.sleep(0.1)


# --- the local stack as a process ------------------------------------------------


@dataclass
class Stack:
    base: str
    ws: str
    emulator_endpoint: str
    data_dir: Path
    proc: subprocess.Popen
    mlflow_ui: str | None = None

    def api(self, path: str) -> str:
        return f"{self.base}/api/v1{path}"


def start_stack(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 240,  # a busy 2-core machine has taken 80 s
    *,
    seed_credentials: bool = True,
    mlflow_ui: bool = False,
) -> Stack:
    """``python -m functions.local`` on ``data_dir``; its emulator takes the session's
    credentials (``CREDENTIALS``) unless ``seed_credentials`` is False, when the stack
    makes its own, as `make dev` does."""
    from functions.local.emulator import free_port

    if seed_credentials:
        credentials(data_dir / "aws", seed=CREDENTIALS)
    port, emu_port = free_port(), free_port()
    mlflow_port = free_port() if mlflow_ui else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_ENDPOINT"))}
    env.update(extra_env or {})
    log = open(data_dir.parent / f"{data_dir.name}-server.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions.local",
            "--port",
            str(port),
            "--emulator-port",
            str(emu_port),
            "--data-dir",
            str(data_dir),
            "--ministack",
            str(MINISTACK),
            "--mlflow-port",
            str(mlflow_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"local stack exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                return Stack(
                    base,
                    f"ws://127.0.0.1:{port}",
                    f"http://127.0.0.1:{emu_port}",
                    data_dir,
                    proc,
                    f"http://127.0.0.1:{mlflow_port}" if mlflow_port else None,
                )
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError(f"local stack did not come up in {timeout}s; see {log.name}")


def stop_stack(stack: Stack, timeout: float = 30) -> None:
    """Stop it the way `make dev` is stopped (a signal), which stops the emulator cleanly."""
    stack.proc.terminate()
    stack.proc.wait(timeout)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(
        tmp_path_factory.mktemp("stack") / "data",
        {
            "API_TOKENS": "ci-bot=ci-token-0123456789",
            "CRUCIBLE_RATE_LIMIT_PER_MINUTE": "600",
            # seed 002's cap on active jobs for everyone (plans would give Free users one)
            "CRUCIBLE_MAX_ACTIVE_JOBS": "3",
            # every test client signs up and in from 127.0.0.1 (the limit's own tests use
            # stacks of their own: tests/e2e/test_identity_security.py)
            "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "0",
            # leaderboard jobs: short classes, so the hostile ones end quickly
            "CRUCIBLE_RESOURCE_CLASSES": "small=60:768:1,medium=120:1024:1,tiny=3:512:1",
            "CRUCIBLE_EVALUATION_GRACE_S": "20",
            # seed 003's image_url predictions of images served by the tests on loopback
            "CRUCIBLE_URL_FETCH_ALLOW_LOOPBACK_HTTP_FOR_TESTING": "true",
        },
        mlflow_ui=True,
    )
    yield s
    stop_stack(s)


def promote(stack: Stack, email: str, role: str) -> None:
    """Give a user a role the way an operator does: ``python -m functions.local.admin``."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "functions.local.admin",
            "--data-dir",
            str(stack.data_dir),
            "--endpoint",
            stack.emulator_endpoint,
            "promote",
            email,
            "--role",
            role,
        ],
        cwd=ROOT,
        # the stack's settings only: not this process's emulator (the session's, once a
        # test has used it) nor its CRUCIBLE_* (as start_stack)
        env={
            k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_ENDPOINT"))
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


class Client:
    """A user of the API: registers, logs in and sends the bearer token."""

    def __init__(self, stack: Stack, role: str = "user") -> None:
        self.stack = stack
        self.email = f"{uuid.uuid4().hex[:10]}@example.com"
        self.password = secrets.token_urlsafe(12)
        self.http = httpx.Client(base_url=stack.base + "/api/v1", timeout=30)
        r = self.http.post("/auth/register", json={"email": self.email, "password": self.password})
        assert r.status_code == 201, r.text
        self.user = r.json()
        if role != "user":  # only an administrator grants more: here the operator CLI
            promote(stack, self.email, role)
            self.user["role"] = role
        r = self.http.post("/auth/login", json={"email": self.email, "password": self.password})
        assert r.status_code == 200, r.text
        self.login = r.json()
        self.token = self.login["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def id(self) -> int:
        return self.user["id"]


@pytest.fixture
def alice(stack: Stack) -> Client:
    return Client(stack)


@pytest.fixture
def bob(stack: Stack) -> Client:
    return Client(stack)


def api_get(container, user, *paths: str) -> list[httpx.Response]:
    """GET ``paths`` (under /api/v1) from the app in this process, as ``user``, over ASGI:
    the real routing, auth and serialisation against the container's emulator."""
    import asyncio

    from functions.api.app import create_app

    app = create_app(container.settings, container)
    token = container.auth.issue(user).access_token

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api/api/v1",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            return [await http.get(p) for p in paths]

    return asyncio.run(run())
