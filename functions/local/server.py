"""The local dev server: the API, the seeds' WebSocket endpoints, the event dispatcher,
and the embedded AWS emulator, in one command (``python -m functions.local``).

WebSocket clients connect at ``/ws`` (seed 000's messages, the caller's own
events), ``/ws/workflows/{id}`` (seed 003's messages for one job) or
``/api/v1/ws?topic=...&format=...``, with ``?token=<access token>`` or, keeping the
token out of URLs, the subprotocols ``["bearer", <access token>]``. Each connection
goes through functions/events/websocket.py exactly as an API Gateway WebSocket event
would (headers included), the subprotocol its ``$connect`` answer names is the one
accepted, and pushes arrive through the same notifier interface. Tokens in URLs are
redacted from the server's log.

It answers only requests whose ``Host`` is one of its own names (loopback, the address
it listens on, and any given with ``--allowed-host``): a web page that rebinds its own
domain to 127.0.0.1 reaches nothing.

If the emulator dies (an OOM kill, a ``kill -9``), it is started again on the same port
and data within a second or two (its journal replayed: nothing it acknowledged is
lost), the stage's resources are checked, and the event dispatcher starts over (its
DynamoDB stream iterators died with the emulator). Requests that reach the API meanwhile
fail and may be retried.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from functions.api.app import create_app
from functions.events import websocket as ws_handler
from functions.local.predictor import InProcessPredictor
from shared.adapters.push import LocalHub
from shared.console import console_csp
from shared.settings import Settings, load_settings
from shared.wiring import build

log = logging.getLogger("crucible.local")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


# Header names as browsers send them (ASGI gives them lower-cased), for the event's
# ``headers`` as API Gateway passes them to $connect.
_HEADER_NAMES = {
    f"sec-websocket-{n.lower()}": f"Sec-WebSocket-{n}"
    for n in ("Protocol", "Key", "Version", "Extensions")
}
_TOKEN_IN_URL = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+", re.IGNORECASE)


def _header_name(name: str) -> str:
    return _HEADER_NAMES.get(name) or "-".join(p.capitalize() for p in name.split("-"))


def _event(
    route: str,
    cid: str,
    *,
    params: dict[str, str] | None = None,
    body: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> dict:
    """The API Gateway WebSocket event for one route (the fields handlers read)."""
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
            "connectionId": cid,
            "stage": "local",
        },
        "queryStringParameters": params or None,
        "body": body,
        "isBase64Encoded": False,
    }
    if headers is not None:
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            multi.setdefault(_header_name(name), []).append(value)
        event["headers"] = {name: ", ".join(values) for name, values in multi.items()}
        event["multiValueHeaders"] = multi
    return event


def _answered_subprotocol(result: dict[str, Any]) -> str | None:
    """The subprotocol a $connect answer names (API Gateway returns it to the client)."""
    for name, value in (result.get("headers") or {}).items():
        if name.lower() == "sec-websocket-protocol":
            return value
    return None


class RedactTokens(logging.Filter):
    """Hides ``?token=`` values in log lines (uvicorn logs WebSocket URLs whole)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


async def serve_socket(
    ws: WebSocket, hub: LocalHub, container: Any, params: dict[str, str]
) -> None:
    cid = uuid.uuid4().hex[:16]
    loop = asyncio.get_running_loop()
    accepted = asyncio.Event()

    async def _send(text: str) -> None:
        await accepted.wait()
        await ws.send_text(text)

    def send(text: str) -> bool:  # called from dispatcher threads
        try:
            asyncio.run_coroutine_threadsafe(_send(text), loop).result(timeout=5)
        except Exception:
            return False
        return True

    def close() -> None:  # from dispatcher threads: the user may no longer follow this
        asyncio.run_coroutine_threadsafe(ws.close(code=1008), loop)

    hub.register(cid, send, close)  # before $connect subscribes, so no early event is lost
    try:
        connect = _event("$connect", cid, params=params, headers=ws.headers.items())
        result = await run_in_threadpool(ws_handler.handle, connect, container)
        if result["statusCode"] != 200:
            await ws.close(code=1008, reason=result.get("body", "")[:120])  # HTTP 403 before accept
            return
        await ws.accept(subprotocol=_answered_subprotocol(result))
        accepted.set()
        while True:
            text = await ws.receive_text()
            reply = await run_in_threadpool(
                ws_handler.handle, _event("$default", cid, body=text), container
            )
            if reply.get("body"):
                await ws.send_text(reply["body"])
    except WebSocketDisconnect:
        pass
    finally:
        hub.unregister(cid)
        await run_in_threadpool(ws_handler.handle, _event("$disconnect", cid), container)


