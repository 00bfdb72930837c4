"""Hostile submissions against the evaluator's sandbox itself (crucible_evaluator.sandbox,
no local stack): each small script tries one thing a submission must not do, and each is
contained with the error that names it. The interpreter is the one submissions get
(``CRUCIBLE_SANDBOX_PYTHON``, else the repository's ``.sandbox/`` that `make` builds,
else Debian's python3)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed (`make test` installs it)", allow_module_level=True)

from crucible_evaluator.outputs import InvalidMetrics, read_metrics
from crucible_evaluator.sandbox import Limits, Outcome, Sandbox, SandboxUnavailable, probe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
MIB = 1024 * 1024
LIMITS = Limits(seconds=30, memory_mib=512, vcpu=1, log_bytes=MIB, file_bytes=MIB)


def sandbox_python() -> str:
    for candidate in (
        os.environ.get("CRUCIBLE_SANDBOX_PYTHON"),
        ROOT / ".sandbox" / "bin" / "python3",
        "/usr/bin/python3",
    ):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail("no sandbox interpreter: run `make` (it builds .sandbox/)")


PYTHON = sandbox_python()


@dataclass
class Run:
    outcome: Outcome
    lines: list[tuple[str, str]]  # what it printed: (stdout or stderr, line)
    notes: list[str]  # what the sandbox said
    uid: int
    metrics: tuple[dict, dict] | None = None
    invalid: str | None = None
    out_files: list[str] = field(default_factory=list)

    def stdout(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "stdout"]

    def report(self) -> dict:
        """The JSON object the script printed last."""
        return json.loads(self.stdout()[-1])


def run(script: str, limits: Limits = LIMITS, *, allow_unsandboxed: bool = False, **kw) -> Run:
    checked = kw.pop("checked", None) or probe(PYTHON)
    lines: list[tuple[str, str]] = []
    notes: list[str] = []

    def on_line(stream: str, line: str) -> None:
        (notes.append(line) if stream == "sandbox" else lines.append((stream, line)))

    name = f"test-{os.getpid()}-{time.monotonic_ns()}"
    with Sandbox(checked, limits, name=name, allow_unsandboxed=allow_unsandboxed) as box:
        (box.code / "main.py").write_text(script)
        (box.code / "config.yaml").write_text("seed: 1\n")
        outcome = box.run("main.py", "config.yaml", on_line)
        result = Run(outcome, lines, notes, box.uid, out_files=sorted(os.listdir(box.out)))
        try:
            result.metrics = read_metrics(box.out)
        except InvalidMetrics as exc:
            result.invalid = str(exc)
    if box.uid != os.getuid():
        assert not processes_of(box.uid), "processes of the sandbox outlived it"
    return result


def processes_of(uid: int) -> list[int]:
    """Live processes of ``uid`` (zombies, already dead, wait for their reaper)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and "\nState:\tZ" not in status(entry.name):
                    pids.append(int(entry.name))
    return pids


