"""Seed 002's training job shapes, and the callback external trainers send."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from shared import keys
from shared.models import TrainingJob


class TrainingConfigIn(BaseModel):
    framework: str
    model_name: str = Field(min_length=1, max_length=100)
    task_type: str | None = None
    dataset_id: str
    dataset_format: str | None = Field(
        default=None, max_length=50, description="The dataset's format; dice or auto: any"
    )
    num_classes: int | None = Field(default=None, ge=1)
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(16, ge=1, le=4096)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    advanced_config: dict = Field(default_factory=dict)


class TrainingJobIn(BaseModel):
    """Seed 002's create request."""

    session_id: int | None = None
    project_id: int | None = None
    experiment_name: str | None = Field(default=None, max_length=200)
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)
    config: TrainingConfigIn

    def meta(self) -> dict:
        """What the job keeps of the request besides its config."""
        return self.model_dump(
            include={"session_id", "project_id", "experiment_name", "tags", "notes"}
        )


class TrainingJobOut(BaseModel):
    id: int
    session_id: int | None = None
    project_id: int | None
    project_name: str | None = Field(
        default=None, description="The project's name when the job was created"
    )
    experiment_name: str | None
    tags: list[str] = Field(default_factory=list)
    notes: str | None = None
    framework: str
    model_name: str
    task_type: str
    dataset_id: str | None
    dataset_path: str | None = Field(default=None, description="The dataset the job trains on")
    dataset_format: str | None = Field(
        default=None, description="The dataset's format (as ingestion found it)"
    )
    num_classes: int | None = Field(
        default=None, description="The dataset's classes, which the model is built with"
    )
    output_dir: str = Field(
        description="Where the job's checkpoints are kept (a key prefix in the artifacts bucket)"
    )
    epochs: int
    batch_size: int
    learning_rate: float
    advanced_config: dict = Field(
        default_factory=dict,
        description="As sent, plus resume_from (the checkpoint it continues from) once started",
    )
    status: str
    primary_metric: str | None
    primary_metric_mode: str
    current_epoch: int
    total_epochs: int
    mlflow_run_id: str | None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, job: TrainingJob) -> TrainingJobOut:
        return cls.model_validate(
            {**job.model_dump(), "output_dir": keys.checkpoints_prefix(job.id)}
        )


class CallbackIn(BaseModel):
    job_id: int
    event: str
    data: dict = {}


class CheckpointOut(BaseModel):
    name: Literal["best", "last"] = Field(
        description="best: the best validation so far; last: the latest epoch"
    )
    path: str = Field(
        description="its key in the artifacts store (a resume or a prediction names it)"
    )
    size_bytes: int
    etag: str = Field(description="changes whenever the checkpoint is replaced")
