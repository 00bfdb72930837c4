"""MiniStack, the embedded AWS emulator: started on loopback as its own process (from
its own virtual environment, since it pins botocore), stopped with SIGTERM so its
DynamoDB state is written to disk."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

HEALTH = "/_ministack/health"


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

    def __init__(self, executable: str | Path, state_dir: str | Path, port: int = 4566) -> None:
        self.executable = str(executable)
        self.state_dir = Path(state_dir)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _pidfile(self) -> Path:
        return self.state_dir / "ministack.pid"

    def start(self, timeout: float = 30) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        env = {
            **os.environ,
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "PERSIST_STATE": "1",
            "S3_PERSIST": "1",
            "STATE_DIR": str(self.state_dir),
            "SFTP_ENABLED": "0",
            "IOT_MTLS_ENABLED": "0",
            "LOG_LEVEL": os.environ.get("MINISTACK_LOG_LEVEL", "WARNING"),
        }
        env.pop("AWS_ENDPOINT_URL", None)
        with open(self.state_dir / "ministack.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [self.executable],
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
        """SIGTERM and wait: MiniStack saves DynamoDB state only on a clean shutdown."""
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
        """A launcher killed hard leaves its emulator running: stop it cleanly to keep its data."""
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
