"""The sandbox a submission runs in, built from what Linux offers without a daemon.

    [sh: oom_score_adj, the job's cgroup] -> setpriv (a uid of its own) -> prlimit -> bwrap -> python

* **bwrap** (bubblewrap): new user, network, pid, ipc, uts, mount and cgroup
  namespaces. The submission sees ``/usr``, ``/lib*``, ``/bin`` and the interpreter's
  prefix read-only, its code read-only at ``/code``, a writable ``/out``, a private
  ``/tmp`` and ``/dev/shm`` (tmpfs, each at most half its memory), its own ``/proc`` and a
  minimal ``/dev``; everything else (``/etc``, ``/home``, ``/root``, the repository, the
  local stack's data) is absent and the root is read-only. No network but a loopback
  that is down, an environment of a few fixed variables, no further user namespaces, and
  a seccomp filter (``seccomp.py``) that refuses io_uring, mounts, namespaces, bpf,
  ptrace, keyrings and the like.
* **the output directory** (when the worker is root): a tmpfs of the output budget
  mounted on it in the worker's mount namespace, so a write past the budget fails at once
  (its pages are charged to the run's memory cgroup too); sampled every 0.2 s as well.
* **sh**: ``oom_score_adj`` 1000, so that the kernel's OOM killer picks the submission
  rather than the worker when they share a memory limit (AWS), and the run's cgroup.
* **setpriv** (when the worker is root): a uid of the job's own (``uid_for``), no
  supplementary groups, no new privileges.
* **prlimit**: open files, file size, CPU time, no core dumps, and the address space
  where no cgroup bounds memory; processes and threads by a second prlimit inside the
  sandbox's user namespace, where the kernel counts only the sandbox's own tasks (so
  sandboxes sharing a uid, as under a non-root worker in AWS, never starve each other).
* **cgroup** (when the worker can make one): memory (and swap) at the class's MiB,
  ``pids.max``, a CPU quota of the class's vCPUs; the worker kills the whole cgroup at
  the end, and its OOM counter tells an out-of-memory kill from any other SIGKILL.

The worker reads stdout and stderr line by line, stops the sandbox past its wall time,
its log budget or its output directory's budget, and kills whatever is left when the
main process ends. ``probe`` checks once per process what this machine can enforce;
``Sandbox`` refuses to start with anything missing unless the operator allowed it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from crucible_evaluator import seccomp
from crucible_evaluator.cgroups import Bounds, Cgroup, enclosing_memory, oom_kills
from shared.settings import ResourceClass, Settings

log = logging.getLogger("crucible.evaluator")
CODE, OUT = "/code", "/out"  # where the submission sees its code and output directory
MIB = 1024 * 1024
MAX_LINE_BYTES = 4096  # a longer line is cut
LINE_OVERHEAD = 24  # its timestamp and newline in the log, counted against the log budget
OUTPUT_CHECK_S = 0.2  # how often the output directory is measured (its tmpfs bounds it too)
EXIT_GRACE_S = 2.0  # how long children may hold its output open once the main process ended
MAX_OUTPUT_ENTRIES = 10_000  # files and folders in the output directory
WORKSPACE_PREFIXES = ("crucible-eval-", "crucible-worker-")  # under TMPDIR, one per run
UID_BASE, UID_SPAN = 1_000_000_000, 100_000_000  # the sandbox uids (no passwd entries)
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin")  # mounted read-only in every sandbox
# Namespaces, the system read-only, its own /proc and /dev, an empty environment.
BWRAP_FLAGS = (  # noqa: SIM905 - reads as the command line it is
    "--unshare-all --unshare-user --disable-userns --die-with-parent --new-session "
    "--hostname sandbox --clearenv --ro-bind /usr /usr --ro-bind /lib /lib "
    "--ro-bind-try /lib64 /lib64 --ro-bind /bin /bin --proc /proc --dev /dev"
).split()
# The launch chain's first link: the kernel's OOM killer is to pick the submission (and
# whatever it starts) rather than the worker; then the run's cgroups, entered as root.
LAUNCH = (
    "echo 1000 > /proc/self/oom_score_adj || exit 125; "
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
)
TORCH_NOTE = (
    "torch maps about 3.3 GB of address space on import, so it cannot run under a class "
    "with less memory than that"
)

Stream = Literal["stdout", "stderr", "sandbox"]
OnLine = Callable[[Stream, str], None]


class SandboxUnavailable(RuntimeError):
    """This machine cannot isolate a submission (and the operator has not allowed that)."""


def size(n: float) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n / 1024:g} KiB"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one run may use: its resource class and the deployment's output budgets."""

    seconds: float  # wall time
    memory_mib: int
    vcpu: float
    log_bytes: int  # everything it prints, stdout and stderr together
    file_bytes: int  # the largest file it may write, and its output directory in all
    processes: int = 256  # processes and threads
    open_files: int = 1024

    @classmethod
    def of(cls, rc: ResourceClass, settings: Settings) -> Limits:
        return cls(
            seconds=rc.seconds,
            memory_mib=rc.memory_mib,
            vcpu=rc.vcpu,
            log_bytes=settings.evaluation_max_log_bytes,
            file_bytes=settings.evaluation_max_file_bytes,
        )

    @property
    def cpu_seconds(self) -> int:
        """RLIMIT_CPU: its wall time at its vCPUs (each process counts its own)."""
        return math.ceil(self.seconds * max(1.0, self.vcpu)) + 5

    @property
    def threads(self) -> int:
        return max(1, math.ceil(self.vcpu))


