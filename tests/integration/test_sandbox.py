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
import subprocess
import sys
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
import json, os
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
os.remove("/out/big.bin")  # its first MiB: the whole output budget
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


# --- the output directory's bound, the kernel's surface, the OOM killer's pick ----------
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the worker is root here only")


def test_fallocate_cannot_reserve_past_the_output_budget():
    """posix_fallocate reserved 3.2 GiB in 17 ms: now fallocate is refused (EOPNOTSUPP, so
    glibc writes the blocks) and the writes stop at the output directory's budget."""
    limits = Limits(seconds=30, memory_mib=512, vcpu=1, log_bytes=MIB, file_bytes=8 * MIB)
    r = run(
        """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/out/raw", os.O_CREAT | os.O_WRONLY, 0o600)
raw = libc.syscall(285, fd, 0, ctypes.c_long(0), ctypes.c_long(1 << 30))  # fallocate, 1 GiB
raw = os.strerror(ctypes.get_errno()) if raw < 0 else "allowed"
os.close(fd)
n, error = 0, None
try:
    while n < 400:  # at most 400 x 8 MiB = 3.2 GiB
        fd = os.open(f"/out/f{n}", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, 8 * 1024 * 1024)
        finally:
            os.close(fd)
        n += 1
except OSError as exc:
    error = exc.strerror
st = os.statvfs("/out")
print(json.dumps({"raw": raw, "files": n, "error": error,
                  "used": (st.f_blocks - st.f_bfree) * st.f_frsize}))
""",
        limits,
    )
    report = r.report()
    assert report["raw"] == "Operation not supported", report
    assert report["files"] <= 1 and report["error"] is not None, report
    assert r.outcome.error == "Wrote more than 8 MiB to its output directory"
    if os.geteuid() == 0:  # its own tmpfs: never more than the budget and a page
        assert report["error"] == "No space left on device"
        assert report["used"] <= 8 * MIB + 4096


@ROOT_ONLY
def test_the_output_tmpfs_refuses_writes_past_its_size():
    r = run(
        """
import json, os
st = os.statvfs("/out")
written, error = 0, None
try:
    for i in range(10):
        with open(f"/out/part-{i}", "wb") as f:
            for _ in range(8):
                f.write(b"x" * 65536)
                f.flush()
                written += 65536
except OSError as exc:
    error = exc.strerror
print(json.dumps({"size": st.f_blocks * st.f_frsize, "inodes": st.f_files,
                  "written": written, "error": error}))
"""
    )
    report = r.report()
    assert report["size"] == MIB + 4096  # its budget (1 MiB) and a page
    assert report["inodes"] == 10_002  # 10,000 entries, its root and one more
    assert report["error"] == "No space left on device"
    assert MIB <= report["written"] <= MIB + 4096
    assert r.outcome.error == "Wrote more than 1 MiB to its output directory"


