"""Seed 003's workflow shapes (POST/GET /workflows, metrics, logs, DELETE) and the
orchestrator's create-workflow body."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HyperparametersIn(BaseModel):
    """``epochs``, ``batch_size`` and ``learning_rate`` are the job's; any other (such as
    ``image_size``, ``weight_decay``, ``optimizer``) is passed to the trainer as an
    advanced setting (GET /training/config-schema lists each framework's)."""

    model_config = ConfigDict(extra="allow")

    epochs: int | None = Field(default=None, ge=1, le=1000, description="default 10")
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="default 16")
    learning_rate: float | None = Field(default=None, gt=0, le=1, description="default 0.001")


class DatasetRefIn(BaseModel):
    """The chat's ``training_config.dataset``."""

    model_config = ConfigDict(extra="allow")

    source: str | None = None
    dataset_id: str | None = None


class WorkflowConfigIn(BaseModel):
    """Seed 003's ``config`` (``model``, ``dataset_id``); the chat's ``training_config``
    (``model_name``, ``model_source``, ``dataset.dataset_id``) is taken as well."""

    model_config = ConfigDict(extra="allow")

    task_type: str | None = Field(
        default=None,
        description="classification, detection or speech_recognition (or the catalogue's "
        "image_classification, object_detection); default: the model's first",
    )
    model: str | None = Field(default=None, max_length=200, description="a name from GET /models")
    model_name: str | None = Field(default=None, max_length=200, description="same as model")
    framework: str | None = Field(
        default=None, description="timm, ultralytics or torchaudio; default: the model's"
    )
    model_source: str | None = Field(default=None, description="same as framework")
    dataset_id: str | None = Field(default=None, max_length=100, description="one of yours")
    dataset: DatasetRefIn | str | None = None
    num_classes: int | None = Field(default=None, ge=1, description="the dataset's classes rule")
    class_names: list[str] | None = Field(default=None, max_length=1000)
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    advanced_config: dict[str, Any] = Field(default_factory=dict)


class WorkflowIn(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    project_id: int | None = None
    config: WorkflowConfigIn


class OrchestratorWorkflowIn(BaseModel):
    """The seed's internal create-workflow: a workflow for ``user_id``."""

    experiment_name: str | None = Field(default=None, max_length=200)
    user_id: int
    training_config: WorkflowConfigIn
    description: str | None = Field(default=None, max_length=5000)
    project_id: int | None = None


class WorkflowCreatedOut(BaseModel):
    workflow_id: str
    name: str
    status: str
    created_at: datetime
    estimated_duration_minutes: int = Field(
        description="From your latest finished run of the same model, scaled to these "
        "epochs; without one, a rough pace per image of the dataset"
    )
    queue_position: int = Field(
        description="How many of your workflows were pending or training ahead of this one"
    )


class WorkflowSummaryOut(BaseModel):
    workflow_id: str
    name: str
    status: str
    progress: int = Field(description="percent of its epochs done")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None = None


class WorkflowListOut(BaseModel):
    workflows: list[WorkflowSummaryOut]
    total: int
    page: int
    limit: int
    has_next: bool


class ProgressOut(BaseModel):
    current_epoch: int
    total_epochs: int
    percentage: int


class WorkflowOut(BaseModel):
    workflow_id: str
    name: str
    description: str | None = None
    status: str
    progress: ProgressOut
    metrics: dict[str, float | int] = Field(description="the latest epoch's")
    resources: dict[str, Any] | None = Field(
        description="what its trainer was given, as it reported at its start: device "
        "(cpu or cuda), cpu_count, memory_gb and, with a GPU, gpu_type, gpu_count, "
        "gpu_memory_gb; null until then"
    )
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    estimated_completion_at: datetime | None
    config: dict[str, Any]
    project_id: int | None = None
    error: str | None = None
    cancel_requested: bool | None = Field(default=None, description="set while it stops")


class MetricsOut(BaseModel):
    workflow_id: str
    metrics: list[dict[str, Any]] = Field(
        description="one entry per epoch: timestamp, epoch, step (steps trained so far), "
        "and its metrics (loss: training; accuracy, val_loss, ...: validation)"
    )


class LogLineOut(BaseModel):
    timestamp: datetime | None
    level: str
    message: str


class LogsOut(BaseModel):
    workflow_id: str
    logs: list[LogLineOut]
    total_lines: int


class WorkflowCancelOut(BaseModel):
    workflow_id: str
    status: str
    cancelled_at: datetime | None
    cancel_requested: bool | None = None
    message: str | None = None