@dataclasses.dataclass(frozen=True)
class Probe:
    """What this machine can enforce, checked once (``probe``)."""

    python: str
    binds: tuple[str, ...]  # the interpreter's prefixes outside SYSTEM_DIRS (read-only)
    bwrap: str | None  # set only when bwrap was seen to isolate here
    setpriv: str | None  # set only when the worker is root
    prlimit: str | None
    missing: tuple[str, ...]  # one sentence per protection this machine cannot give


@functools.cache
def probe(python: str, bwrap: str = "bwrap") -> Probe:
    """Check the interpreter, the tools and a real sandbox (network unshared, environment
    empty, not root). Raises SandboxUnavailable if the interpreter itself is unusable."""
    py = Path(python)
    if not (py.is_file() and os.access(py, os.X_OK)):
        raise SandboxUnavailable(
            f"The sandbox interpreter {python} does not exist (setting CRUCIBLE_SANDBOX_PYTHON; "
            "locally `make` builds .sandbox/)"
        )
    try:
        binds = _prefixes(python)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailable(f"The sandbox interpreter {python} does not run: {exc}") from None
    root = os.geteuid() == 0
    setpriv = shutil.which("setpriv") if root else None
    prlimit = shutil.which("prlimit")
    bwrap_path = shutil.which(bwrap)
    missing = []
    if root and not setpriv:
        missing.append("setpriv (util-linux) is not installed: submissions would run as root")
    if not prlimit:
        missing.append(
            "prlimit (util-linux) is not installed: nothing would bound processes, open "
            "files, file sizes or CPU time"
        )
    if not bwrap_path:
        missing.append(
            "bubblewrap (bwrap) is not installed: nothing would hide the network, the "
            "environment or the platform's files"
        )
    else:
        problem = _check_isolation(Probe(python, binds, bwrap_path, setpriv, prlimit, ()))
        if problem:
            missing.append(problem)
            bwrap_path = None
    return Probe(python, binds, bwrap_path, setpriv, prlimit, tuple(missing))


def _prefixes(python: str) -> tuple[str, ...]:
    """Where the interpreter's files are (a venv and its base), outside SYSTEM_DIRS."""
    out = subprocess.run(  # noqa: S603 - the operator's interpreter, outside the sandbox
        [python, "-I", "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix]))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    found: list[str] = []
    for p in json.loads(out.stdout):
        real = os.path.realpath(p)
        if not any(real == d or real.startswith(d + "/") for d in SYSTEM_DIRS) and real != "/":
            found.append(real)
    return tuple(dict.fromkeys(found))


PROBE_SCRIPT = """
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):  # what a refused system call says (None: no number to try)
    if nr is None:
        return None
    ret = libc.syscall(nr, *args)
    return os.strerror(ctypes.get_errno()) if ret < 0 else "allowed"
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"interfaces": [n for _, n in socket.if_nameindex()], "uid": os.getuid(),
                  "env": sorted(os.environ), "seccomp": status["Seccomp"].strip(),
                  "oom_score_adj": open("/proc/self/oom_score_adj").read().strip(),
                  "io_uring_setup": call(%(io_uring_setup)s, 8, ctypes.create_string_buffer(256)),
                  "unshare": call(%(unshare)s, 0)}))
"""


def _check_isolation(p: Probe) -> str | None:
    """None when a sandbox runs here as built by ``Sandbox``; otherwise what is wrong."""
    limits = Limits(seconds=60, memory_mib=1024, vcpu=1, log_bytes=MIB, file_bytes=MIB)
    said: dict[str, list[str]] = {"stdout": [], "stderr": [], "sandbox": []}
    numbers = seccomp.syscalls() or {}
    script = PROBE_SCRIPT % {k: numbers.get(k) for k in ("io_uring_setup", "unshare")}
    with Sandbox(p, limits, name=f"probe-{os.getpid()}", use_cgroup=False) as box:
        (box.code / "probe.py").write_text(script)
        outcome = box.run("probe.py", "probe.py", lambda s, line: said[s].append(line))
        allowed = {*box.env(), "PWD"}  # bwrap sets PWD
    try:
        seen = json.loads(said["stdout"][-1]) if outcome.ok else None
    except (IndexError, ValueError):
        seen = None
    if seen is None:
        why = "; ".join(said["stderr"][-3:]) or outcome.error
        return (
            f"bubblewrap cannot build the sandbox here ({why}): unprivileged user namespaces "
            "may be disabled (user.max_user_namespaces, kernel.unprivileged_userns_clone, as "
            "on AWS Fargate) or blocked by a container's seccomp profile, or the interpreter "
            "is not readable by an unprivileged user"
        )
    if seen["interfaces"] != ["lo"] or seen["uid"] == 0 or set(seen["env"]) - allowed:
        return f"bubblewrap ran but did not isolate the submission as expected: {seen}"
    if seen["oom_score_adj"] != "1000":
        return f"the sandbox's oom_score_adj is {seen['oom_score_adj']}, not 1000"
    if numbers and (
        seen["seccomp"] != "2" or "allowed" in (seen["io_uring_setup"], seen["unshare"])
    ):
        return f"the sandbox's seccomp filter is not in force: {seen}"
    return None


def uid_for(name: str) -> int:
    """The sandbox uid of one run: its own, so that per-uid limits are per run."""
    digest = hashlib.sha256(name.encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_SPAN


@dataclasses.dataclass(frozen=True)
class Outcome:
    error: str | None  # None: it exited 0 within every limit
    returncode: int | None
    seconds: float
    printed: int  # bytes it printed (what was read of stdout and stderr)

    @property
    def ok(self) -> bool:
        return self.error is None


class Sandbox:
    """One run's sandbox and workspace: fill ``code``, call ``run``, read ``out``.

    ``stop`` may be called from a signal handler (or another thread) while ``run`` runs;
    leaving the ``with`` block kills anything left and removes the workspace and cgroup.
    ``run`` must be called from a thread that outlives it (bwrap dies with that thread).
    """

    def __init__(
        self,
        probe: Probe,
        limits: Limits,
        *,
        name: str,
        allow_unsandboxed: bool = False,
        use_cgroup: bool = True,
    ) -> None:
        if probe.missing and not allow_unsandboxed:
            raise SandboxUnavailable(
                "Refusing to run untrusted code without its sandbox: "
                + "; ".join(probe.missing)
                + " (an operator may allow it with CRUCIBLE_ALLOW_UNSANDBOXED=true, for "
                "trusted code only)"
            )
        self.probe, self.limits, self.name = probe, limits, name
        self.use_cgroup = use_cgroup
        self.uid = uid_for(name) if probe.setpriv else os.getuid()
        self.workdir: Path | None = None
        self.cgroup: Cgroup | None = None
        self.memory_bound = ""  # how memory is bounded, said in the log
        self.out_mounted = False  # its output directory is a tmpfs of the output budget
        self._proc: subprocess.Popen | None = None
        self._reason: str | None = None

    # --- the workspace -------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        tmp = Path(tempfile.gettempdir())
        if not tmp.stat().st_mode & 0o001:
            raise SandboxUnavailable(
                f"{tmp} (TMPDIR) must be searchable by other users for the sandbox to reach "
                "its workspace"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKSPACE_PREFIXES[0]))
        try:
            self.workdir.chmod(0o711)
            self.code.mkdir(mode=0o755)
            self.code.chmod(0o755)
            for d in (self.out, self.tmp):
                d.mkdir(mode=0o700)
                os.chown(d, self.uid, self.uid)
            if os.geteuid() == 0:  # a tmpfs of its budget: a write past it fails at once
                self.out_mounted = _mount_output(self.out, self.limits.file_bytes, self.uid)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill what is left, then unmount its output (read what it wrote before), remove
        its cgroup and its workspace."""
        self._kill()
        if self.out_mounted:
            _unmount(self.out)
            self.out_mounted = False
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.workdir is not None:
            _remove_tree(self.workdir)
            self.workdir = None

    @property
    def code(self) -> Path:
        """The submission's files (read-only to it, at /code)."""
        assert self.workdir is not None, "use the Sandbox in a with block"
        return self.workdir / "code"

    @property
    def out(self) -> Path:
        """Its output directory (writable, at /out)."""
        assert self.workdir is not None, "use the Sandbox in a with block"
        return self.workdir / "out"

    @property
    def tmp(self) -> Path:
        """Its /tmp when bwrap cannot give it a private one."""
        assert self.workdir is not None, "use the Sandbox in a with block"
        return self.workdir / "tmp"

    def env(self) -> dict[str, str]:
        """The submission's whole environment."""
        tmp = "/tmp" if self.probe.bwrap else str(self.tmp)  # noqa: S108 - its private tmpfs
        bindir = str(Path(self.probe.python).parent)
        threads = str(self.limits.threads)
        return {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "USER": "sandbox",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": f"{tmp}/matplotlib",
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }

    # --- running -------------------------------------------------------------------------
    def run(self, entrypoint: str, config: str, on_line: OnLine) -> Outcome:
        """``python <entrypoint> --config <config> --output /out`` in the sandbox, its
        lines to ``on_line`` as they come; the outcome says which limit, if any, ended it."""
        _make_readable(self.code)
        limits = self.limits
        if self.use_cgroup:
            bounds = Bounds(limits.memory_mib, limits.processes, limits.vcpu)
            self.cgroup = Cgroup.create(self.name, bounds)
        enclosing = None if self.cgroup else enclosing_memory()
        if self.cgroup:
            self.memory_bound = f"{limits.memory_mib} MiB (cgroup v{self.cgroup.version})"
        elif enclosing:
            self.memory_bound = (
                f"the container's limit of {enclosing[0] // MIB} MiB, shared with the worker"
            )
        else:
            self.memory_bound = (
                f"{limits.memory_mib} MiB of address space (RLIMIT_AS: no cgroup can be made "
                f"here); {TORCH_NOTE}"
            )
        if not self.cgroup:
            on_line("sandbox", f"Note: memory is bounded by {self.memory_bound}")
        if os.geteuid() == 0 and not self.out_mounted:
            on_line(
                "sandbox",
                f"Note: its output directory could not be made a tmpfs of {size(limits.file_bytes)}: "
                f"it is measured every {OUTPUT_CHECK_S:g} s instead",
            )
        filter_fd = None
        if self.probe.bwrap:
            program = seccomp.program()
            if program is None:
                warning = (
                    f"WARNING: NO SECCOMP FILTER: none is defined for {platform.machine()}, so "
                    "the submission reaches every system call its namespaces allow"
                )
                log.warning("%s", warning)
                on_line("sandbox", warning)
            else:
                filter_fd = os.memfd_create("crucible-seccomp")  # close-on-exec but for bwrap
                os.write(filter_fd, program)
                os.lseek(filter_fd, 0, os.SEEK_SET)
        oom_before = self._oom_kills(enclosing)
        argv = self._command(
            entrypoint,
            config,
            address_space=not (self.cgroup or enclosing),
            seccomp_fd=filter_fd,
        )
        started = time.monotonic()
        try:
            if self._reason is not None:  # stopped before it started
                return Outcome(self._reason, None, 0.0, 0)
            self._proc = subprocess.Popen(  # noqa: S603 - the sandbox, built above
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.code,
                env=self.env() if not self.probe.bwrap else {"PATH": "/usr/bin:/bin"},
                start_new_session=True,  # its own process group: killed as one
                close_fds=True,
                pass_fds=() if filter_fd is None else (filter_fd,),
            )
        finally:
            if filter_fd is not None:
                os.close(filter_fd)
        printed, memory_error = self._pump(on_line, started)
        self._kill()
        try:
            code = self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): say so
            code = -signal.SIGKILL
            self._reason = self._reason or "The sandbox could not be stopped"
        seconds = time.monotonic() - started
        error = self._reason
        if error is None and self._oom_kills(enclosing) > oom_before:
            error = f"Ran out of memory (limit {limits.memory_mib} MiB): killed"
        if error is None and memory_error and code != 0:
            error = f"Ran out of memory (limit {limits.memory_mib} MiB): MemoryError"
        if error is None:  # past its output budget since the last look (and refused there)
            error = self._output_too_large()
        if error is None and code != 0:
            error = self._exit_error(code)
        return Outcome(error, code, seconds, printed)

    def stop(self, reason: str) -> None:
        """End the run now with ``reason`` (its error)."""
        if self._reason is None:
            self._reason = reason
        self._kill()

    def _pump(self, on_line: OnLine, started: float) -> tuple[int, bool]:
        """Read its output until it ends, its time is up, or it goes past a budget."""
        proc, limits = self._proc, self.limits
        assert proc is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        deadline = started + limits.seconds
        sel = selectors.DefaultSelector()
        splitters: dict[int, tuple[Stream, LineSplitter]] = {}
        for stream, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(f.fileno(), False)
            sel.register(f.fileno(), selectors.EVENT_READ)
            splitters[f.fileno()] = (stream, LineSplitter())  # type: ignore[assignment]
        budget = limits.log_bytes
        used = printed = 0
        memory_error = False
        next_check = started + OUTPUT_CHECK_S
        ended_at = None
        try:
            while self._reason is None:
                now = time.monotonic()
                if now >= deadline:
                    self.stop(f"Timed out after {limits.seconds:g} s (its time limit)")
                    break
                if proc.poll() is not None:
                    if not sel.get_map():
                        break
                    ended_at = ended_at or now
                    if now - ended_at > EXIT_GRACE_S:  # children of it still hold its output
                        break
                if now >= next_check:
                    too_much = self._output_too_large()
                    if too_much:
                        self.stop(too_much)
                        break
                    # a walk of many files costs: never more than a tenth of the worker's time
                    cost = time.monotonic() - now
                    next_check = now + max(OUTPUT_CHECK_S, 10 * cost)
                wait = max(0.0, min(deadline, next_check) - now)
                if ended_at:
                    wait = min(wait, 0.5)
                if not sel.get_map():  # it closed its output and runs on: wait for its end
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(wait)
                    continue
                for key, _ in sel.select(wait):
                    stream, splitter = splitters[key.fd]
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fd)
                        lines = splitter.end()
                    else:
                        printed += len(data)
                        lines = splitter.feed(data)
                    used += len(data) + LINE_OVERHEAD * len(lines)
                    if used > budget:
                        self.stop(
                            f"Printed more than {size(budget)} (its log limit): stopped; the "
                            "log keeps what came before"
                        )
                        break
                    for line in lines:
                        if stream == "stderr" and line.startswith("MemoryError"):
                            memory_error = True
                        on_line(stream, line)
        finally:
            sel.close()
            proc.stdout.close()
            proc.stderr.close()
        return printed, memory_error

    def _output_too_large(self) -> str | None:
        if self.out_mounted:  # its own tmpfs: what it holds, at once
            try:
                st = os.statvfs(self.out)
            except OSError:
                return None
            total = (st.f_blocks - st.f_bfree) * st.f_frsize
            entries = st.f_files - st.f_ffree - 1  # its root is one
            return self._over(total, entries)
        total = entries = 0
        stack = [self.out]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for entry in it:
                        entries += 1
                        st = entry.stat(follow_symlinks=False)
                        total += st.st_blocks * 512
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
            except OSError:
                continue
            too_much = self._over(total, entries)
            if too_much:
                return too_much
        return None

    def _over(self, total: int, entries: int) -> str | None:
        if entries > MAX_OUTPUT_ENTRIES:
            return f"Wrote more than {MAX_OUTPUT_ENTRIES} files to its output directory"
        if total > self.limits.file_bytes:
            return f"Wrote more than {size(self.limits.file_bytes)} to its output directory"
        return None

    def _exit_error(self, code: int) -> str:
        # bwrap passes a signal death on as 128 + the signal; without it Popen says -signal
        sig = -code if code < 0 else (code - 128 if self.probe.bwrap and code > 128 else 0)
        try:
            name = signal.Signals(sig).name if sig else ""
        except ValueError:
            name = ""
        if name == "SIGXCPU":
            return f"Used up its CPU time ({self.limits.cpu_seconds} CPU-seconds): killed"
        if name:
            return f"The submission was killed by {name} (exit status {code})"
        return f"The submission exited with status {code}"

    def _oom_kills(self, enclosing: tuple[int, Path] | None) -> int:
        if self.cgroup:
            return self.cgroup.oom_kills()
        return oom_kills(enclosing[1]) if enclosing else 0

    def _kill(self) -> None:
        """SIGKILL to everything of the run: its process group and its cgroup."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()

    def _command(
        self, entrypoint: str, config: str, *, address_space: bool, seccomp_fd: int | None = None
    ) -> list[str]:
        p, limits = self.probe, self.limits
        procs = map(str, self.cgroup.procs) if self.cgroup else ()  # entered as root
        cmd: list[str] = ["/bin/sh", "-c", LAUNCH, "launch", *procs, "--"]
        if p.setpriv:
            cmd += [
                p.setpriv,
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--no-new-privs",
                "--inh-caps=-all",
                "--",
            ]
        if p.prlimit:
            cmd += [p.prlimit]
            if p.setpriv or not p.bwrap:
                # RLIMIT_NPROC counts every task of the uid, so a shared uid needs room for its
                # own. In bwrap's user namespace (below) it counts the sandbox's tasks only.
                nproc = limits.processes + (0 if p.setpriv else _tasks_of(os.getuid()))
                cmd.append(f"--nproc={nproc}")
            cmd += [
                f"--nofile={limits.open_files}",
                f"--fsize={limits.file_bytes}",
                f"--cpu={limits.cpu_seconds}",
                "--core=0",
            ]
            if address_space:
                cmd.append(f"--as={limits.memory_mib * MIB}")
            cmd.append("--")
        entry = entrypoint if not entrypoint.startswith("-") else f"./{entrypoint}"
        config = config if not config.startswith("-") else f"./{config}"
        if not p.bwrap:
            return [*cmd, p.python, entry, "--config", config, "--output", str(self.out)]
        cmd += [p.bwrap, *BWRAP_FLAGS]
        if seccomp_fd is not None:
            cmd += ["--seccomp", str(seccomp_fd)]
        # Its own /tmp and /dev/shm, half its memory each: together no more than its class's
        # memory (where it shares the container's limit with the worker, as in AWS).
        for tmpfs in ("/tmp", "/dev/shm"):  # noqa: S108
            cmd += ["--size", str(limits.memory_mib * MIB // 2), "--tmpfs", tmpfs]
        for prefix in p.binds:
            cmd += ["--ro-bind", prefix, prefix]
        cmd += ["--ro-bind", str(self.code), CODE, "--bind", str(self.out), OUT, "--chdir", CODE]
        for k, v in self.env().items():
            cmd += ["--setenv", k, v]
        cmd += ["--remount-ro", "/"]  # its root too: only /out and /tmp are writable
        cmd.append("--")
        if p.prlimit:
            # Set inside the sandbox's user namespace, RLIMIT_NPROC counts only its own tasks
            # (Linux >= 5.14 keeps the count per user namespace), so where sandboxes share
            # a uid (a non-root worker, as in AWS) one's threads never stop another's start;
            # set outside, it would count every task of the uid on the host.
            cmd += [p.prlimit, f"--nproc={limits.processes}", "--"]
        return [*cmd, p.python, entry, "--config", config, "--output", OUT]


class LineSplitter:
    """A stream as lines: decoded, each cut at MAX_LINE_BYTES, and of a line rewritten
    with carriage returns (a progress bar) only its last state."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.cut = False  # the rest of the current line is dropped

    def feed(self, data: bytes) -> list[str]:
        out: list[str] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            piece = data[start : nl if nl >= 0 else len(data)]
            if nl >= 0 and piece.endswith(b"\r"):
                piece = piece[:-1]
            cr = piece.rfind(b"\r")
            if cr >= 0:
                self.buf.clear()
                self.cut = False
                piece = piece[cr + 1 :]
            if not self.cut:
                self.buf += piece
                if len(self.buf) > MAX_LINE_BYTES:
                    out.append(_text(self.buf[:MAX_LINE_BYTES]) + " [line cut]")
                    self.buf.clear()
                    self.cut = True
            if nl < 0:
                return out
            if not self.cut:
                out.append(_text(self.buf))
            self.buf.clear()
            self.cut = False
            start = nl + 1

    def end(self) -> list[str]:
        """What is left once the stream ended (a last line without a newline)."""
        rest = [_text(self.buf)] if self.buf and not self.cut else []
        self.buf.clear()
        return rest


