"""Job reporting: progress, logs, per-epoch validation, checkpoints and status into the
table (events on ``job:<id>`` and the owner's topic, metric rows, log lines) and MLflow.
Used by the trainer's callbacks and by the internal callback route alike."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from shared import keys
from shared.events import ProgressEvent, event_id_for
from shared.models import TrainingJob
from shared.ports import ExperimentTracker, JobRecordRepository, JobRepository, ObjectStore
from shared.services.push import PushService


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
    ) -> None:
        self.push, self.jobs, self.job, self.records, self.mlflow = push, jobs, job, records, mlflow
        self.artifacts = artifacts  # per-sample validation predictions go here, as JSON
        self.topic = f"job:{job.id}"
        self.throttle_s = throttle_s
        self._last_progress = 0.0
        self.last_validation: dict[str, Any] | None = None
        self._n = 0

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
        now = time.monotonic()
        if now - self._last_progress < self.throttle_s and step != total_steps:
            return
        self._last_progress = now
        self._publish(
            "progress",
            {
                "epoch": epoch,
                "total_epochs": self.job.total_epochs,
                "step": step,
                "total_steps": total_steps,
                "loss": round(loss, 6),
                "learning_rate": lr,
                "metrics": {"loss": round(loss, 6)},
            },
        )

    def on_epoch_end(self, epoch: int, train_loss: float, val: dict[str, Any], lr: float) -> None:
        """``val`` holds numbers (metrics), optionally ``per_class``, ``confusion_matrix`` and
        ``samples`` (per-sample predictions, stored beside the checkpoints, not in the table)."""
        samples = val.pop("samples", None)
        if samples is not None and self.artifacts is not None:
            self.artifacts.put(
                keys.validation_samples(self.job.id, epoch),
                json.dumps(samples).encode(),
                content_type="application/json",
            )
        metrics = {k: v for k, v in val.items() if isinstance(v, int | float) and math.isfinite(v)}
        details = {k: val[k] for k in ("per_class", "confusion_matrix") if k in val}
        row = {
            "loss": train_loss,
            "learning_rate": lr,
            "val_loss": val.get("val_loss"),
            "accuracy": val.get("accuracy"),
            "extra_metrics": {
                k: v for k, v in metrics.items() if k not in ("val_loss", "accuracy")
            },
            **details,
            **({"samples": len(samples)} if samples is not None else {}),
        }
        self.records.put_metrics(self.job.id, epoch, row)
        self.jobs.update(
            self.job.id, {"current_epoch": epoch, "metrics": {"loss": train_loss, **metrics}}
        )
        self.last_validation = {"epoch": epoch, **metrics, **details}
        self._publish("validation", self.last_validation, epoch)
        if self.mlflow:
            self.mlflow.log_metrics({"train_loss": train_loss, "lr": lr, **metrics}, step=epoch)

    def on_checkpoint(self, path: str, epoch: int, best: bool) -> None:
        self._publish("checkpoint", {"path": path, "epoch": epoch, "best": best}, path, epoch)

    def on_status(self, status: str, message: str) -> None:
        self._publish("status", {"status": status, "message": message}, status)

    def on_error(self, message: str) -> None:
        self.log(message, "ERROR")
        self._publish("error", {"message": message}, "error")
