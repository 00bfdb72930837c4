"""The sandbox's cgroup: memory (and swap), processes and CPU bounded per run, an OOM
kill told apart from any other SIGKILL, and everything in it killed at the end.

cgroup v1 (one directory per controller, under the worker's own cgroup, so whatever
bounds the worker bounds its sandboxes too) or v2 (``/sys/fs/cgroup/crucible-evaluator/
<run>``, since v2 forbids children beside the worker's own processes). The worker needs
to be root, or to own a delegated subtree; elsewhere ``Cgroup.create`` answers None and
the sandbox falls back to the container's own limit or RLIMIT_AS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import NamedTuple

CGROUP_DIR = "crucible-evaluator"
CGROUP_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024


class Bounds(NamedTuple):
    memory_mib: int  # memory and swap
    processes: int  # processes and threads (pids.max)
    vcpu: float  # a CPU quota


class Cgroup:
    """The run's own cgroup: v1 (a directory per controller, under the worker's own
    cgroup) or v2 (one directory under /sys/fs/cgroup/crucible-evaluator)."""

    def __init__(self, version: int, dirs: list[Path], memory: Path) -> None:
        self.version, self.dirs, self.memory = version, dirs, memory

    @property
    def procs(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    @classmethod
    def create(cls, name: str, bounds: Bounds) -> Cgroup | None:
        """The run's cgroup with its bounds, None where the worker cannot make one."""
        made: list[Path] = []
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():
                return cls._v2(name, bounds, made)
            return cls._v1(name, bounds, made)
        except OSError:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
            return None

    @classmethod
    def _v1(cls, name: str, b: Bounds, made: list[Path]) -> Cgroup | None:
        own = own_cgroups()
        dirs: dict[str, Path] = {}
        for ctrl in ("memory", "pids", "cpu"):
            mount = CGROUP_ROOT / ctrl
            if ctrl not in own or not (mount / "cgroup.procs").exists():
                continue
            d = mount / own[ctrl].lstrip("/") / CGROUP_DIR / name
            _mkdirs(d, made)
            dirs[ctrl] = d
        if "memory" not in dirs:
            raise FileNotFoundError("no cgroup v1 memory controller")
        mem = dirs["memory"]
        _kill_procs(list(dirs.values()))  # a crashed worker's leftovers of the same name
        limit = str(b.memory_mib * MIB)
        (mem / "memory.limit_in_bytes").write_text(limit)
        if (mem / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
            (mem / "memory.memsw.limit_in_bytes").write_text(limit)
        if "pids" in dirs:
            (dirs["pids"] / "pids.max").write_text(str(b.processes))
        if "cpu" in dirs:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text("100000")
            quota = max(1000, int(b.vcpu * 100_000))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        return cls(1, list(dirs.values()), mem)

    @classmethod
    def _v2(cls, name: str, b: Bounds, made: list[Path]) -> Cgroup | None:
        base = CGROUP_ROOT / CGROUP_DIR
        base.mkdir(exist_ok=True)
        wanted = [c for c in ("memory", "pids", "cpu") if c in _words(base / "cgroup.controllers")]
        if "memory" not in wanted:
            raise FileNotFoundError("the memory controller is not delegated")
        (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        d = base / name
        _mkdirs(d, made)
        _kill_procs([d])
        (d / "memory.max").write_text(str(b.memory_mib * MIB))
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")
        with contextlib.suppress(OSError):
            (d / "memory.oom.group").write_text("1")  # an OOM kill takes the whole sandbox
        if "pids" in wanted:
            (d / "pids.max").write_text(str(b.processes))
        if "cpu" in wanted:
            (d / "cpu.max").write_text(f"{max(1000, int(b.vcpu * 100_000))} 100000")
        return cls(2, [d], d)

    def oom_kills(self) -> int:
        return oom_kills(self.memory)

    def kill(self) -> None:
        if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        _kill_procs(self.dirs)

    def remove(self) -> None:
        self.kill()
        deadline = time.monotonic() + 5
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # tasks still exiting
                    if time.monotonic() > deadline:
                        break
                    _kill_procs([d])
                    time.sleep(0.05)


def own_cgroups() -> dict[str, str]:
    """The worker's own cgroup per v1 controller (and ``""`` for v2)."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def enclosing_memory() -> tuple[int, Path] | None:
    """The worker's own cgroup's memory limit (a container's), if it has one."""
    own = own_cgroups()
    candidates = []
    if "" in own and (CGROUP_ROOT / "cgroup.controllers").exists():
        candidates.append((CGROUP_ROOT / own[""].lstrip("/"), "memory.max"))
    if "memory" in own:
        candidates.append(
            (CGROUP_ROOT / "memory" / own["memory"].lstrip("/"), "memory.limit_in_bytes")
        )
    for d, name in candidates:
        with contextlib.suppress(OSError, ValueError):
            value = (d / name).read_text().strip()
            if value != "max" and int(value) < 1 << 60:
                return int(value), d
    return None


def oom_kills(d: Path) -> int:
    """The OOM kills a memory cgroup has seen (v2 memory.events, v1 memory.oom_control)."""
    for name in ("memory.events", "memory.oom_control"):
        with contextlib.suppress(OSError):
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0


def _kill_procs(dirs: list[Path]) -> None:
    for _ in range(100):
        pids = set()
        for d in dirs:
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _mkdirs(d: Path, made: list[Path]) -> None:
    """``d`` and its parents; only ``d`` is the run's own (the parents are shared)."""
    d.parent.mkdir(parents=True, exist_ok=True)
    if not d.is_dir():
        d.mkdir()
        made.append(d)


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []
