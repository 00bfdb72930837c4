"""What every framework's training talks to, so the loops hold only training: a
:class:`Run` carries the spec, progress reporting, the stop flag and the checkpoint
policy; :class:`Checkpoints` stores checkpoints without making training wait.

Checkpoints are state dicts and plain data (str, int, float, list, dict), so that they
load with ``torch.load(weights_only=True)``: a file that pickles anything else is
refused, never unpickled. The policy, for trainers that save their own state dicts: resume
from ``spec.resume_from``; keep the best weights (by one validation metric) in memory;
write "last" (with those best weights as "best") at most every
``spec.checkpoint_interval_s``, at the final epoch and when stopped. A framework with
its own loop and checkpoint files (ultralytics) saves plain state dicts of them through
:meth:`Checkpoints.save` as it writes them.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from crucible_trainer.spec import JobSpec
from shared import keys
from shared.ports import ObjectStore
from shared.services.reporting import Reporter

Outcome = Literal["completed", "stopped"]
Snapshot = Callable[[int], dict[str, Any]]  # epoch -> the checkpoint's contents


class Checkpoints:
    """Last and best checkpoints, written locally and uploaded to the job's checkpoint keys
    (:mod:`shared.keys`) by a background thread, so training never waits on S3 (``flush``
    waits, at the end)."""

    def __init__(self, artifacts: ObjectStore, job_id: int, work: Path, reporter: Reporter) -> None:
        self.artifacts, self.work, self.reporter = artifacts, work, reporter
        self.last = keys.last_checkpoint(job_id)
        self.best = keys.best_checkpoint(job_id)
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        threading.Thread(target=self._upload, daemon=True).start()

    def save(self, state: dict, epoch: int, *, best: dict | None = None) -> str:
        """Write ``state`` as last.pt (and ``best``, the best weights so far, as best.pt)."""
        import torch

        return self._enqueue(
            epoch,
            lambda p: torch.save(state, p),
            None if best is None else lambda p: torch.save(best, p),
        )

    def _enqueue(
        self, epoch: int, write: Callable[[Path], Any], write_best: Callable[[Path], Any] | None
    ) -> str:
        local = self.work / f"epoch-{epoch}.pt"
        write(local)
        best_local = None
        if write_best is not None:
            best_local = self.work / f"best-{epoch}.pt"
            write_best(best_local)
        self._queue.put((local, epoch, best_local))
        return self.last

    def _upload(self) -> None:
        while True:
            local, epoch, best = self._queue.get()
            try:
                # A newer "last" already waiting makes this one moot (a best one never is).
                if self._queue.qsize() == 0 or best:
                    self.artifacts.upload(self.last, str(local))
                    if best:
                        self.artifacts.upload(self.best, str(best))
                    self.reporter.on_checkpoint(self.last, epoch, best is not None)
            except Exception as exc:
                self._errors.append(exc)  # raised by flush(): a run whose checkpoints fail fails
            finally:
                local.unlink(missing_ok=True)
                if best:
                    best.unlink(missing_ok=True)
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()
        if self._errors:
            raise RuntimeError(f"checkpoint upload failed: {self._errors[0]}")

    def load(self, key: str) -> dict:
        """A checkpoint to resume from: tensors and plain data only (``weights_only``), so a
        file that pickles anything else is refused, never run."""
        import pickle

        import torch

        local = self.work / "resume.pt"
        self.artifacts.download(key, str(local))
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise ValueError(
                f"{key} is not a checkpoint this platform wrote (tensors and plain data "
                f"only), so it cannot be resumed from: {type(exc).__name__}"
            ) from None
        finally:
            local.unlink(missing_ok=True)
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            raise ValueError(f"{key} is not a training checkpoint, so it cannot be resumed from")
        return state


class Run:
    """One training run as its framework sees it: callbacks to report through, the stop
    flag, and (after :meth:`begin`) the checkpoint policy."""

    def __init__(
        self, spec: JobSpec, reporter: Reporter, checkpoints: Checkpoints, stop: threading.Event
    ) -> None:
        self.spec, self.reporter, self.checkpoints, self.stop = spec, reporter, checkpoints, stop
        self.first_epoch = 1  # begin() moves these on when resuming
        self.best = math.nan  # the best val[monitor] so far, once begin() set the policy
        self._snapshot: Snapshot | None = None
        self._monitor, self._higher_is_better = "", True
        self._best_weights: dict | None = None  # waiting in memory for the next save
        self._last_save = time.monotonic()

    @property
    def stopping(self) -> bool:
        """A stop was asked for (SIGTERM: a user's stop, or a spot reclaim)."""
        return self.stop.is_set()

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def on_step(self, epoch: int, step: int, total_steps: int, loss: float, lr: float) -> None:
        self.reporter.on_step(epoch, step, total_steps, loss, lr)

    def report_epoch(self, epoch: int, train_loss: float, val: dict[str, Any], lr: float) -> None:
        """Report an epoch's training loss and validation (for frameworks that checkpoint
        themselves; :meth:`on_epoch_end` also applies the policy)."""
        self.reporter.on_epoch_end(epoch, train_loss, val, lr)

    # --- the checkpoint policy, for trainers that save their own state dicts ---------

    def begin(
        self, snapshot: Snapshot, *, monitor: str, mode: Literal["max", "min"]
    ) -> dict | None:
        """Adopt the policy: ``snapshot(epoch)`` is what a checkpoint holds, and the best
        epoch is the one with the highest (``max``) or lowest (``min``) ``val[monitor]``.
        Returns the checkpoint named by ``spec.resume_from``, if any, for the caller to
        load its weights and optimizer from; :meth:`epochs` and :attr:`best` go on from it."""
        self._snapshot, self._monitor, self._higher_is_better = snapshot, monitor, mode == "max"
        self.best = -math.inf if self._higher_is_better else math.inf
        self._last_save = time.monotonic()
        if not self.spec.resume_from:
            return None
        state = self.checkpoints.load(self.spec.resume_from)
        self.first_epoch, self.best = state["epoch"] + 1, state.get("best", self.best)
        left = (
            f"epochs {self.first_epoch}-{self.spec.epochs} to go"
            if self.first_epoch <= self.spec.epochs
            else f"all {self.spec.epochs} epochs done already"
        )
        self.log(
            f"Resumed from checkpoint {self.spec.resume_from} at epoch {state['epoch']}: {left}"
        )
        return state

    def epochs(self) -> range:
        return range(self.first_epoch, self.spec.epochs + 1)

    def on_epoch_end(self, epoch: int, train_loss: float, val: dict[str, Any], lr: float) -> None:
        """Report the epoch, keep its weights if they are the best so far, and save "last"
        if this is the final epoch or the checkpoint interval has passed."""
        score = val[self._monitor]
        self.report_epoch(epoch, train_loss, val, lr)
        if self._improves(score):
            self.best = score
            state = self._state(epoch)
            self._best_weights = {
                **state,
                **{k: None for k in ("optimizer", "scheduler") if k in state},
                "model": {k: v.detach().clone() for k, v in state["model"].items()},
            }
        if (
            epoch == self.spec.epochs
            or time.monotonic() - self._last_save >= self.spec.checkpoint_interval_s
        ):
            self.checkpoint(epoch)

    def _improves(self, score: float) -> bool:
        return score > self.best if self._higher_is_better else score < self.best

    def checkpoint(self, epoch: int) -> None:
        """Save "last" as of ``epoch`` now, with the best weights waiting since the last save
        (a stopping trainer calls this with the last epoch it finished)."""
        self.checkpoints.save(self._state(epoch), epoch, best=self._best_weights)
        self._best_weights, self._last_save = None, time.monotonic()

    def _state(self, epoch: int) -> dict[str, Any]:
        if self._snapshot is None:
            raise RuntimeError("Run.begin() sets what a checkpoint holds")
        return self._snapshot(epoch)


# --- what the run was given, and what it can measure of its device -----------------


def resources() -> dict[str, Any]:
    """What this run was given, as the trainer sees it: its CPUs (those it may run on),
    its memory (its cgroup's limit where it has one, else the machine's) and the GPUs
    torch can use (``device`` "cuda", with their type, count and memory), or none
    (``device`` "cpu"). Recorded on the job as its ``resources``; nothing is assumed."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {"device": "cpu", "cpu_count": cpus}
    memory = _memory_bytes()
    if memory:
        out["memory_gb"] = round(memory / 2**30, 1)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(
            device="cuda",
            gpu_type=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
        )
    return out


def _memory_bytes() -> int | None:
    """The memory this process may use: its cgroup's limit (v2, then v1), if lower than
    the machine's; None if neither can be read."""
    physical = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (physical is None or int(text) < physical):
            return int(text)
        break
    return physical


def device_probe() -> Callable[[], dict[str, float]] | None:
    """A measurement of the GPU this process trains on, for progress messages: its
    utilization (percent, NVML's, through ``torch.cuda.utilization``; left out where NVML
    cannot be read) and the memory this process's tensors hold there (GiB,
    ``torch.cuda.memory_allocated``). None without CUDA; an empty answer while this
    process holds nothing on a GPU (a framework that trains on the CPU): nothing is
    reported that was not measured."""
    import torch

    if not torch.cuda.is_available():
        return None
    nvml = [True]  # whether utilization can be read; found out once

    def measure() -> dict[str, float]:
        if not torch.cuda.is_initialized():
            return {}
        held = sum(torch.cuda.memory_allocated(d) for d in range(torch.cuda.device_count()))
        if held <= 0:
            return {}
        out = {"memory_usage_gb": round(held / 2**30, 3)}
        if nvml[0]:
            try:
                out["gpu_utilization"] = float(torch.cuda.utilization())
            except Exception:  # no pynvml/amdsmi, or no permission: not measured
                nvml[0] = False
        return out

    return measure


def describe(given: dict[str, Any]) -> str:
    """``resources()`` in words, for the job's log."""
    parts = []
    if given.get("device") == "cuda":
        parts.append(
            f"{given['gpu_count']} x {given['gpu_type']} ({given['gpu_memory_gb']} GiB each)"
        )
    parts.append(f"{given['cpu_count']} CPUs")
    if "memory_gb" in given:
        parts.append(f"{given['memory_gb']} GiB memory")
    return f"Resources: {', '.join(parts)}"
