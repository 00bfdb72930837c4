"""Request and response models of seed 004's leaderboard API (functions/api/routers/leaderboard.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import Evaluation


class SubmissionOut(BaseModel):
    submission_id: str


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_class: str | None = Field(
        None, description="small (30 min) or medium (60 min) by default; the operator's classes"
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    submission_id: str = Field(min_length=1, max_length=64)
    config: JobConfig = Field(default_factory=JobConfig)


class JobCreated(BaseModel):
    job_id: str
    status: str


class JobStatusOut(BaseModel):
    job_id: str
    submission_id: str
    user_id: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    run_id: str | None
    resource_class: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rerun_of: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: Evaluation) -> JobStatusOut:
        return cls(
            job_id=job.id,
            submission_id=job.submission_id,
            user_id=str(job.owner_id),
            status=job.status,
            run_id=job.run_id,
            resource_class=job.resource_class,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            rerun_of=job.rerun_of,
            error=job.error if job.status in ("failed", "cancelled") else None,
        )


class JobListOut(BaseModel):
    jobs: list[JobStatusOut]


class ResultsOut(BaseModel):
    job_id: str
    status: str
    run_id: str
    mlflow_ui_link: str | None
    mlflow_rest_link: str | None
    params: dict[str, Any]
    metrics: dict[str, float]


class LeaderboardEntry(BaseModel):
    rank: int
    score: float
    job_id: str
    submission_id: str
    user_id: int
    run_id: str | None
    params: dict[str, Any]
    metrics: dict[str, float]
    metadata: dict[str, Any]
    finished_at: str | None
    mlflow_ui_link: str | None
    mlflow_rest_link: str | None


class LeaderboardOut(BaseModel):
    leaderboard: str
    metric: str | None
    order: Literal["desc", "asc"]
    best_per_user: bool
    metrics: list[str] = Field(description="every metric the board's runs reported")
    total: int
    entries: list[LeaderboardEntry]