def test_the_kernel_surface_is_filtered():
    """seccomp: io_uring, unshare, keyrings, bpf, x32 numbers refused, clone3 'missing'
    (glibc falls back to clone: threads and subprocesses still work); the OOM killer's
    first pick; /tmp and /dev/shm half its memory each."""
    r = run(
        """
import ctypes, json, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
def call(nr, *args):
    ret = libc.syscall(nr, *args)
    return os.strerror(ctypes.get_errno()) if ret < 0 else "allowed"
seen = {
    "io_uring_setup": call(425, 8, buf),
    "unshare(0)": call(272, 0),
    "unshare(CLONE_NEWUSER)": call(272, 0x10000000),
    "keyctl": call(250, 0, -3, 0),
    "bpf": call(321, 0, buf, 48),
    "userfaultfd": call(323, 0),
    "x32 getpid": call(0x40000000 | 39),
    "personality(ADDR_NO_RANDOMIZE)": call(135, 0x0040000),
    "clone3": call(435, buf, 88),
}
seen["personality query"] = call(135, 0xFFFFFFFF)
t = threading.Thread(target=seen.__setitem__, args=("thread", "ran"))
t.start(); t.join()
seen["subprocess"] = subprocess.run(["/bin/echo", "ran"], capture_output=True, text=True).stdout
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
seen["seccomp"] = status["Seccomp"].strip()
seen["oom_score_adj"] = open("/proc/self/oom_score_adj").read().strip()
for d in ("/tmp", "/dev/shm"):
    st = os.statvfs(d)
    seen[d] = st.f_blocks * st.f_frsize
print(json.dumps(seen))
"""
    )
    assert r.outcome.ok, r.lines
    seen = r.report()
    for name in (
        "io_uring_setup",
        "unshare(0)",
        "unshare(CLONE_NEWUSER)",
        "keyctl",
        "bpf",
        "userfaultfd",
        "x32 getpid",
        "personality(ADDR_NO_RANDOMIZE)",
    ):
        assert seen[name] == "Operation not permitted", (name, seen)
    assert seen["clone3"] == "Function not implemented"
    assert seen["personality query"] == "allowed"
    assert seen["thread"] == "ran" and seen["subprocess"] == "ran\n"
    assert seen["seccomp"] == "2" and seen["oom_score_adj"] == "1000"
    assert seen["/tmp"] == seen["/dev/shm"] == LIMITS.memory_mib * MIB // 2


def test_torch_numpy_and_sklearn_still_run():
    limits = Limits(seconds=60, memory_mib=2048, vcpu=1, log_bytes=MIB, file_bytes=MIB)
    r = run(
        WRITE_METRICS
        + """
import numpy, sklearn.linear_model, torch
x = numpy.arange(6.0).reshape(3, 2)
fit = sklearn.linear_model.LinearRegression().fit(x, x[:, 0])
report(torch=torch.ones(3).sum().item(), sklearn=float(fit.coef_.sum()))
""",
        limits,
    )
    if "No module named 'torch'" in " ".join(line for _, line in r.lines):
        pytest.skip(f"{PYTHON} has no torch (`make` builds .sandbox/ with it)")
    assert r.outcome.ok, r.lines[-5:]
    assert r.metrics[1]["torch"] == 3.0
    assert abs(r.metrics[1]["sklearn"] - 1.0) < 1e-9


