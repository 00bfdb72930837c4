"""Seed 000's ASR training API, at its own root paths (not under /api/v1): one run at a
time per user, named by model and dataset; progress on /ws in seed 000's messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import WARMING_UP, ErrorOut
from functions.api.routers.seed000_schemas import TrainStart
from shared.errors import InvalidInput

router = APIRouter(tags=["seed 000: ASR"])


@router.post(
    "/train/start", status_code=202, responses={400: {"model": ErrorOut}, 409: {"model": ErrorOut}}
)
def train_start(body: TrainStart, principal: CurrentUser, c: Services) -> dict:
    """Start a run: one at a time per user, taken atomically (409 "Training is already in
    progress."); it also counts against the cap on active jobs (409 ACTIVE_JOB_LIMIT)."""
    c.training.start_asr(principal, body.model_name, body.dataset_name)
    return {"status": "Training started in background."}


@router.post("/train/stop", responses={404: {"model": ErrorOut}})
def train_stop(principal: CurrentUser, c: Services) -> dict:
    c.training.stop_asr(principal)
    return {"status": "Stop signal sent to training process."}


@router.post(
    "/inference",
    responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 503: WARMING_UP},
)
def inference(
    principal: CurrentUser, c: Services, file: Annotated[UploadFile | None, File()] = None
) -> dict:
    """Transcribe an audio file (WAV, FLAC, ...) with your latest ASR checkpoint."""
    if file is None:
        raise InvalidInput("No file was provided: send it as multipart field 'file'", field="file")
    out = c.training.transcribe(principal, file.file.read(), file.filename or "")
    return {"transcription": out["transcription"]}


@router.get("/config")
def config(principal: CurrentUser, c: Services) -> dict:
    """Models that train here, your LJSpeech-style datasets, and the training defaults."""
    from shared.catalogue import ASR_DEFAULTS, FRAMEWORKS

    return {
        "available_models": list(FRAMEWORKS["torchaudio"]["models"]),
        "available_datasets": [d.name for d in c.training.asr_datasets(principal)],
        "training_config": ASR_DEFAULTS,
    }
