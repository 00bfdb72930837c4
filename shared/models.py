"""Domain models. Persisted shapes live in the adapters; these are what services
take and return."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.settings import Role

ROLE_RANK: dict[str, int] = {"user": 0, "researcher": 1, "admin": 2}


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    email: str
    role: Role = "user"
    full_name: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    password_hash: str = Field(default="", exclude=True, repr=False)
    plan: str = "free"  # seed 003's plan (shared/plans.py); an administrator changes it


class Principal(BaseModel):
    """Who is calling: a user authenticated by a JWT or by a static API token."""

    model_config = ConfigDict(frozen=True)

    user_id: int
    role: Role
    via: Literal["jwt", "api_token"] = "jwt"

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def can_read(self, owner_id: int, *, privileged: Role = "admin") -> bool:
        """Owners read their own resources; ``privileged`` roles and above read everyone's."""
        return owner_id == self.user_id or self.at_least(privileged)


class Project(BaseModel):
    id: int
    owner_id: int
    name: str
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Tag(BaseModel):
    id: int
    owner_id: int
    name: str
    created_at: datetime = Field(default_factory=utcnow)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    total: int
    items: list[T]


class Connection(BaseModel):
    """A WebSocket connection registered at $connect."""

    connection_id: str
    user_id: int
    role: Role
    connected_at: datetime = Field(default_factory=utcnow)


class Subscription(BaseModel):
    """A connection's interest in one topic, and the message format it expects."""

    connection_id: str
    topic: str
    user_id: int
    format: str = "crucible"


AnalysisStatus = Literal["uploaded", "processing", "completed", "failed"]


class AudioFile(BaseModel):
    """An uploaded recording and the state of its analysis (seed 001's AudioFile)."""

    id: int
    owner_id: int
    filename: str
    original_filename: str
    key: str
    file_size: int
    sample_rate: int
    duration: float
    channels: int = 1
    format: str
    content_type: str
    recording_start_time: datetime | None = None
    uploaded_at: datetime = Field(default_factory=utcnow)
    tags: list[int] = Field(default_factory=list)
    # analysis state
    status: AnalysisStatus = "uploaded"
    task_id: str | None = None
    progress: int = 0
    message: str | None = None
    error: str | None = None
    lease_until: float | None = None
    # the latest completed analysis (kept until another one completes)
    result_id: int | None = None
    result_prefix: str | None = None
    analyzed_at: datetime | None = None


class UploadIntent(BaseModel):
    """A presigned upload not yet arrived: who it is for and what they called it."""

    file_id: int
    owner_id: int
    key: str
    original_filename: str
    recording_start_time: datetime | None = None


JobStatus = Literal["pending", "queued", "running", "stopping", "completed", "failed", "stopped"]
# A job is active until it reaches one of its terminal states (the state machine that
# moves it is shared/services/jobs.py).
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "stopped"})
ACTIVE_STATUSES: frozenset[str] = frozenset({"pending", "queued", "running", "stopping"})


class TrainingJob(BaseModel):
    """A training run (seed 002's TrainingJob; seed 000's run and seed 003's workflow)."""

    id: int
    owner_id: int
    framework: str
    model_name: str
    task_type: str
    dataset_id: str | None = None
    project_id: int | None = None
    experiment_name: str | None = None
    description: str | None = None  # seed 003's workflow description
    # seed 002's: as the request said (session, tags, notes), and as the job found them
    # (its dataset's format and classes, its project's name) when it was created
    session_id: int | None = None
    tags: list[str] = Field(default_factory=list)
    notes: str | None = None
    num_classes: int | None = None
    dataset_format: str | None = None
    dataset_path: str | None = None
    project_name: str | None = None
    epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 1e-3
    advanced_config: dict = Field(default_factory=dict)
    status: JobStatus = "pending"
    primary_metric: str | None = None
    primary_metric_mode: Literal["max", "min"] = "max"
    current_epoch: int = 0
    total_epochs: int = 1
    mlflow_run_id: str | None = None
    runner_job_id: str | None = None
    attempt: int = 0  # its submissions so far (a start, a resume, a reconciler's resubmit)
    # (started, ended) of the runs before each resume: GPU hours count every run
    earlier_runs: list[tuple[datetime, datetime]] = Field(default_factory=list)
    error: str | None = None
    resources: dict = Field(default_factory=dict)  # what the trainer was given (its device)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None


class Dataset(BaseModel):
    """An uploaded dataset archive and what ingestion found in it (seeds 002 and 003)."""

    id: str
    owner_id: int
    name: str
    description: str | None = None
    format: str = "auto"
    visibility: Literal["private", "public"] = "private"
    project_id: int | None = None
    status: Literal["uploading", "processing", "ready", "failed"] = "processing"
    error: str | None = None
    key: str
    file_count: int = 0
    total_size_bytes: int = 0
    archive_bytes: int = 0
    num_classes: int = 0
    class_distribution: dict[str, int] = Field(default_factory=dict)
    splits: dict[str, int] = Field(default_factory=dict)
    extra: dict = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SubmissionFile(BaseModel):
    """One file of a submission as sent (an archive is unpacked by the evaluator)."""

    name: str
    size: int
    key: str  # where its bytes are kept (shared/keys.py)


class Submission(BaseModel):
    """Seed 004's submission: code a researcher sent, to be run by the evaluator."""

    id: str
    owner_id: int
    entrypoint: str  # a relative path in the unpacked tree, ending .py
    config_file: str  # a relative path in the unpacked tree, ending .yaml/.yml
    metadata: dict = Field(default_factory=dict)
    leaderboard: str = "default"
    files: list[SubmissionFile] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)  # every file of the unpacked tree
    total_bytes: int = 0
    created_at: datetime = Field(default_factory=utcnow)


EvaluationStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
EVALUATION_TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class Evaluation(BaseModel):
    """Seed 004's job: one run of a submission by the evaluator, and what it measured."""

    id: str
    owner_id: int
    submission_id: str
    leaderboard: str = "default"
    resource_class: str
    status: EvaluationStatus = "pending"
    error: str | None = None
    run_id: str | None = None  # the MLflow run
    experiment_id: str | None = None
    runner_job_id: str | None = None
    params: dict = Field(default_factory=dict)
    metrics: dict = Field(default_factory=dict)
    rerun_of: str | None = None
    deadline: float = 0.0  # epoch seconds: past it, the sweeper ends the job failed
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
