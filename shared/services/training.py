"""Seed 002's training jobs (and seed 003's workflows over them): create, start (with
resume from a checkpoint), stop, and read progress, metrics and logs.

A job's status moves only through shared/services/jobs.py. Starting queues it and
submits the trainer to the job runner (AWS Batch, or a local subprocess); the runner's
"Batch Job State Change" events move it on from there; stopping asks the runner to
SIGTERM it, and the trainer saves a last checkpoint before it exits.
"""

from __future__ import annotations

from typing import Any

from shared.errors import Conflict, InvalidInput, InvalidState, NotFound
from shared.models import Principal, TrainingJob, utcnow
from shared.ports import JobRunner
from shared.services.jobs import JobStates

# What each framework trains here, and its primary metric.
FRAMEWORKS: dict[str, dict[str, Any]] = {
    "timm": {
        "task_types": ("image_classification",),
        "primary_metric": ("accuracy", "max"),
        "formats": ("imagefolder",),
    },
}


class TrainingService:
    def __init__(self, states: JobStates, jobs: Any, records: Any, datasets: Any, artifacts: Any,
                 runner: Any) -> None:  # fmt: skip
        self.states = states
        self.jobs = jobs  # DynamoJobs
        self.records = records  # DynamoJobRecords
        self.datasets = datasets  # DatasetService
        self.artifacts = artifacts
        self._runner = runner  # a JobRunner, or a callable that builds one on first use

    @property
    def runner(self) -> JobRunner:
        if callable(self._runner) and not hasattr(self._runner, "submit"):
            self._runner = self._runner()
        return self._runner

    def get(self, actor: Principal, job_id: int) -> TrainingJob:
        job = self.jobs.get(job_id)
        if job is None or not actor.can_read(job.owner_id):
            raise NotFound("Training job not found", code="JOB_NOT_FOUND")
        return job

    def create(self, actor: Principal, cfg: dict[str, Any], meta: dict[str, Any]) -> TrainingJob:
        framework = cfg.get("framework")
        spec = FRAMEWORKS.get(framework or "")
        if spec is None:
            raise InvalidInput(
                f"framework must be one of {', '.join(FRAMEWORKS)}", field="config.framework"
            )
        task = cfg.get("task_type") or spec["task_types"][0]
        if task not in spec["task_types"]:
            raise InvalidInput(
                f"{framework} trains {', '.join(spec['task_types'])} here", field="config.task_type"
            )
        try:
            dataset = self.datasets.get(actor, str(cfg.get("dataset_id")))
        except NotFound:
            raise NotFound(
                "Dataset not found", field="config.dataset_id", code="DATASET_NOT_FOUND"
            ) from None
        if dataset.status != "ready":
            raise InvalidInput(f"The dataset is {dataset.status}", field="config.dataset_id")
        if dataset.format not in spec["formats"]:
            raise InvalidInput(f"{framework} needs a {' or '.join(spec['formats'])} dataset, not {dataset.format}",
                               field="config.dataset_id")  # fmt: skip
        metric, mode = spec["primary_metric"]
        epochs = int(cfg.get("epochs", 10))
        return self.jobs.create(TrainingJob(
            id=0, owner_id=actor.user_id, framework=framework, model_name=str(cfg["model_name"]), task_type=task,
            dataset_id=dataset.id, epochs=epochs, total_epochs=epochs, batch_size=int(cfg.get("batch_size", 16)),
            learning_rate=float(cfg.get("learning_rate", 1e-3)), advanced_config=dict(cfg.get("advanced_config") or {}),
            primary_metric=metric, primary_metric_mode=mode, **meta,
        ))  # fmt: skip

    def start(self, actor: Principal, job_id: int, *, checkpoint_path: str | None = None,
              resume: bool = False) -> TrainingJob:  # fmt: skip
        job = self.get(actor, job_id)
        if checkpoint_path or resume:
            key = checkpoint_path or f"jobs/{job.id}/checkpoints/last.pt"
            if not self.artifacts.exists(key):
                raise NotFound(
                    f"No checkpoint at {key}", field="checkpoint_path", code="CHECKPOINT_NOT_FOUND"
                )
            self.jobs.update(
                job.id, {"advanced_config": {**job.advanced_config, "resume_from": key}}
            )
        queued = self.states.advance(job.id, "queued", started_at=utcnow())
        if queued is None:
            raise InvalidState(f"A {job.status} job cannot be started", code="INVALID_STATUS")
        runner_id = self.runner.submit(str(job.id), job_type="trainer", queue="gpu")
        return self.jobs.update(job.id, {"runner_job_id": runner_id}) or queued

    def stop(self, actor: Principal, job_id: int) -> TrainingJob:
        job = self.get(actor, job_id)
        stopping = self.states.advance(job.id, "stopping")
        if stopping is None:
            raise Conflict(f"The job is {job.status}; only queued or running jobs can be stopped",
                           code="INVALID_STATUS")  # fmt: skip
        if job.runner_job_id:
            self.runner.terminate(job.runner_job_id, "Stopped by user")
        else:  # never submitted: nothing runs, so it is stopped now
            stopping = self.states.advance(job.id, "stopped") or stopping
        return stopping

    def metrics(self, actor: Principal, job_id: int, limit: int) -> list[dict[str, Any]]:
        self.get(actor, job_id)
        return self.records.metrics(job_id, limit)

    def logs(
        self, actor: Principal, job_id: int, limit: int, log_type: str | None
    ) -> list[dict[str, Any]]:
        self.get(actor, job_id)
        rows = self.records.logs(job_id, limit)
        return [r for r in rows if log_type is None or r.get("log_type") == log_type]
