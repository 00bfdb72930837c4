"""Seed 003's inference: one image now, or a batch later (shared/services/inference.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import WARMING_UP, ErrorOut
from functions.api.routers.inference_schemas import (
    BatchAccepted,
    BatchIn,
    BatchOut,
    PredictIn,
    PredictOut,
)

router = APIRouter(prefix="/inference", tags=["inference"])
WorkflowId = Annotated[str, Path(max_length=40, description="The workflow's id (<n> or wf_<n>)")]
_errors = {
    400: {"model": ErrorOut, "description": "Not an image, a URL that may not be fetched, ..."},
    404: {"model": ErrorOut, "description": "No such workflow (or batch) of yours"},
    409: {"model": ErrorOut, "description": "The workflow has no trained model yet"},
    413: {"model": ErrorOut, "description": "An image over CRUCIBLE_MAX_INFERENCE_BYTES"},
}


@router.post(
    "/{workflow_id}/predict",
    response_model=PredictOut,
    response_model_exclude_none=True,
    responses={**_errors, 503: WARMING_UP},
)
def predict(workflow_id: WorkflowId, body: PredictIn, principal: CurrentUser, c: Services) -> dict:
    """Predict on one image with the workflow's model (its best, else last, checkpoint):
    a classifier's classes by confidence, or a detector's boxes. ``image_url`` is fetched
    over https from public addresses only, within CRUCIBLE_URL_FETCH_TIMEOUT_S."""
    return c.inference.predict(principal, workflow_id, body.image(), body.options())


@router.post(
    "/{workflow_id}/batch",
    status_code=202,
    response_model=BatchAccepted,
    responses=_errors,
)
def batch(workflow_id: WorkflowId, body: BatchIn, principal: CurrentUser, c: Services) -> dict:
    """Start predicting on up to CRUCIBLE_MAX_BATCH_IMAGES images: every image is checked
    first (a refused batch stores nothing), then the batch runs asynchronously; read it
    with ``GET /inference/{workflow_id}/batch/{job_id}``."""
    images = [image.image() for image in body.images]
    return c.inference.submit_batch(principal, workflow_id, images, body.options())


@router.get(
    "/{workflow_id}/batch/{job_id}",
    response_model=BatchOut,
    response_model_exclude_none=True,
    responses={404: _errors[404]},
)
def batch_status(
    workflow_id: WorkflowId,
    job_id: Annotated[str, Path(max_length=64)],
    principal: CurrentUser,
    c: Services,
) -> dict:
    """A batch's status and, image by image, its predictions or its error."""
    return c.inference.batch_status(principal, workflow_id, job_id)
