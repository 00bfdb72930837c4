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
    created_at: datetime

    @classmethod
    def of(cls, p: Project) -> ProjectOut:
        return cls(project_id=p.id, **p.model_dump())


class ProjectListOut(BaseModel):
    projects: list[ProjectOut]
    total: int
