"""``main(--job-id)``: load the job, fetch its dataset, train it with its framework,
report into the table and MLflow. SIGTERM (a stop, or a spot reclaim) saves a last
checkpoint and exits cleanly."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from crucible_trainer.frameworks import trainer
from crucible_trainer.run import Checkpoints, Run
from crucible_trainer.spec import JobSpec
from shared.datasets import extract
from shared.models import TrainingJob
from shared.services.reporting import Reporter
from shared.settings import Settings, load_settings
from shared.wiring import build

log = logging.getLogger("crucible.trainer")


def _mlflow(settings: Settings, work: Path, job: TrainingJob) -> tuple[Any, Any]:
    """MLflow and this job's run in the stage's experiment (a local SQLite store by default)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = settings.mlflow_tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    name = f"crucible-{settings.stage}"
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        # Artifacts beside the local database, not in the working directory's ./mlruns
        # (a tracking server, such as SageMaker's, keeps its own artifact store).
        store = Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # another trainer made it
            mlflow.create_experiment(name, artifact_location=store.as_uri())
    mlflow.set_experiment(name)
    run = mlflow.start_run(run_name=f"job-{job.id}")
    mlflow.log_params(
        {
            "framework": job.framework,
            "model_name": job.model_name,
            "epochs": job.total_epochs,
            "batch_size": job.batch_size,
            "learning_rate": job.learning_rate,
            "task_type": job.task_type,
        }
    )
    return mlflow, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crucible_trainer")
    ap.add_argument("--job-id", required=True, type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    # A stop or a spot reclaim: checkpoint, then exit 0.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    settings = load_settings()
    c = build(settings)
    job = c.job_repository.get(args.job_id)
    if job is None:
        log.error("job %s does not exist", args.job_id)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mlflow, mlflow_run = _mlflow(settings, work, job)
        c.job_repository.update(job.id, {"mlflow_run_id": mlflow_run.info.run_id})
        reporter = Reporter(
            c.push, c.job_repository, job, c.job_records, mlflow, artifacts=c.artifacts
        )
        try:
            dataset = c.dataset_repository.get(job.dataset_id) if job.dataset_id else None
            if dataset is None or dataset.status != "ready":
                raise ValueError(f"dataset {job.dataset_id} is not ready to train on")
            archive = work / "dataset.zip"
            c.uploads.download(dataset.key, str(archive))
            data = Path(extract(str(archive), str(work / "data")))
            reporter.log(
                f"Starting {job.framework} {job.model_name} on {dataset.name} ({dataset.file_count} files)"
            )
            train = trainer(job.framework)
            spec = JobSpec.from_job(job)
            checkpoints = Checkpoints(c.artifacts, job.id, work, reporter)
            outcome = train(spec, data, Run(spec, reporter, checkpoints, stop))
            checkpoints.flush()
            reporter.log(f"Training {outcome}")
        except Exception as exc:
            log.exception("training failed")
            reporter.on_error(f"{type(exc).__name__}: {exc}")
            mlflow.end_run(status="FAILED")
            return 1
        bucket = settings.names.artifacts_bucket
        mlflow.log_dict(
            {n: f"s3://{bucket}/{checkpoints.prefix}{n}.pt" for n in ("last", "best")},
            "checkpoints.json",
        )
        if reporter.last_validation:
            mlflow.log_dict(reporter.last_validation, "validation.json")
        mlflow.end_run(status="KILLED" if outcome == "stopped" else "FINISHED")
    return 0
