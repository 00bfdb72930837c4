"""Seed 001's audio file, upload and analysis shapes, with the direct-to-S3 upload ones."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from functions.api.routers.tags_schemas import TagOut
from shared.models import AudioFile, Tag


class AudioFileOut(BaseModel):
    """Seed 001's AudioFile (plus channels, format and analysis progress)."""

    id: int
    user_id: int
    filename: str
    original_filename: str
    file_path: str
    file_size: int
    sample_rate: int
    duration: float
    channels: int
    format: str
    recording_start_time: datetime | None
    status: str
    progress: int
    error: str | None = None
    uploaded_at: datetime
    analyzed_at: datetime | None = None
    tags: list[TagOut]

    @classmethod
    def of(cls, f: AudioFile, tags: list[Tag]) -> AudioFileOut:
        return cls(
            user_id=f.owner_id,
            file_path=f.key,
            tags=[TagOut.of(t) for t in tags],
            **f.model_dump(exclude={"owner_id", "key", "tags"}),
        )


class UploadOut(BaseModel):
    message: str
    file: AudioFileOut


class UploadError(BaseModel):
    filename: str | None
    detail: str
    code: str


class BatchUploadOut(BaseModel):
    message: str
    files: list[AudioFileOut]
    errors: list[UploadError] | None


class AudioFileListOut(BaseModel):
    total: int
    files: list[AudioFileOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page"
    )


class AudioFilePatch(BaseModel):
    recording_start_time: datetime | None = None
    original_filename: str | None = Field(default=None, min_length=1, max_length=200)
    status: Literal["uploaded", "processing", "completed", "failed"] | None = None


class DirectUploadIn(BaseModel):
    filename: str = Field(min_length=1, max_length=200)
    size: int = Field(
        gt=0,
        description="bytes: a presigned POST may not exceed it; "
        "a multipart upload must hold exactly it",
    )
    content_type: str | None = Field(default=None, max_length=100)
    recording_start_time: datetime | None = None


class PresignedPostOut(BaseModel):
    file_id: int
    key: str
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


class PartUrl(BaseModel):
    part_number: int
    size: int = Field(description="bytes this part must hold: its URL is signed for them")
    url: str


class MultipartOut(BaseModel):
    file_id: int
    key: str
    upload_id: str
    part_size: int
    parts: list[PartUrl]
    expires_in: int


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1)


class MultipartCompleteIn(BaseModel):
    upload_id: str = Field(min_length=1)
    parts: list[CompletedPart] = Field(min_length=1)


class AnalysisStartOut(BaseModel):
    message: str
    task_id: str
    file_id: int


class AnalysisStatusOut(BaseModel):
    file_id: int
    status: str
    message: str | None
    progress: int
    task_id: str | None
    error: str | None = None


class FileTagsIn(BaseModel):
    tag_ids: list[int] = Field(max_length=100)
