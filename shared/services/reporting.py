"""Job reporting: progress, logs, per-epoch validation, checkpoints and status into the
table (events on ``job:<id>`` and the owner's topic, metric rows, log lines) and MLflow.
Used by the trainer's callbacks and by the internal callback route alike.

Per-class metrics and the confusion matrix grow with the class count (the matrix with its
square: 1,000 classes make megabytes), so they always go to an S3 object
(:func:`shared.keys.validation_details`) and the metric row and the pushed event carry
a reference to it (``details``: key, size, sha256) and a summary bounded whatever the
class count (``classes``, the ``top_confusions``); :func:`read_details` resolves it.

Progress events carry seed 003's ``training_progress`` fields: ``eta_minutes`` (from the
pace of this run so far), ``metrics`` (the step's loss and the latest validation's
numbers) and, only where the trainer measures them (``device``: a GPU this process
trains on), ``gpu_utilization`` and ``memory_usage_gb``; never made up."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared import keys
from shared.errors import InvalidInput
from shared.events import ProgressEvent, event_id_for
from shared.models import TrainingJob
from shared.ports import ExperimentTracker, JobRecordRepository, JobRepository, ObjectStore
from shared.services.push import PushService

log = logging.getLogger(__name__)

DETAILS = ("per_class", "confusion_matrix")  # what a validation stores as an object
TOP_CONFUSIONS = 10  # the most frequent mistakes a metric row and an event quote
NAME_CHARS = 128  # a class name as the summary quotes it
MAX_METRICS = 100  # numeric validation metrics a row and an event keep (names <= 100 chars)


class Reporter:
    """Turns training callbacks into the event contract (topic ``job:<id>``), the job's
    progress fields, per-epoch metric rows, log lines, and MLflow metrics."""

    def __init__(
        self,
        push: PushService,
        jobs: JobRepository,
        job: TrainingJob,
        records: JobRecordRepository,
        mlflow: ExperimentTracker | None = None,
        *,
        artifacts: ObjectStore | None = None,
        throttle_s: float = 1.0,
        device: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.push, self.jobs, self.job, self.records, self.mlflow = push, jobs, job, records, mlflow
        self.artifacts = artifacts  # per-sample validation predictions go here, as JSON
        self.topic = f"job:{job.id}"
        self.throttle_s = throttle_s
        # What the trainer measures of the device it trains on (gpu_utilization,
        # memory_usage_gb); None, or an empty answer, where it measures nothing.
        self.device = device
        self._last_progress = 0.0
        self.last_validation: dict[str, Any] | None = None
        self._val_metrics: dict[str, float] = {}  # the latest validation's numbers
        self._n = 0
        # The pace of this run, for eta_minutes: when reporting began, and the first step
        # seen (its time and position in epochs, e.g. 2.25 = a quarter into epoch 3).
        self._began = time.time()
        self._first_step: tuple[float, float] | None = None
        self._first_epoch: int | None = None
        self._steps_per_epoch = 0

    def _publish(self, kind: str, data: dict[str, Any], *key: Any) -> None:
        eid = (
            event_id_for("job", self.job.id, kind, *key)
            if key
            else event_id_for("job", self.job.id, kind, time.time_ns())
        )
        self.push.publish(
            ProgressEvent(
                topic=self.topic,
                kind=kind,
                event_id=eid,
                data=data,
                also=[f"user:{self.job.owner_id}"],
            )
        )

    def log(self, message: str, level: str = "INFO") -> None:
        self._n += 1
        self.records.put_log(self.job.id, self._n, level, message)
        self._publish("log", {"level": level, "message": message})

    def on_step(self, epoch: int, step: int, total_steps: int, loss: float, lr: float) -> None:
        position = epoch - 1 + (step / total_steps if total_steps > 0 else 0.0)
        if self._first_step is None:
            self._first_step, self._first_epoch = (time.time(), position), epoch
        self._steps_per_epoch = max(total_steps, 0)
        now = time.monotonic()
        if now - self._last_progress < self.throttle_s and step != total_steps:
            return
        self._last_progress = now
        data: dict[str, Any] = {
            "epoch": epoch,
            "total_epochs": self.job.total_epochs,
            "step": step,
            "total_steps": total_steps,
            "loss": round(loss, 6),
            "learning_rate": lr,
            "metrics": {**self._val_metrics, "loss": round(loss, 6)},
            "eta_minutes": self._eta_minutes(position),
        }
        data.update(self._device_stats())
        self._publish("progress", data)

    def _eta_minutes(self, position: float) -> float | None:
        """Minutes left at this run's pace: measured from its first step once it has moved
        on from it, else from when reporting began (which counts the set-up, so early
        answers run long), else (a reporter made for one callback) from the job's start.
        None when nothing has been timed yet."""
        now, left = time.time(), max(0.0, self.job.total_epochs - position)
        t0, p0 = self._first_step or (now, position)
        first_epoch = self._first_epoch or 1  # where this run began (a resumed one later)
        for since, done in (
            (t0, position - p0),
            (self._began, position - (first_epoch - 1)),
            (self.job.started_at.timestamp() if self.job.started_at else now, position),
        ):
            if now - since >= 1.0 and done > 0:
                return round((now - since) / done * left / 60, 2)
        return None

    def _device_stats(self) -> dict[str, float]:
        """What ``device`` measures now; nothing if it cannot (measuring never stops training)."""
        if self.device is None:
            return {}
        try:
            return {k: v for k, v in self.device().items() if v is not None}
        except Exception:
            return {}

    def on_epoch_end(self, epoch: int, train_loss: float, val: dict[str, Any], lr: float) -> None:
        """``val`` holds numbers (metrics), optionally ``per_class`` and ``confusion_matrix``
        (stored as one object, :func:`keys.validation_details`) and ``samples``
        (per-sample predictions, :func:`keys.validation_samples`); the row and the event
        carry references and a bounded summary, never the objects themselves."""
        details = {k: val[k] for k in DETAILS if k in val}
        summary = validation_summary(details)  # checks them before anything is stored
        samples = val.pop("samples", None)
        if samples is not None and self.artifacts is not None:
            self.artifacts.put(
                keys.validation_samples(self.job.id, epoch),
                json.dumps(samples).encode(),
                content_type="application/json",
            )
        numbers = (
            (k, v)
            for k, v in val.items()
            if isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and len(k) <= 100
        )
        metrics = dict(itertools.islice(numbers, MAX_METRICS))
        if details and self.artifacts is not None:
            summary["details"] = store_details(self.artifacts, self.job.id, epoch, details)
        row = {
            "loss": train_loss,
            "learning_rate": lr,
            # steps trained up to this epoch's end, when the trainer reports its steps
            "step": epoch * self._steps_per_epoch if self._steps_per_epoch else None,
            "val_loss": val.get("val_loss"),
            "accuracy": val.get("accuracy"),
            "extra_metrics": {
                k: v for k, v in metrics.items() if k not in ("val_loss", "accuracy")
            },
            **summary,
            **({"samples": len(samples)} if samples is not None else {}),
        }
        self.records.put_metrics(self.job.id, epoch, row)
        self.jobs.update(
            self.job.id, {"current_epoch": epoch, "metrics": {"loss": train_loss, **metrics}}
        )
        self._val_metrics = {k: round(v, 6) for k, v in metrics.items()}
        self.last_validation = {"epoch": epoch, **metrics, **details}  # in full, for MLflow
        self._publish("validation", {"epoch": epoch, **metrics, **summary}, epoch)
        if self.mlflow:
            self.mlflow.log_metrics({"train_loss": train_loss, "lr": lr, **metrics}, step=epoch)

    def on_checkpoint(self, path: str, epoch: int, best: bool) -> None:
        self._publish("checkpoint", {"path": path, "epoch": epoch, "best": best}, path, epoch)

    def on_status(self, status: str, message: str) -> None:
        self._publish("status", {"status": status, "message": message}, status)

    def on_error(self, message: str) -> None:
        self.log(message, "ERROR")
        self._publish("error", {"message": message}, "error")


def validation_summary(details: Mapping[str, Any]) -> dict[str, Any]:
    """What a row and an event say of a validation's details, bounded whatever the class
    count: ``classes`` (how many) and ``top_confusions`` (at most :data:`TOP_CONFUSIONS`
    off-diagonal cells of the matrix, most frequent first: true class, predicted class,
    count). :class:`InvalidInput` when the matrix is not square counts over those classes."""
    per_class, cm = details.get("per_class"), details.get("confusion_matrix")
    if per_class is not None and not isinstance(per_class, Mapping):
        raise InvalidInput("per_class must map each class name to its metrics", field="per_class")
    if cm is None:
        return {"classes": len(per_class)} if per_class is not None else {}
    n = len(cm) if isinstance(cm, list) else -1
    if n < 0 or any(
        not isinstance(row, list)
        or len(row) != n
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in row)
        for row in cm
    ):
        raise InvalidInput(
            "confusion_matrix must be a square list of lists of counts, cm[true][predicted]",
            field="confusion_matrix",
        )
    names = list(per_class) if per_class is not None and len(per_class) == n else None
    name = (lambda i: str(names[i])[:NAME_CHARS]) if names else str
    top = heapq.nlargest(
        TOP_CONFUSIONS,
        ((c, t, p) for t, row in enumerate(cm) for p, c in enumerate(row) if c and t != p),
    )
    return {
        "classes": n,
        "top_confusions": [{"true": name(t), "predicted": name(p), "count": c} for c, t, p in top],
    }


def store_details(
    artifacts: ObjectStore, job_id: int, epoch: int, details: Mapping[str, Any]
) -> dict[str, Any]:
    """Put one epoch's details in their object; the reference a row and an event carry."""
    key = keys.validation_details(job_id, epoch)
    body = json.dumps(details, separators=(",", ":")).encode()
    artifacts.put(key, body, content_type="application/json")
    return {"key": key, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def stored_details_size(row: Mapping[str, Any]) -> int:
    """The bytes of a metric row's details: its object's, or (a row written before details
    moved to objects) those it holds itself; 0 when it has none."""
    if isinstance(row.get("details"), Mapping):
        return int(row["details"]["size"])
    inline = {k: row[k] for k in DETAILS if k in row}
    return len(json.dumps(inline, default=str, separators=(",", ":"))) if inline else 0


def details_key(job_id: int, row: Mapping[str, Any]) -> str | None:
    """Where a metric row's details object is: built from the job and the row's epoch,
    never taken from the row (a row names only that it has one, its size and digest)."""
    return keys.validation_details(job_id, int(row["epoch"])) if row.get("details") else None


def read_details(artifacts: ObjectStore, job_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """A metric row's ``per_class`` and ``confusion_matrix``: read from its object (whose
    digest must be the one the row recorded), or (an older row) its own; empty when it
    has none, or when the object is not what was recorded."""
    ref = row.get("details")
    if isinstance(ref, Mapping):
        body = artifacts.get(details_key(job_id, row) or "")
        if hashlib.sha256(body).hexdigest() != ref.get("sha256"):
            log.warning(
                "job %s epoch %s: details object does not match its row", job_id, row["epoch"]
            )
            return {}
        return json.loads(body)
    return {k: row[k] for k in DETAILS if k in row}
