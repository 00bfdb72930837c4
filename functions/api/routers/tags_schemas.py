"""Seed 001's tag shapes (audio files carry them too)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.models import Tag


class TagIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class TagOut(BaseModel):
    id: int
    name: str
    created_at: datetime

    @classmethod
    def of(cls, t: Tag) -> TagOut:
        return cls(id=t.id, name=t.name, created_at=t.created_at)


class TagListOut(BaseModel):
    total: int
    tags: list[TagOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page"
    )
