"""The job's MLflow run: one experiment per leaderboard, a run per job, started before
the submission runs (so the job knows its run early) and ended FINISHED or FAILED.

MLflow is the worker's: the submission never sees its tracking URI or credentials."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from shared.models import Evaluation, Submission
from shared.settings import Settings


def experiment_name(stage: str, leaderboard: str) -> str:
    return f"crucible-{stage}-leaderboard-{leaderboard}"


class Tracking:
    """``start`` -> ``finish(params, metrics)`` or ``fail()``."""

    def __init__(self, settings: Settings, work: Path) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        self.mlflow = mlflow
        self.uri = settings.mlflow_tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
        self.stage = settings.stage
        self.run: Any = None

    def start(self, job: Evaluation, sub: Submission) -> tuple[str, str]:
        """Start the job's run; returns (run id, experiment id)."""
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        name = experiment_name(self.stage, job.leaderboard)
        if self.uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
            # Artifacts beside the local database, not in the working directory's ./mlruns
            # (a tracking server, such as SageMaker's, keeps its own artifact store).
            store = Path(self.uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # made meanwhile
                mlflow.create_experiment(name, artifact_location=store.as_uri())
        experiment = mlflow.set_experiment(name)
        self.run = mlflow.start_run(
            run_name=f"job-{job.id}",
            tags={
                "submission_id": sub.id,
                "user_id": str(job.owner_id),
                "job_id": job.id,
                "resource_class": job.resource_class,
                "leaderboard": job.leaderboard,
                "entrypoint": sub.entrypoint[:250],
            },
        )
        return self.run.info.run_id, experiment.experiment_id

    def finish(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        if params:
            self.mlflow.log_params({k: str(v) for k, v in params.items()})
        self.mlflow.log_metrics(metrics)
        self.mlflow.end_run(status="FINISHED")
        self.run = None

    def end(self, status: str = "FAILED") -> None:
        """End the run (if one is open) as FAILED, or KILLED when the job was stopped."""
        if self.run is not None:
            self.run = None
            self.mlflow.end_run(status=status)
