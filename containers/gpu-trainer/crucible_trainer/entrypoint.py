"""``main(--job-id)``: load the job, fetch its dataset, run its framework's task."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from crucible_trainer.reporting import Reporter
from shared.adapters.dynamodb import DynamoJobRecords
from shared.datasets import extract
from shared.settings import load_settings
from shared.wiring import build

log = logging.getLogger("crucible.trainer")


class Checkpoints:
    """Last and best checkpoints: written locally, then to ``jobs/<id>/checkpoints/``."""

    def __init__(self, c: Any, job_id: int, work: Path, reporter: Reporter) -> None:
        self.c, self.work, self.reporter = c, work, reporter
        self.prefix = f"jobs/{job_id}/checkpoints/"

    def save(self, state: dict, epoch: int, *, best: bool) -> str:
        import torch

        local = self.work / "last.pt"
        torch.save(state, local)
        key = self.prefix + "last.pt"
        self.c.artifacts.put(key, local.read_bytes(), content_type="application/octet-stream")
        if best:
            self.c.artifacts.put(
                self.prefix + "best.pt", local.read_bytes(), content_type="application/octet-stream"
            )
        self.reporter.on_checkpoint(key, epoch, best)
        return key

    def load(self, key: str) -> dict:
        import torch

        local = self.work / "resume.pt"
        self.c.artifacts.download(key, str(local))
        return torch.load(local, map_location="cpu", weights_only=False)


def _mlflow(settings: Any, work: Path, job: Any):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri or f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment(f"crucible-{settings.stage}")
    run = mlflow.start_run(run_name=f"job-{job.id}")
    mlflow.log_params({"framework": job.framework, "model_name": job.model_name, "epochs": job.total_epochs,
                       "batch_size": job.batch_size, "learning_rate": job.learning_rate, "task_type": job.task_type})  # fmt: skip
    return mlflow, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crucible_trainer")
    ap.add_argument("--job-id", required=True, type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(
        signal.SIGTERM, lambda *_: stop.set()
    )  # stop or spot reclaim: checkpoint, then exit 0

    settings = load_settings()
    c = build(settings)
    job = c.jobs.jobs.get(args.job_id)
    if job is None:
        log.error("job %s does not exist", args.job_id)
        return 2
    records = DynamoJobRecords(c.table)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mlflow, run = _mlflow(settings, work, job)
        c.jobs.jobs.update(job.id, {"mlflow_run_id": run.info.run_id})
        reporter = Reporter(c, job, records, mlflow)
        try:
            dataset = c.datasets.datasets.get(job.dataset_id) if job.dataset_id else None
            if dataset is None or dataset.status != "ready":
                raise ValueError(f"dataset {job.dataset_id} is not ready to train on")
            archive = work / "dataset.zip"
            c.uploads.download(dataset.key, str(archive))
            root = Path(extract(str(archive), str(work / "data")))
            reporter.log(
                f"Starting {job.framework} {job.model_name} on {dataset.name} ({dataset.file_count} files)"
            )
            from crucible_trainer.tasks import TASKS

            task = TASKS.get(job.framework)
            if task is None:
                raise ValueError(f"unknown framework '{job.framework}'")
            outcome = task(job, root, reporter, Checkpoints(c, job.id, work, reporter), stop)
            reporter.log(f"Training {outcome}")
        except Exception as exc:
            log.exception("training failed")
            reporter.on_error(f"{type(exc).__name__}: {exc}")
            mlflow.end_run(status="FAILED")
            return 1
        mlflow.end_run(status="KILLED" if outcome == "stopped" else "FINISHED")
    return 0
