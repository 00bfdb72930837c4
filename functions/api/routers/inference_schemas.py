"""Seed 003's inference shapes: an image (inline or by URL), predictions, batches."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ImageIn(BaseModel):
    """One image: ``image_base64`` (plain base64, or a ``data:image/...;base64,`` URL) or
    ``image_url`` (``https://``, fetched from public addresses only; or
    ``s3://<uploads bucket>/<key>`` of one of your own uploads). Exactly one."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(default=None, min_length=1)
    image_url: str | None = Field(default=None, min_length=1, max_length=2048)

    @model_validator(mode="after")
    def _one(self) -> ImageIn:
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("send exactly one of image_base64 and image_url")
        return self

    def image(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Options(BaseModel):
    """What the model answers with: at most ``top_k`` predictions, each at least
    ``confidence_threshold`` (by default every class for a classifier, boxes of 0.25 and
    more for a detector)."""

    top_k: int | None = Field(default=None, ge=1, le=1000)
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    def options(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("top_k", self.top_k), ("confidence_threshold", self.confidence_threshold))
            if v is not None
        }


class PredictIn(ImageIn, Options):
    pass


class BatchIn(Options):
    model_config = ConfigDict(extra="forbid")

    images: list[ImageIn] = Field(
        min_length=1, description="At most CRUCIBLE_MAX_BATCH_IMAGES (20 by default)"
    )


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    confidence: float
    class_id: int
    bbox: list[float] | None = Field(
        default=None, description="A detector's box: x1, y1, x2, y2 in pixels"
    )


class PredictOut(BaseModel):
    predictions: list[Prediction]
    inference_time_ms: int
    model_version: str = Field(description="<workflow id>_<best|last>_<checkpoint version>")
    task_type: str | None = None
    model_name: str | None = None


class BatchAccepted(BaseModel):
    job_id: str
    workflow_id: str
    status: Literal["processing"]
    total_images: int
    estimated_completion_time: str
    model_version: str


class ImageError(BaseModel):
    code: str
    message: str


class BatchResult(BaseModel):
    """One image's predictions, or its own error."""

    model_config = ConfigDict(populate_by_name=True)

    index: int = Field(description="The image's place in the request's images, from 0")
    image_url: str | None = None
    predictions: list[Prediction] | None = None
    inference_time_ms: int | None = None
    task_type: str | None = None
    model_name: str | None = None
    error: ImageError | None = None


class BatchOut(BaseModel):
    job_id: str
    workflow_id: str
    status: Literal["processing", "completed", "failed"] = Field(
        description="failed: the batch did not finish within an hour (its handler kept failing)"
    )
    error: str | None = None
    total_images: int
    completed_images: int = Field(description="Images done: predicted or failed")
    failed_images: int
    results: list[BatchResult]
    model_version: str
    created_at: str
    completed_at: str | None = None
    estimated_completion_time: str | None = None
