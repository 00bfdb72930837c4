"""Seed 002's training routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from functions.api.deps import CurrentUser, InternalCaller, Services
from functions.api.routers.common import WARMING_UP, ErrorOut
from functions.api.routers.training_schemas import (
    CallbackIn,
    CheckpointOut,
    TrainingJobIn,
    TrainingJobOut,
)

router = APIRouter(prefix="/training", tags=["training"])
_errors = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@router.post("/jobs", status_code=201, response_model=TrainingJobOut, responses=_errors)
def create_job(body: TrainingJobIn, principal: CurrentUser, c: Services) -> TrainingJobOut:
    meta = body.meta()
    return TrainingJobOut.of(c.training.create(principal, body.config.model_dump(), meta))


@router.post("/jobs/{job_id}/start", responses={**_errors, 503: {"model": ErrorOut}})
def start_job(
    job_id: int,
    principal: CurrentUser,
    c: Services,
    checkpoint_path: str | None = None,
    resume: bool = False,
) -> dict:
    """Queue the job and submit its trainer. ``resume=true`` continues a stopped or failed
    job, this same job, from its last checkpoint, as a new attempt (409 INVALID_STATUS if
    it is not stopped or failed, 409 NO_CHECKPOINT if it saved none);
    ``checkpoint_path`` starts it from a checkpoint of another job of yours of the same
    model (``jobs/<id>/checkpoints/last.pt`` or ``best.pt``). A job whose submission
    failed (503 SUBMIT_FAILED, the job ``failed`` with the reason) may be started again.
    At most ``CRUCIBLE_MAX_ACTIVE_JOBS`` of your jobs may be active at once (409
    ACTIVE_JOB_LIMIT)."""
    job = c.training.start(principal, job_id, checkpoint_path=checkpoint_path, resume=resume)
    return {"id": job.id, "status": job.status, "started_at": job.started_at}


@router.get("/jobs/{job_id}", response_model=TrainingJobOut, responses=_errors)
def get_job(job_id: int, principal: CurrentUser, c: Services) -> TrainingJobOut:
    return TrainingJobOut.of(c.training.get(principal, job_id))


@router.get("/jobs/{job_id}/metrics", responses=_errors)
def job_metrics(
    job_id: int,
    principal: CurrentUser,
    c: Services,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict]:
    rows = c.training.metrics(principal, job_id, limit)
    return [
        {
            "id": r["epoch"],
            "job_id": job_id,
            "epoch": r["epoch"],
            "loss": r.get("loss"),
            "accuracy": r.get("accuracy"),
            "learning_rate": r.get("learning_rate"),
            "extra_metrics": {"val_loss": r.get("val_loss"), **r.get("extra_metrics", {})},
            "created_at": r.get("created_at"),
        }
        for r in rows
    ]


@router.get("/jobs/{job_id}/logs", responses=_errors)
def job_logs(
    job_id: int,
    principal: CurrentUser,
    c: Services,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    log_type: str | None = None,
) -> list[dict]:
    rows = c.training.logs(principal, job_id, limit, log_type)
    return [
        {
            "id": i + 1,
            "job_id": job_id,
            "log_type": r.get("log_type", "stdout"),
            "message": f"[{r['level']}] {r['message']}",
            "created_at": r["created_at"],
        }
        for i, r in enumerate(rows)
    ]


@router.get("/jobs/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=_errors)
def job_checkpoints(job_id: int, principal: CurrentUser, c: Services) -> list[dict]:
    """The job's stored checkpoints, best first (none before its first epoch ends)."""
    return c.training.checkpoints(principal, job_id)


@router.post("/stop/{job_id}", responses=_errors)
def stop_job(job_id: int, principal: CurrentUser, c: Services) -> dict:
    job = c.training.stop(principal, job_id)
    return {
        "job_id": job.id,
        "status": job.status,
        "message": "Stop signal sent; the job saves a checkpoint and stops",
    }


@router.get("/config-schema", responses=_errors)
def config_schema(framework: str, task_type: str | None = None) -> dict:
    """The advanced settings a framework takes here, with basic/standard/aggressive presets."""
    from shared.catalogue import config_schema as schema

    return schema(framework, task_type)


models = APIRouter(tags=["training"])


@models.get("/models/list")
def list_models(framework: str | None = None, task_type: str | None = None) -> dict:
    from shared.catalogue import list_models as models_for

    found = models_for(framework, task_type)
    return {"models": found, "total": len(found)}


@models.get("/validation/results/{job_id}", responses=_errors)
def validation_results(
    job_id: int,
    principal: CurrentUser,
    c: Services,
    epoch: Annotated[int | None, Query(ge=1, description="only this epoch's result")] = None,
) -> dict:
    """Per-epoch validation: metrics, per-class precision/recall/F1/support, confusion
    matrix. The per-class metrics and matrices in one answer are bounded (4 MiB, newest
    epochs first): an older result past that has ``details_omitted`` true, empty ones, and
    a ``details_url`` to fetch them (or ask for its ``epoch`` alone)."""
    return {
        "job_id": job_id,
        "results": c.training.validation_results(principal, job_id, epoch),
    }


@models.get("/validation/images/{validation_result_id}", responses=_errors)
def validation_images(
    validation_result_id: int,
    principal: CurrentUser,
    c: Services,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    is_correct: bool | None = None,
) -> dict:
    """Per-image results of one validation result (an ``id`` from /validation/results):
    truth, prediction, confidence and top-5; ``is_correct`` filters."""
    return c.training.validation_images(principal, validation_result_id, skip, limit, is_correct)


@models.post("/test-inference", responses={**_errors, 413: {"model": ErrorOut}, 503: WARMING_UP})
def predict_image(
    principal: CurrentUser,
    c: Services,
    training_job_id: Annotated[int, Form()],
    file: Annotated[UploadFile, File(description="an image; at most 4 MB")],
    confidence_threshold: Annotated[float, Form(ge=0.0, le=1.0)] = 0.25,
    top_k: Annotated[int, Form(ge=1, le=1000)] = 5,
) -> dict:
    """Predict on one image with the job's best (else last) checkpoint: top-k labels
    above the threshold for classifiers, boxes (``bbox`` x1, y1, x2, y2 in pixels) for
    detectors, and the model's time."""
    options = {"confidence_threshold": confidence_threshold, "top_k": top_k}
    return c.training.test_inference(
        principal, training_job_id, file.file.read(), file.filename or "", options
    )


internal = APIRouter(prefix="/internal", tags=["internal"])


@internal.post(
    "/training/callback",
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}, **_errors},
)
def training_callback(body: CallbackIn, c: Services, _: InternalCaller) -> dict:
    """For training services outside Crucible (seed 002): progress, epoch metrics, logs,
    checkpoints and completion for a job, authenticated by ``X-Internal-Auth``."""
    c.training.callback(body.job_id, body.event, body.data)
    return {"status": "received", "job_id": body.job_id}
