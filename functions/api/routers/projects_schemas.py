"""Seed 003's project shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.models import Project


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class ProjectOut(BaseModel):
    project_id: int
    id: int
    name: str
    description: str | None
    owner_id: int
    workflow_count: int = Field(0, description="its owner's training jobs (workflows) in it")
    dataset_count: int = Field(0, description="its owner's datasets in it")
    created_at: datetime

    @classmethod
    def of(cls, p: Project, counts: tuple[int, int] = (0, 0)) -> ProjectOut:
        workflows, datasets = counts
        return cls(
            project_id=p.id, workflow_count=workflows, dataset_count=datasets, **p.model_dump()
        )


class ProjectListOut(BaseModel):
    projects: list[ProjectOut]
    total: int
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page"
    )
