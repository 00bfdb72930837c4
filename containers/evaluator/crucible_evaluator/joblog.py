"""The job's log: ``[YYYY-mm-dd HH:MM:SS] <line>`` (UTC) per line, the worker's own lines
and the submission's (stderr marked ``[stderr]``), as the seed's ``/jobs/{id}/logs``
shows it. The whole log so far is saved every ``save_every`` seconds and new lines are
pushed to the job's followers every ``push_every`` seconds, from a thread of its own;
``close`` does both one last time (before the job's final state, which is the last thing
followers hear). Once the job has ended (``ended``: cancelled or swept, while the
evaluator runs on until its SIGTERM) or is about to (``silence``), nothing more is
pushed: followers heard its final state and hear nothing after it. A failed save or
push is logged and retried, never fatal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from shared.models import Evaluation
from shared.services.evaluations import EvaluationService

log = logging.getLogger("crucible.evaluator")


class JobLog:
    def __init__(
        self,
        service: EvaluationService,
        job: Evaluation,
        *,
        save_every: float = 5.0,
        push_every: float = 2.0,
        ended: Callable[[], bool] | None = None,
    ) -> None:
        self.service, self.job = service, job
        self.save_every, self.push_every = save_every, push_every
        self._ended = ended  # whether the job has ended (asked before each push)
        self._silenced = False  # no more pushes from the thread (a flag: set in a signal handler)
        self._lock = threading.Lock()
        self._text = bytearray()
        self._pending: list[str] = []
        self._dirty = False
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-log", daemon=True)

    def start(self) -> JobLog:
        self._thread.start()
        return self

    def add(self, line: str, stream: str = "worker") -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        entry = f"[{stamp}] {'[stderr] ' if stream == 'stderr' else ''}{line}"
        if stream in ("worker", "sandbox"):
            log.info("%s", line)
        with self._lock:
            self._text += entry.encode("utf-8", "replace") + b"\n"
            self._pending.append(entry)
            self._dirty = True

    def text(self) -> bytes:
        with self._lock:
            return bytes(self._text)

    def close(self, *, push: bool = True) -> None:
        """Stop the thread; save the whole log, and push what followers have not seen
        (``push=False``: the job has ended, so they heard its final state already)."""
        self._stop.set()
        self._silenced = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._save()
        if push:
            self._push()

    def silence(self) -> None:
        """Push nothing more from the thread (the job ends now, or has ended)."""
        self._silenced = True

    def job_ended(self) -> bool:
        """Whether the job has ended already (False when that cannot be told)."""
        if self._ended is None:
            return False
        try:
            return self._ended()
        except Exception:
            log.exception("could not read the state of job %s", self.job.id)
            return False

    def save(self) -> None:
        """Save now (after the job's end: a line it could no longer push)."""
        self._save()

    def _loop(self) -> None:
        last_save = time.monotonic()
        while not self._stop.wait(self.push_every):
            with self._lock:
                pending = bool(self._pending)
            if pending and not self._silenced:
                if self.job_ended():  # cancelled or swept: its final state was the last word
                    self._silenced = True
                else:
                    self._push()
            if time.monotonic() - last_save >= self.save_every:
                last_save = time.monotonic()
                self._save()

    def _save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            data, self._dirty = bytes(self._text), False
        try:
            self.service.save_logs(self.job.id, data)
        except Exception:
            log.exception("could not save the log of job %s", self.job.id)
            with self._lock:
                self._dirty = True

    def _push(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines:
            return
        # increasing, and unique across attempts of the same job (an event id is made of it)
        self._seq = max(self._seq + 1, time.time_ns() // 1_000_000)
        try:
            self.service.publish_logs(self.job, self._seq, lines)
        except Exception:  # followers miss these lines live; the saved log has them
            log.exception("could not push log lines of job %s", self.job.id)