def serve_console(app: FastAPI, dist: Path, storage: Sequence[str] = ()) -> None:
    """The web console (a static build, console/) at ``/`` and ``/assets/``, as CloudFront
    serves it in AWS; every other path stays the API's. ``storage``: the origins its
    presigned transfers go to (the emulator's)."""
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    dist = dist.resolve()
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": console_csp(storage),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False, response_model=None)
    async def console_index() -> FileResponse | HTMLResponse:
        index = dist / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html", headers=headers)
        return HTMLResponse(
            "<h1>Crucible</h1><p>The web console is not built: run <code>make console</code> "
            "(<code>make dev</code> builds it). The API is at <a href='docs'>/docs</a>.</p>",
            status_code=503,
            headers=headers,
        )

    app.mount("/assets", StaticFiles(directory=dist / "assets", check_dir=False), name="console")


def origins(hosts: Sequence[str], port: int) -> list[str]:
    """The browser origins of the dev server's pages: each Host name it answers, on its port."""
    return [f"http://{host}:{port}" for host in hosts]


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the dev server answers: loopback, the address it listens on
    (not a wildcard one, which names no host), and ``extra``."""
    hosts = list(LOOPBACK_HOSTS)
    for name in (bind, *extra):
        name = name.strip().lower()
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"  # an IPv6 address, as it appears in a Host header
        if name and name not in ("0.0.0.0", "[::]", "*") and name not in hosts:  # noqa: S104
            hosts.append(name)
    return hosts


def create_local_app(
    settings: Settings,
    hub: LocalHub | None = None,
    *,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    storage: Sequence[str] = (),
) -> FastAPI:
    """The API, the WebSocket endpoints and the console, answering only the Host names
    ``hosts``; ``storage``: where presigned URLs point (the console may reach it)."""
    hub = hub or LocalHub()
    trainer_path = str(Path(settings.local_trainer_path).resolve())
    container = build(
        settings, hub=hub, local_predictor=lambda c: InProcessPredictor(c.artifacts, trainer_path)
    )
    app = create_app(settings, container)
    app.state.hub = hub

    def params(ws: WebSocket, **fixed: str) -> dict[str, str]:
        return {**dict(ws.query_params), **fixed}

    @app.websocket("/ws")
    async def seed000(ws: WebSocket) -> None:
        """Seed 000: the caller's training news as {"type", "payload"} messages."""
        await serve_socket(ws, hub, container, params(ws, format="seed000"))

    @app.websocket("/ws/workflows/{workflow_id}")
    async def seed003(ws: WebSocket, workflow_id: str) -> None:
        """Seed 003: one job's news as {"type", "workflow_id", "timestamp", "data"}."""
        await serve_socket(
            ws, hub, container, params(ws, topic=f"job:{workflow_id}", format="seed003")
        )

    @app.websocket("/api/v1/ws")
    async def generic(ws: WebSocket) -> None:
        """Any topic (?topic=job:5) in any format (?format=crucible|seed000|seed003)."""
        await serve_socket(ws, hub, container, params(ws))

    serve_console(app, Path(settings.console_dir), storage)

    # Against DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends
    # ``Host: evil.example``, and gets 400 (a WebSocket: refused), whatever its origin.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
    return app


