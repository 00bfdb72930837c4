"""Dataset shapes: upload, presign, list, detail and validate."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.models import Dataset

# The stored dataset's fields the API shows as they are.
_SHOWN = {
    "id",
    "name",
    "description",
    "format",
    "visibility",
    "project_id",
    "status",
    "error",
    "file_count",
    "total_size_bytes",
    "num_classes",
    "class_distribution",
    "created_at",
    "updated_at",
}


class DatasetOut(BaseModel):
    """Seed 002's dataset (with seed 003's ``dataset_id``, ``status`` and ``statistics``)."""

    id: str
    dataset_id: str
    name: str
    description: str | None
    format: str
    visibility: str
    project_id: int | None
    status: str
    error: str | None = None
    file_count: int
    total_size_bytes: int
    size_mb: float
    num_classes: int
    class_distribution: dict[str, int]
    statistics: dict
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Dataset) -> DatasetOut:
        stats = {
            "total_images": d.file_count if d.format != "ljspeech" else 0,
            **{f"{k}_images": v for k, v in d.splits.items()},
            "classes": [{"name": k, "count": v} for k, v in d.class_distribution.items()],
            **d.extra,
        }
        return cls(
            dataset_id=d.id,
            size_mb=round(d.archive_bytes / 2**20, 2),
            statistics=stats,
            **d.model_dump(include=_SHOWN),
        )


class DatasetListOut(BaseModel):
    datasets: list[DatasetOut]
    total: int
    skip: int
    limit: int
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page"
    )


class DatasetPresignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    size: int = Field(gt=0)
    format: str = "auto"
    description: str | None = Field(default=None, max_length=2000)
    visibility: Literal["private", "public"] = "private"
    project_id: int | None = None


class DatasetPresignOut(BaseModel):
    dataset_id: str
    key: str
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


class DatasetValidateIn(BaseModel):
    expected_format: str | None = None
    expected_classes: int | None = Field(default=None, ge=0)