def status(pid: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return f.read()


WRITE_METRICS = """
import json, pathlib, sys
def report(**metrics):
    out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
    (out / "metrics.json").write_text(json.dumps({"params": {"kind": "test"}, "metrics": metrics}))
"""


def test_probe_finds_every_protection():
    checked = probe(PYTHON)
    assert checked.missing == ()
    assert checked.bwrap and checked.prlimit


def test_a_good_submission_runs_and_reports():
    r = run(
        WRITE_METRICS
        + """
import argparse, sys
import numpy as np
ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--output", required=True)
args = ap.parse_args()
print("config:", open(args.config).read().strip())
print("warming up", file=sys.stderr)
x = np.arange(10, dtype=float)
report(mean=float(x.mean()), ok=1)
print("done")
"""
    )
    if r.outcome.error and "numpy" in " ".join(line for _, line in r.lines):
        pytest.fail(f"{PYTHON} has no numpy: run `make` (it builds .sandbox/)")
    assert r.outcome.ok, (r.outcome, r.lines)
    assert r.stdout() == ["config: seed: 1", "done"]
    assert ("stderr", "warming up") in r.lines
    assert r.metrics == ({"kind": "test"}, {"mean": 4.5, "ok": 1.0})


def test_no_network_loopback_outside_or_abstract_socket():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0crucible-test-{os.getpid()}")
    abstract.listen()
    try:
        r = run(
            f"""
import json, socket
def attempt(family, address):
    s = socket.socket(family)
    s.settimeout(3)
    try:
        s.connect(address)
        return "connected"
    except OSError as exc:
        return type(exc).__name__ + ": " + str(exc)
print(json.dumps({{
    "api": attempt(socket.AF_INET, ("127.0.0.1", {port})),
    "outside": attempt(socket.AF_INET, ("1.1.1.1", 53)),
    "abstract": attempt(socket.AF_UNIX, "\\0crucible-test-{os.getpid()}"),
    "dns": attempt(socket.AF_INET, ("example.com", 80)),
    "interfaces": [n for _, n in socket.if_nameindex()],
}}))
"""
        )
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
        abstract.close()
    assert r.outcome.ok, r.lines
    report = r.report()
    assert report.pop("interfaces") == ["lo"]
    for target, said in report.items():
        assert said != "connected", target
        assert "Error" in said or "gaierror" in said, (target, said)


def test_no_environment_of_the_platform(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_TEST_SECRET", "s3cret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    r = run(
        """
import json, os
print(json.dumps(dict(os.environ)))
print(open("/proc/self/environ").read().count("secret"))
print(open("/proc/1/environ").read().count("secret"))
"""
    )
    assert r.outcome.ok, r.lines
    env = json.loads(r.stdout()[0])
    assert r.stdout()[1:] == ["0", "0"]
    assert not any("secret" in v.lower() for v in env.values())
    assert not {k for k in env if k.startswith(("AWS", "CRUCIBLE", "MLFLOW"))}
    assert env["HOME"] == "/tmp"


@pytest.fixture
def world_readable_secret():
    """A file anyone on the host may read (a 0700 pytest folder would hide it anyway)."""
    data = Path(tempfile.mkdtemp(prefix="crucible-platform-data-"))
    data.chmod(0o755)
    secret = data / "secret.txt"
    secret.write_text("platform secret")
    secret.chmod(0o644)
    yield secret
    shutil.rmtree(data)


def test_no_files_of_the_platform(world_readable_secret):
    secret = world_readable_secret
    targets = [
        str(secret),
        "/root",
        str(ROOT / "pyproject.toml"),
        str(ROOT / ".crucible"),
        "/etc/passwd",
        "/proc/1/root/etc/hostname",
        "/sys/class/net",
        "/home",
    ]
    r = run(
        f"""
import json, os
seen = {{}}
for path in {targets!r}:
    try:
        seen[path] = os.listdir(path) if os.path.isdir(path) else open(path).read(100)
    except OSError as exc:
        seen[path] = type(exc).__name__
print(json.dumps(seen))
"""
    )
    assert r.outcome.ok, r.lines
    seen = r.report()
    for path in targets:
        assert seen[path] in ("FileNotFoundError", "PermissionError"), (path, seen[path])


def test_writes_only_to_its_output_and_private_tmp():
    marker = f"crucible-sandbox-{os.getpid()}"
    r = run(
        WRITE_METRICS
        + f"""
import json
tried = {{}}
for path in ["/code/main.py", "/code/new.py", "/usr/{marker}", "/{marker}", "/etc/{marker}",
             "/tmp/{marker}", "/out/note.txt"]:
    try:
        with open(path, "a") as f:
            f.write("x")
        tried[path] = "written"
    except OSError as exc:
        tried[path] = type(exc).__name__
try:
    with open("/out/big.bin", "wb") as f:
        f.write(b"x" * (2 * 1024 * 1024))
    tried["big"] = "written"
except OSError as exc:
    tried["big"] = exc.strerror
print(json.dumps(tried))
report(ok=1)
"""
    )
    assert r.outcome.ok, r.lines
    tried = r.report()
    assert tried.pop("/tmp/" + marker) == "written"  # its own tmpfs
    assert tried.pop("/out/note.txt") == "written"
    assert tried.pop("big") == "File too large"  # RLIMIT_FSIZE at file_bytes
    assert all(v in ("OSError", "PermissionError", "FileNotFoundError") for v in tried.values()), (
        tried
    )
    assert not Path("/tmp", marker).exists()
    assert not Path("/", marker).exists()
    assert not Path("/usr", marker).exists()
    assert "note.txt" in r.out_files


def test_output_directory_is_bounded():
    r = run(
        """
import time
for i in range(40):
    with open(f"/out/part-{i}.bin", "wb") as f:
        f.write(b"x" * 500_000)
time.sleep(30)
"""
    )
    assert r.outcome.error == "Wrote more than 1 MiB to its output directory"
    assert r.outcome.seconds < 10


def test_memory_past_its_class_is_killed():
    limits = Limits(seconds=30, memory_mib=256, vcpu=1, log_bytes=MIB, file_bytes=MIB)
    r = run(
        """
print("allocating", flush=True)
block = bytearray(2 * 1024**3)
for i in range(0, len(block), 4096):
    block[i] = 1
print("survived")
""",
        limits,
    )
    assert r.outcome.error is not None
    assert r.outcome.error.startswith("Ran out of memory (limit 256 MiB)"), r.outcome
    assert "survived" not in r.stdout()


def test_fork_bomb_is_bounded():
    r = run(
        WRITE_METRICS
        + """
import os, time
children = 0
try:
    for _ in range(100_000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError as exc:
    print("fork failed:", exc.strerror)
report(children=children)
"""
    )
    assert r.outcome.ok, r.lines
    assert any(line.startswith("fork failed") for line in r.stdout())
    assert 10 < r.metrics[1]["children"] < LIMITS.processes
    assert r.outcome.seconds < 15  # the sleeping children died with it


@pytest.mark.parametrize("newlines", [True, False], ids=["lines", "one-line"])
def test_printing_gigabytes_stops_at_the_log_limit(newlines):
    end = "\\n" if newlines else ""
    r = run(
        f"""
import sys
chunk = "x" * 100_000 + "{end}"
for _ in range(30_000):  # 3 GB
    sys.stdout.write(chunk)
"""
    )
    assert r.outcome.error is not None
    assert r.outcome.error.startswith("Printed more than 1 MiB (its log limit)")
    assert r.outcome.printed < 3 * MIB
    assert all(len(line) < 5000 for _, line in r.lines)  # long lines are cut
    if newlines:
        assert r.lines[0][1].endswith("[line cut]")


def test_sleeping_past_its_time_is_stopped():
    limits = Limits(seconds=2, memory_mib=256, vcpu=1, log_bytes=MIB, file_bytes=MIB)
    started = time.monotonic()
    r = run(
        """
import subprocess, time
subprocess.Popen(["sleep", "120"])  # a child, to be killed with it
print("sleeping", flush=True)
time.sleep(120)
""",
        limits,
    )
    assert r.outcome.error == "Timed out after 2 s (its time limit)"
    assert r.stdout() == ["sleeping"]
    assert time.monotonic() - started < 10


def test_closing_its_output_is_not_the_end():
    r = run(
        WRITE_METRICS
        + """
import os, time
print("closing", flush=True)
os.close(1)
os.close(2)
time.sleep(1.5)
report(ok=1)
"""
    )
    assert r.outcome.ok, r.lines
    assert r.stdout() == ["closing"]
    assert r.metrics == ({"kind": "test"}, {"ok": 1.0})


def test_non_zero_exit():
    r = run("import sys\nprint('bad config', file=sys.stderr)\nsys.exit(3)\n")
    assert r.outcome.error == "The submission exited with status 3"
    assert r.lines == [("stderr", "bad config")]


def test_exits_without_metrics_json():
    r = run("print('forgot the metrics')\n")
    assert r.outcome.ok
    assert r.invalid is not None
    assert r.invalid.startswith("The submission wrote no metrics.json")


def test_non_finite_metrics():
    r = run(WRITE_METRICS + "report(auc=float('nan'), loss=float('inf'))\n")
    assert r.outcome.ok
    assert r.invalid == 'metric "auc" is nan: metrics must be finite numbers'


def test_metrics_json_linked_to_a_host_file():
    r = run("import os\nos.symlink('/etc/passwd', '/out/metrics.json')\n")
    assert r.outcome.ok
    assert r.invalid == "metrics.json is a symbolic link: write a regular file"


def test_refuses_where_namespaces_are_unavailable():
    """What bwrap says on AWS Fargate (no user namespaces) ends up in the refusal."""
    folder = Path(tempfile.mkdtemp(prefix="crucible-fake-bwrap-"))
    try:
        folder.chmod(0o755)
        fake = folder / "bwrap"
        fake.write_text(
            "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
        )
        fake.chmod(0o755)
        blocked = probe(PYTHON, bwrap=str(fake))
    finally:
        shutil.rmtree(folder)
    assert blocked.bwrap is None
    assert "bubblewrap cannot build the sandbox here (bwrap: No permissions" in blocked.missing[0]
    with pytest.raises(SandboxUnavailable, match="CRUCIBLE_ALLOW_UNSANDBOXED"):
        Sandbox(blocked, LIMITS, name="refused")


def test_refuses_to_run_without_its_sandbox():
    missing = probe(PYTHON, bwrap="/nonexistent/bwrap")
    assert any("bubblewrap (bwrap) is not installed" in m for m in missing.missing)
    with pytest.raises(SandboxUnavailable, match="Refusing to run untrusted code"):
        Sandbox(missing, LIMITS, name="refused")


def test_an_operator_may_allow_running_unsandboxed(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_TEST_SECRET", "s3cret-value")
    missing = probe(PYTHON, bwrap="/nonexistent/bwrap")
    r = run(
        WRITE_METRICS + "import os\nprint(sorted(os.environ))\nreport(uid=os.getuid())\n",
        allow_unsandboxed=True,
        checked=missing,
    )
    assert r.outcome.ok, r.lines
    assert "CRUCIBLE_TEST_SECRET" not in r.stdout()[-1]  # still no environment
    if os.geteuid() == 0:
        assert r.metrics[1]["uid"] != 0  # and still not root


def test_stop_kills_a_running_sandbox():
    checked = probe(PYTHON)
    lines: list[str] = []
    with Sandbox(checked, LIMITS, name=f"stop-{os.getpid()}") as box:
        (box.code / "main.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
        timer = threading.Timer(1.0, box.stop, args=("Stopped by the test",))
        timer.start()
        started = time.monotonic()
        outcome = box.run(
            "main.py", "main.py", lambda s, line: lines.append(line) if s == "stdout" else None
        )
        timer.cancel()
    assert outcome.error == "Stopped by the test"
    assert time.monotonic() - started < 10
    assert lines == ["up"]