def _text(b: bytes | bytearray) -> str:
    return bytes(b).decode("utf-8", "replace")


# --- files and processes ------------------------------------------------------------------
def _make_readable(root: Path) -> None:
    """The code tree readable (not writable) by the sandbox uid, whatever the umask was."""
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            if not p.is_symlink():
                p.chmod(0o755)
        for f in filenames:
            p = Path(dirpath, f)
            if not p.is_symlink():
                p.chmod(0o755 if p.stat().st_mode & 0o100 else 0o644)


def _remove_tree(path: Path, _seen: set[str] | None = None) -> None:
    """Remove a workspace whatever the submission did to it, never through a link: a
    folder it made unreadable or unwritable to its owner is made 0700 first."""
    seen = set() if _seen is None else _seen

    def retry(func: Callable, p: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            for q in (os.path.dirname(p), p):
                if not stat.S_ISLNK(os.lstat(q).st_mode):  # never chmod a link's target
                    os.chmod(q, 0o700)
            if func not in (os.open, os.scandir, os.listdir):
                func(p)
            elif p not in seen:  # a folder it could not read: now it can
                seen.add(p)
                _remove_tree(Path(p), seen)

    shutil.rmtree(path, onerror=retry)


# --- mounts (the worker as root) ----------------------------------------------------------
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
MNT_DETACH, UMOUNT_NOFOLLOW = 0x2, 0x8
CLONE_NEWNS = 0x00020000


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_output(out: Path, budget: int, uid: int) -> bool:
    """A tmpfs of ``budget`` (and one page, so that going past it is seen before it is
    refused) and MAX_OUTPUT_ENTRIES files on ``out``, owned by the sandbox uid; False
    where it cannot be mounted (the caller then only measures the directory)."""
    page = os.sysconf("SC_PAGE_SIZE")
    nbytes = -(-budget // page) * page + page
    options = f"size={nbytes},nr_inodes={MAX_OUTPUT_ENTRIES + 2},mode=0700,uid={uid},gid={uid}"
    try:
        _check(
            _libc().mount(b"tmpfs", bytes(out), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()),
            f"mount tmpfs on {out}",
        )
    except OSError as exc:
        log.warning("the output directory stays on TMPDIR's file system: %s", exc)
        return False
    return True


def _unmount(target: Path | str) -> None:
    """Unmount ``target``, lazily if something still holds it; nothing if not mounted."""
    libc = _libc()
    path = os.fsencode(target)
    if libc.umount2(path, UMOUNT_NOFOLLOW) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY:
        with contextlib.suppress(OSError):
            _check(libc.umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW), f"umount {target}")
            return
    if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point
        log.warning("could not unmount %s: %s", target, os.strerror(err))


def isolate_mounts() -> bool:
    """Give this (single-threaded) process a private mount namespace, so that the output
    tmpfs of its sandboxes go with it even if it is SIGKILLed. Root only; False if not."""
    if os.geteuid() != 0:
        return False
    try:
        _check(_libc().unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(_libc().mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    except OSError as exc:
        log.warning("the evaluator keeps the host's mount namespace: %s", exc)
        return False
    return True


def _mounts_under(root: str) -> list[str]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mountinfo."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_stale_workspaces(max_age_s: float, tmp: str | None = None) -> list[str]:
    """Remove the workspaces (``crucible-eval-*``, ``crucible-worker-*`` under TMPDIR) of
    runs older than ``max_age_s``, left by a worker that was SIGKILLed: their mounts
    detached, never following a link. Returns what was removed."""
    tmp = tmp or tempfile.gettempdir()
    now = time.time()
    removed = []
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(WORKSPACE_PREFIXES):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or now - st.st_mtime < max_age_s:
            continue
        if os.geteuid() == 0:
            for point in _mounts_under(entry.path):
                _unmount(point)
        _remove_tree(Path(entry.path))
        removed.append(entry.path)
    return removed


def _tasks_of(uid: int) -> int:
    """Processes and threads of ``uid`` now (what RLIMIT_NPROC counts)."""
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if entry.stat().st_uid == uid:
                n += len(os.listdir(f"/proc/{entry.name}/task"))
    return n
