"""Request and response shapes of the API (the seeds' shapes, as supersets where they differ)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from shared.models import Project, Tag, User


def _email(value: str) -> str:
    """Validate with email-validator, imported on first use (it costs ~15 ms of cold start)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


EmailStr = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email"}),
]


class ErrorOut(BaseModel):
    detail: str
    code: str
    field: str | None = None


class RegisterIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    role: Literal["user", "researcher", "admin"] = "user"
    full_name: str | None = Field(default=None, max_length=200)


class LoginIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    role: str
    full_name: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme name
    expires_in: int


class LoginOut(TokenOut):
    user: UserOut


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1)


class AccessTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme name
    expires_in: int


class UserListOut(BaseModel):
    total: int
    users: list[UserOut]


class RoleIn(BaseModel):
    role: Literal["user", "researcher", "admin"]


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


class HealthOut(BaseModel):
    status: str
    stage: str
    version: str
    checks: dict[str, str] = {}


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


class AudioFilePatch(BaseModel):
    recording_start_time: datetime | None = None
    original_filename: str | None = Field(default=None, min_length=1, max_length=200)
    status: Literal["uploaded", "processing", "completed", "failed"] | None = None


class DirectUploadIn(BaseModel):
    filename: str = Field(min_length=1, max_length=200)
    size: int = Field(gt=0, description="bytes; the upload may not exceed it")
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
    def of(cls, d) -> DatasetOut:
        stats = {
            "total_images": d.file_count if d.format != "ljspeech" else 0,
            **{f"{k}_images": v for k, v in d.splits.items()},
            "classes": [{"name": k, "count": v} for k, v in d.class_distribution.items()],
            **d.extra,
        }
        return cls(
            dataset_id=d.id, size_mb=round(d.archive_bytes / 2**20, 2), statistics=stats,
            **d.model_dump(include={"id", "name", "description", "format", "visibility", "project_id", "status",
                                    "error", "file_count", "total_size_bytes", "num_classes",
                                    "class_distribution", "created_at", "updated_at"}),
        )  # fmt: skip


class DatasetListOut(BaseModel):
    datasets: list[DatasetOut]
    total: int
    skip: int
    limit: int


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


class TrainingConfigIn(BaseModel):
    framework: str
    model_name: str = Field(min_length=1, max_length=100)
    task_type: str | None = None
    dataset_id: str
    dataset_format: str | None = None
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
    tags: list[str] = Field(default_factory=list, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)
    config: TrainingConfigIn


class TrainingJobOut(BaseModel):
    id: int
    project_id: int | None
    experiment_name: str | None
    framework: str
    model_name: str
    task_type: str
    dataset_id: str | None
    epochs: int
    batch_size: int
    learning_rate: float
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
    def of(cls, job) -> TrainingJobOut:
        return cls.model_validate(job.model_dump())