def local_environment(data_dir: Path, emulator_endpoint: str) -> None:
    """Point boto3 at the emulator and fill in local-only settings (never overriding the
    user's, except the AWS credentials: the emulator takes only its own, from the data
    directory, and the user's real ones have no business there)."""
    from functions.local.emulator import credentials

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # recordings, secrets: ours only
    secret_file = data_dir / "jwt-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    internal = data_dir / "internal-secret"
    if not internal.exists():
        internal.write_text(secrets.token_urlsafe(48))
        internal.chmod(0o600)
    (data_dir / "mlflow").mkdir(exist_ok=True)
    sandbox = Path(__file__).resolve().parents[2] / ".sandbox" / "bin" / "python3"
    defaults = {
        "AWS_ENDPOINT_URL": emulator_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "CRUCIBLE_STAGE": "local",
        "CRUCIBLE_DATA_DIR": str(data_dir),
        "CRUCIBLE_JWT_SECRET": secret_file.read_text().strip(),
        "CRUCIBLE_INTERNAL_SECRET": internal.read_text().strip(),
        "CRUCIBLE_MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
        # what `make` builds for leaderboard submissions (the evaluator's sandbox)
        "CRUCIBLE_SANDBOX_PYTHON": str(sandbox),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if os.environ["AWS_ENDPOINT_URL"] == emulator_endpoint:
        os.environ.update(credentials(data_dir / "aws").environ())
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(name, None)


def _die_with_parent() -> None:
    """In the child: a SIGTERM when the stack dies, even by SIGKILL (Linux)."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: stopped by stop() only
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def prepare_mlflow_store(tracking_uri: str) -> None:
    """Create the local MLflow database before anything uses it: the UI server, trainers
    and evaluators would otherwise race to create its tables on a fresh data directory
    (SQLite migrations are not safe to run twice at once). Once, in a subprocess, so the
    dev server never imports mlflow."""
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if db.exists():
        return
    artifacts = db.resolve().parent / "artifacts"
    code = (
        "import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
        "SqlAlchemyStore(sys.argv[1], sys.argv[2])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CRUCIBLE_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    subprocess.run(
        [sys.executable, "-c", code, tracking_uri, artifacts.as_uri()],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


class MlflowUI:
    """The MLflow UI on loopback (``mlflow server`` over the local tracking store), where
    the leaderboard's results links open; stopped with the stack."""

    def __init__(self, tracking_uri: str, port: int, log_path: Path) -> None:
        self.tracking_uri, self.port, self.log_path = tracking_uri, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowUI:
        artifacts = (
            Path(self.tracking_uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        )
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CRUCIBLE_"))
        }  # it reads the tracking store; it needs no credentials or secrets
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "mlflow", "server",
                    "--backend-store-uri", self.tracking_uri,
                    "--default-artifact-root", artifacts.as_uri(),
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class EmulatorWatch:
    """Starts the emulator again when its process exits while the stack runs, then calls
    ``restarted`` (in this watch's thread)."""

    def __init__(self, emulator: Any, restarted: Callable[[], None], poll_s: float = 0.5) -> None:
        self.emulator, self.restarted, self.poll_s = emulator, restarted, poll_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-watch", daemon=True)

    def start(self) -> EmulatorWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the emulator is stopped on purpose)."""
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            proc = self.emulator.proc
            if proc is None or proc.poll() is None:
                continue
            log.error(
                "the AWS emulator exited (%s); starting it again on its data in %s",
                proc.returncode,
                self.emulator.state_dir,
            )
            try:
                self.emulator.start()
                self.restarted()
            except Exception:
                log.exception("could not start the AWS emulator again; retrying in 2 s")
                self._stop.wait(2)
                continue
            self.restarts += 1
            log.info("AWS emulator back on %s", self.emulator.endpoint)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from functions.local.bootstrap import ensure_resources
    from functions.local.dispatcher import Dispatcher
    from functions.local.emulator import Emulator

    ap = argparse.ArgumentParser(
        prog="python -m functions.local", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name to answer besides loopback and --host (repeatable)",
    )
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--emulator-port", type=int, default=4566)
    ap.add_argument("--data-dir", default=os.environ.get("CRUCIBLE_DATA_DIR", ".crucible"))
    ap.add_argument("--ministack", default=".ministack/bin/ministack", help="MiniStack executable")
    ap.add_argument(
        "--mlflow-port", type=int, default=5010, help="the MLflow UI's port on loopback; 0: none"
    )
    args = ap.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # uvicorn re-raises the signal that stopped it; make SIGTERM unwind like Ctrl-C so the
    # emulator below is always stopped cleanly (its DynamoDB state is saved on SIGTERM).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data_dir = Path(args.data_dir).resolve()
    emulator = Emulator(args.ministack, data_dir / "aws", args.emulator_port)
    local_environment(data_dir, emulator.endpoint)
    mlflow_ui, tracking = None, os.environ["CRUCIBLE_MLFLOW_TRACKING_URI"]
    if args.mlflow_port and tracking.startswith("sqlite:///"):  # a local store: serve it
        mlflow_ui = MlflowUI(tracking, args.mlflow_port, data_dir / "mlflow" / "ui.log")
        os.environ.setdefault("CRUCIBLE_MLFLOW_UI_URL", mlflow_ui.url)
    settings = load_settings()
    hosts = allowed_hosts(args.host, args.allowed_host)
    # the uploads bucket's CORS rules in AWS; here also the console's own origins, whose
    # pages send large files straight to the emulator's presigned URLs
    emulator.cors_origins = [*settings.cors_origins, *origins(hosts, args.port)]
    emulator.start()
    log.info("AWS emulator on %s, state in %s", emulator.endpoint, emulator.state_dir)
    dispatcher = watch = None
    try:
        if tracking.startswith("sqlite:///"):
            prepare_mlflow_store(tracking)
        if mlflow_ui:
            mlflow_ui.start()
            log.info("MLflow UI on %s", mlflow_ui.url)
        app = create_local_app(settings, hosts=hosts, storage=[emulator.endpoint])
        resources = ensure_resources(app.state.container)
        dispatcher = Dispatcher(app.state.container, resources["queues"]).start()

        def restarted() -> None:  # the emulator came back: so do the resources and events
            nonlocal dispatcher
            queues = ensure_resources(app.state.container)["queues"]
            if dispatcher:
                dispatcher.stop()
            dispatcher = Dispatcher(app.state.container, queues).start()

        watch = EmulatorWatch(emulator, restarted).start()
        log.info("API on http://%s:%d (docs at /docs); data in %s", args.host, args.port, data_dir)
        # Idle keep-alive connections are closed by clients (browsers, httpx: 5 s) before
        # the server would (a request sent as the server closes is a dropped connection).
        config = uvicorn.Config(
            app, host=args.host, port=args.port, log_level="info", timeout_keep_alive=75
        )
        for name in ("uvicorn.access", "uvicorn.error"):  # set up by Config just above
            logging.getLogger(name).addFilter(RedactTokens())
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if watch:
            watch.stop()
        if dispatcher:
            dispatcher.stop()
        if mlflow_ui:
            mlflow_ui.stop()
        emulator.stop()
        log.info("stopped; data kept in %s", data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
