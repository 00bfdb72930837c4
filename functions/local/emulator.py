"""MiniStack, the embedded AWS emulator: started on loopback as its own process (from
its own virtual environment, since it pins botocore), stopped with SIGTERM.

What it acknowledges survives a SIGKILL of it or of anything else
(functions/local/emulator_durability.py, run in its process by the gate): DynamoDB
writes are journaled under ``<state_dir>/journal`` before they are answered and
replayed at start over the last checkpoint (``<state_dir>/<service>.json``); other
services' state is written through. A clean stop only makes the next start quicker.

It runs behind functions/local/emulator_gate.py, in the same process: every request
must be signed with the data directory's own access key (``credentials``) and name the
emulator by one of its loopback host names on its port (``GATEWAY_PORT``); a presigned
URL or POST form does only the S3 request it was signed for; no web page gets CORS.
Everything it keeps (state, S3 objects, temporary files) is under its ``state_dir``.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import secrets
import signal
import socket
import string
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HEALTH = "/_ministack/health"
# MiniStack's interpreter runs the gate (emulator_gate.py and its siblings) as
# functions.local.emulator_gate, given this folder: with -P, so no folder of Crucible's is
# on sys.path, and only the packages functions and functions.local made known, so the
# gate imports nothing else of Crucible and nothing of the project's environment.
GATE = """
import importlib.util, pathlib, sys
folder = pathlib.Path(sys.argv.pop(1))
for name, path in (("functions", folder.parent), ("functions.local", folder)):
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py", submodule_search_locations=[str(path)]
    )
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
from functions.local.emulator_gate import main
main()
"""
CREDENTIALS = "credentials"  # in the state dir, in the AWS shared-credentials file format


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def environ(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def new_credentials() -> Credentials:
    alphabet = string.ascii_uppercase + "234567"
    key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return Credentials(key, secrets.token_urlsafe(30))


def credentials(state_dir: str | Path, *, seed: Credentials | None = None) -> Credentials:
    """The emulator's access key for this state directory: made on first use (``seed``,
    or new random ones), kept in ``<state_dir>/credentials`` readable by its owner only.

    ``AWS_SHARED_CREDENTIALS_FILE=<that file> aws --endpoint-url ...`` uses it as is."""
    path = Path(state_dir) / CREDENTIALS
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():  # written whole, then linked in: never seen half-written
        made = seed or new_credentials()
        draft = path.with_name(f".{CREDENTIALS}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                "[default]\n"
                f"aws_access_key_id = {made.access_key_id}\n"
                f"aws_secret_access_key = {made.secret_access_key}\n"
            )
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made them first: theirs hold
        finally:
            draft.unlink()
    parser = configparser.ConfigParser()
    parser.read_string(path.read_text())
    return Credentials(
        parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]
    )


def _interpreter(executable: str) -> str:
    """The Python of MiniStack's environment: its console script's ``#!`` line."""
    with contextlib.suppress(OSError, UnicodeDecodeError), open(executable) as f:
        first = f.readline()
        if first.startswith("#!"):
            return first[2:].strip().split()[0]
    return str(Path(executable).with_name("python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class Emulator:
    """One MiniStack process keeping its state under ``state_dir``."""

    def __init__(
        self,
        executable: str | Path,
        state_dir: str | Path,
        port: int = 4566,
        *,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self.executable = str(executable)
        self.state_dir = Path(state_dir)
        self.port = port
        self.cors_origins = list(cors_origins)  # browser origins allowed to use presigned URLs
        self.proc: subprocess.Popen | None = None

    @property
    def credentials(self) -> Credentials:
        """The only credentials this emulator answers (see ``credentials``)."""
        return credentials(self.state_dir)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _pidfile(self) -> Path:
        return self.state_dir / "ministack.pid"

    def start(self, timeout: float = 30) -> Emulator:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_orphan()
        tmp = self.state_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            **os.environ,
            **self.credentials.environ(),  # the gate's key; also what its Lambdas sign with
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "PERSIST_STATE": "1",
            "S3_PERSIST": "1",
            "STATE_DIR": str(self.state_dir),
            "S3_DATA_DIR": str(self.state_dir / "s3"),  # objects, by default in /tmp
            "TMPDIR": str(tmp),  # its pid file, Lambda code, anything else temporary
            "SFTP_ENABLED": "0",
            "IOT_MTLS_ENABLED": "0",
            "LOG_LEVEL": os.environ.get("MINISTACK_LOG_LEVEL", "WARNING"),
            "CRUCIBLE_EMULATOR_CORS_ORIGINS": ",".join(self.cors_origins),
        }
        for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(name, None)
        with open(self.state_dir / "ministack.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [_interpreter(self.executable), "-P", "-c", GATE, str(Path(__file__).parent)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pidfile.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"MiniStack exited with {self.proc.returncode} (port {self.port} taken?); "
                    f"see {self.state_dir / 'ministack.log'}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.endpoint + HEALTH, timeout=1) as r,  # noqa: S310
            ):
                if r.status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"MiniStack did not answer on {self.endpoint} within {timeout}s")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait: it writes a last checkpoint, so the next start replays nothing."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._pidfile.unlink(missing_ok=True)

    def _stop_orphan(self) -> None:
        """A launcher killed hard leaves its emulator running: stop it (cleanly, to be quick)."""
        try:
            pid = int(self._pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.2)
        self._pidfile.unlink(missing_ok=True)
