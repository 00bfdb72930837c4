"""``main(--job-id)``: load the job, check it against the catalogue, fetch its dataset,
train it with its framework, report into the table and MLflow.

SIGTERM saves a last checkpoint, then exits 0 if the job was asked to stop (its status
is ``stopping``: the user's stop) and 143 otherwise (a spot reclaim, a timeout), so that
AWS Batch records FAILED, never a job that finished; a retry by Batch
(``AWS_BATCH_JOB_ATTEMPT`` > 1) resumes from the interrupted attempt's last checkpoint."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from crucible_trainer.frameworks import trainer
from crucible_trainer.run import Checkpoints, Run, describe, device_probe, resources
from crucible_trainer.spec import JobSpec, Refused
from shared.archives import extract
from shared.errors import CrucibleError
from shared.models import TrainingJob
from shared.ports import JobRepository
from shared.services.reporting import Reporter
from shared.settings import Settings, load_settings
from shared.wiring import build

log = logging.getLogger("crucible.trainer")
INTERRUPTED = 128 + signal.SIGTERM  # the exit status of a process ended by SIGTERM


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
            "model_name": job.model_name[:250],
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
    # A user's stop, a spot reclaim or a timeout: checkpoint, then exit (_stop_requested).
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
            c.push,
            c.job_repository,
            job,
            c.job_records,
            mlflow,
            artifacts=c.artifacts,
            device=device_probe(),  # GPU figures in progress messages, where measured
        )

        def fail(reason: str, code: int) -> int:
            """End the run failed: the reason in the log, on the job (what the Batch
            handler reports, rather than Batch's generic one) and to its followers."""
            log.error(reason)
            reporter.on_error(reason)
            c.job_repository.update(job.id, {"error": reason})
            mlflow.end_run(status="FAILED")
            return code

        try:
            # The catalogue's check, again: the job item may predate the API's, or not have
            # come through the API; starting weights resolve only in the operator's folder.
            spec = JobSpec.from_job(
                job,
                weights_dir=settings.weights_dir,
                checkpoint_interval_s=settings.checkpoint_interval_s,
            )
        except (CrucibleError, Refused) as exc:
            return fail(f"The job cannot run: {exc}", 1)
        mlflow.log_params(spec.knobs.params())  # seed 002's knobs, as this run uses them
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
            given = resources()  # what this run was given (seed 003's workflow resources)
            c.job_repository.update(job.id, {"resources": given})
            reporter.log(describe(given))
            train = trainer(job.framework)
            checkpoints = Checkpoints(c.artifacts, job.id, work, reporter)
            attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
            if attempt > 1 and not spec.resume_from and c.artifacts.exists(checkpoints.last):
                # Batch retrying an interrupted attempt: go on from its last checkpoint.
                spec = dataclasses.replace(spec, resume_from=checkpoints.last)
                reporter.log(f"Attempt {attempt}: resuming from {checkpoints.last}")
            outcome = train(spec, data, Run(spec, reporter, checkpoints, stop))
            checkpoints.flush()
            reporter.log(f"Training {outcome}")
        except Exception as exc:
            log.exception("training failed")
            return fail(f"{type(exc).__name__}: {exc}", 1)
        if outcome == "stopped" and not _stop_requested(c.job_repository, job.id):
            reason = (
                "Interrupted without a stop request (SIGTERM: a spot reclaim or a timeout); "
                f"the last checkpoint is {checkpoints.last}, a retry or a new job can resume from it"
            )
            return fail(reason, INTERRUPTED)
        bucket = settings.names.artifacts_bucket
        mlflow.log_dict(
            {
                "last": f"s3://{bucket}/{checkpoints.last}",
                "best": f"s3://{bucket}/{checkpoints.best}",
            },
            "checkpoints.json",
        )
        if reporter.last_validation:
            mlflow.log_dict(reporter.last_validation, "validation.json")
        mlflow.end_run(status="KILLED" if outcome == "stopped" else "FINISHED")
    return 0


def _stop_requested(jobs: JobRepository, job_id: int) -> bool:
    """Whether the job was asked to stop (the API moves it to ``stopping`` before the
    runner's SIGTERM); any other SIGTERM is an interruption, not an ending."""
    try:
        job = jobs.get(job_id)
    except Exception:
        log.exception("could not read job %s's status", job_id)
        return False
    return job is not None and job.status == "stopping"