@ROOT_ONLY
def test_the_oom_killer_picks_the_submission_over_the_worker():
    """As in AWS: no cgroup of its own, the container's limit shared with a worker that
    holds more memory than the submission does; the kernel kills the submission."""
    from crucible_evaluator.cgroups import CGROUP_ROOT, own_cgroups

    own = own_cgroups()
    if "memory" not in own or not (CGROUP_ROOT / "memory" / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 memory controller to play the container")
    container = CGROUP_ROOT / "memory" / own["memory"].lstrip("/") / f"oom-test-{os.getpid()}"
    container.mkdir()
    try:
        (container / "memory.limit_in_bytes").write_text(str(640 * MIB))
        worker = f"""
import json, os, sys
sys.path[:0] = {[str(ROOT), str(ROOT / "containers" / "evaluator")]!r}
from crucible_evaluator.sandbox import Limits, Sandbox, isolate_mounts, probe
assert isolate_mounts()  # as the evaluator does: its output tmpfs goes with it, killed or not
ballast = bytearray(400 * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
limits = Limits(seconds=30, memory_mib=256, vcpu=1, log_bytes=1 << 20, file_bytes=1 << 29)
with Sandbox(probe({PYTHON!r}), limits, name="oom-{os.getpid()}", use_cgroup=False) as box:
    (box.code / "main.py").write_text(
        "import os\\n"
        "with open('/dev/shm/fill', 'wb') as f:\\n"
        "    try:\\n"
        "        for _ in range(1024): f.write(b'x' * (1 << 20)); f.flush()\\n"
        "    except OSError as exc: print('shm', exc.strerror, flush=True)\\n"
        "block = bytearray(300 * 1024 * 1024)\\n"
        "for i in range(0, len(block), 4096): block[i] = 1\\n"
        "print('survived')\\n"
    )
    lines = []
    outcome = box.run("main.py", "main.py", lambda s, line: lines.append(line))
print(json.dumps({{"error": outcome.error, "lines": lines}}))
"""
        proc = subprocess_in(container, [sys.executable, "-c", worker])
    finally:
        with contextlib.suppress(OSError):
            container.rmdir()
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # the worker lived
    said = json.loads(proc.stdout.splitlines()[-1])
    assert "shm No space left on device" in said["lines"]  # /dev/shm: half its memory
    assert said["error"] == "Ran out of memory (limit 256 MiB): killed", said
    assert "survived" not in said["lines"]


def subprocess_in(cgroup: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``argv`` inside ``cgroup`` (entered before it starts)."""
    return subprocess.run(
        ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- workspaces ---------------------------------------------------------------------------
@ROOT_ONLY
def test_removing_a_workspace_never_chmods_through_a_link():
    """A non-root worker (AWS) removes what its sandbox left, as the same uid: a folder
    made read-only or unreadable is opened up, a link's target is never touched."""
    from crucible_evaluator.sandbox import _remove_tree

    uid = 1_999_999_000 + os.getpid() % 1000
    base = Path(tempfile.mkdtemp(prefix="crucible-rmtree-"))
    try:
        base.chmod(0o1777)  # as TMPDIR is
        target = base / "worker-file"
        target.write_text("the worker's")
        ws = base / "ws"
        (ws / "locked").mkdir(parents=True)
        (ws / "locked" / "link").symlink_to(target)
        (ws / "hidden" / "deep").mkdir(parents=True)
        (ws / "hidden" / "deep" / "f").write_text("x")
        for p in (target, ws, ws / "locked", ws / "hidden", ws / "hidden" / "deep"):
            os.chown(p, uid, uid)
        os.lchown(ws / "locked" / "link", uid, uid)
        os.chown(ws / "hidden" / "deep" / "f", uid, uid)
        target.chmod(0o600)
        (ws / "locked").chmod(0o500)  # its link cannot be unlinked by its owner as it is
        (ws / "hidden").chmod(0o000)
        pid = os.fork()
        if pid == 0:  # the worker's uid, no capabilities
            code = 1
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                _remove_tree(ws)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not ws.exists()
        assert target.stat().st_mode & 0o777 == 0o600  # not chmodded through the link
    finally:
        shutil.rmtree(base, ignore_errors=True)


@ROOT_ONLY
def test_stale_workspaces_are_removed_with_their_mounts():
    from crucible_evaluator.sandbox import _mount_output, remove_stale_workspaces

    tmp = Path(tempfile.mkdtemp(prefix="crucible-stale-"))
    outside = Path(tempfile.mkdtemp(prefix="crucible-outside-"))
    try:
        (outside / "keep").write_text("x")
        old, new = tmp / "crucible-eval-old", tmp / "crucible-eval-new"
        (old / "out").mkdir(parents=True)
        new.mkdir()
        assert _mount_output(old / "out", MIB, 12345)
        (old / "out" / "f").write_text("x")
        (old / "link").symlink_to(outside)
        (tmp / "crucible-worker-link").symlink_to(outside)
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        os.utime(tmp / "crucible-worker-link", (hour_ago, hour_ago), follow_symlinks=False)
        removed = remove_stale_workspaces(1800, tmp=str(tmp))
        assert removed == [str(old)]
        assert not old.exists() and new.exists()
        assert str(old) not in Path("/proc/self/mountinfo").read_text()
        assert (outside / "keep").exists() and (tmp / "crucible-worker-link").is_symlink()
    finally:
        for p in (tmp, outside):
            shutil.rmtree(p, ignore_errors=True)
