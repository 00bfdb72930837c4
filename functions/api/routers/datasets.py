"""Seed 002's /datasets (multipart create, list, detail) and seed 003's upload and validate."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import Cursor, ErrorOut
from functions.api.routers.datasets_schemas import (
    DatasetListOut,
    DatasetOut,
    DatasetPresignIn,
    DatasetPresignOut,
    DatasetValidateIn,
)

router = APIRouter(prefix="/datasets", tags=["datasets"])
_errors = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 413: {"model": ErrorOut}}
FORMAT_HELP = "auto, imagefolder, yolo, coco or ljspeech"


@router.post("", status_code=201, response_model=DatasetOut, responses=_errors)
def create(
    principal: CurrentUser,
    c: Services,
    files: Annotated[
        list[UploadFile], File(description="one zip, or the files with relative paths")
    ],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    description: Annotated[str | None, Form(max_length=2000)] = None,
    format: Annotated[str, Form(description=FORMAT_HELP)] = "auto",
    visibility: Annotated[Literal["private", "public"], Form()] = "private",
    project_id: Annotated[int | None, Form(description="a project of yours")] = None,
) -> DatasetOut:
    d = c.datasets.upload(
        principal,
        [(f.filename, f.file) for f in files],
        name=name,
        description=description,
        fmt=format,
        visibility=visibility,
        project_id=project_id,
    )
    return DatasetOut.of(d)


@router.post("/upload", status_code=201, response_model=DatasetOut, responses=_errors)
def upload(
    principal: CurrentUser,
    c: Services,
    file: Annotated[UploadFile, File(description="the dataset zip")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    format: Annotated[str, Form(description=FORMAT_HELP)] = "auto",
    description: Annotated[str | None, Form(max_length=2000)] = None,
) -> DatasetOut:
    """Seed 003's single-file upload."""
    d = c.datasets.upload(
        principal, [(file.filename, file.file)], name=name, description=description, fmt=format
    )
    return DatasetOut.of(d)


@router.post("/presign", status_code=201, response_model=DatasetPresignOut, responses=_errors)
def presign(body: DatasetPresignIn, principal: CurrentUser, c: Services) -> DatasetPresignOut:
    """A presigned S3 POST for a large zip; its arrival is inspected by itself."""
    return DatasetPresignOut(
        **c.datasets.presign(principal, **body.model_dump(exclude={"format"}), fmt=body.format)
    )


@router.get("", response_model=DatasetListOut, responses={400: {"model": ErrorOut}})
def list_datasets(
    principal: CurrentUser,
    c: Services,
    project_id: int | None = None,
    format: str | None = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    page: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="seed 003's 1-based page; overrides skip")
    ] = None,
    cursor: Cursor = None,
) -> DatasetListOut:
    """Your datasets (an admin's: everyone's), newest first."""
    if page is not None:
        skip = (page - 1) * limit
    found = c.datasets.page(
        principal, skip=skip, limit=limit, cursor=cursor, project_id=project_id, fmt=format
    )
    return DatasetListOut(
        datasets=[DatasetOut.of(d) for d in found.items],
        total=found.total,
        skip=skip,
        limit=limit,
        next_cursor=found.next_cursor,
    )


@router.get("/{dataset_id}", response_model=DatasetOut, responses=_errors)
def get(dataset_id: str, principal: CurrentUser, c: Services) -> DatasetOut:
    """The dataset with its whole class distribution (listings carry a summary)."""
    return DatasetOut.of(c.datasets.detail(principal, dataset_id))


@router.post("/{dataset_id}/validate", responses=_errors)
def validate(dataset_id: str, body: DatasetValidateIn, principal: CurrentUser, c: Services) -> dict:
    return c.datasets.validate(principal, dataset_id, body.expected_format, body.expected_classes)
