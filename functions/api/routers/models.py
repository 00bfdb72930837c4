"""Seed 003's model catalogue (``/models``, ``/models/{model_id}``) and the internal
``/internal/models/prepare``, all read from shared/catalogue.py (the timm part generated
from timm's registry: nothing here imports a framework). Seed 002's ``/models/list`` is
in training.py, from the same catalogue."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from functions.api.deps import CurrentUser, InternalCaller, Services
from functions.api.routers.common import ErrorOut
from functions.api.routers.models_schemas import (
    ModelDetailOut,
    ModelListOut,
    ModelOut,
    PrepareIn,
    PrepareOut,
)
from shared import catalogue
from shared.errors import InvalidInput, NotFound

router = APIRouter(tags=["models"])
internal = APIRouter(prefix="/internal", tags=["internal"])
routers = (router, internal)
_errors = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}}

_CHAT = {
    "image_classification": "Train {model} to classify 3 kinds of cats",
    "object_detection": "Train a {model} detector for 2 kinds of fruit",
    "speech_recognition": "Train a {model} speech recognizer on my LJSpeech dataset",
}


def example_usage(rec: dict[str, Any]) -> str:
    """How to train it here: a ``POST /api/v1/workflows`` body, and a chat message."""
    task = rec["task_types"][0]
    body = {
        "name": f"{rec['model_id']} {catalogue.SEED003_TASKS.get(task, task)}",
        "config": {
            "task_type": catalogue.SEED003_TASKS.get(task, task),
            "model": rec["model_id"],
            "dataset_id": "<your dataset id>",
            "hyperparameters": {"epochs": 10, "batch_size": 16, "learning_rate": 0.001},
        },
    }
    if rec["fixed_input_size"]:  # it takes only its own input size
        body["config"]["hyperparameters"]["image_size"] = rec["input_size"][0]
    chat = _CHAT.get(task, "Train {model}").format(model=rec["model_id"])
    return (
        f"POST /api/v1/workflows\n{json.dumps(body, indent=2)}\n\n"
        f'or in a chat (POST /api/v1/chat/message): "{chat}"'
    )


@router.get("/models", response_model=ModelListOut, responses=_errors)
def list_models(
    _: CurrentUser,
    search: Annotated[
        str | None, Query(max_length=100, description="In the name, family or description")
    ] = None,
    task_type: Annotated[
        str | None,
        Query(max_length=50, description="classification, detection, segmentation, ..."),
    ] = None,
    framework: Annotated[
        str | None, Query(max_length=50, description="timm, ultralytics, torchaudio")
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ModelListOut:
    """What trains here, featured models first; ``search`` ranks exact names, then
    prefixes, then matches anywhere (case and punctuation ignored)."""
    found = catalogue.search_models(search, task_type, framework)
    rows = found[(page - 1) * limit : page * limit]
    return ModelListOut(
        models=[ModelOut.of(r) for r in rows],
        total=len(found),
        page=page,
        limit=limit,
        has_next=page * limit < len(found),
    )


@router.get("/models/{model_id}", response_model=ModelDetailOut, responses=_errors)
def get_model(
    _: CurrentUser, model_id: Annotated[str, Path(min_length=1, max_length=200)]
) -> ModelDetailOut:
    """One model: input size, parameter count, how to train it, where it is documented."""
    rec = catalogue.get_model(model_id)
    if rec is None:
        raise NotFound(f"Model '{model_id[:80]}' not found: GET /api/v1/models lists them")
    return ModelDetailOut.of(rec, example_usage(rec))


@internal.post(
    "/models/prepare",
    response_model=PrepareOut,
    responses={**_errors, 429: {"model": ErrorOut}},
)
def prepare_model(body: PrepareIn, c: Services, _: InternalCaller) -> PrepareOut:
    """For the orchestrator, before a workflow trains: what the catalogue knows of the
    model, and whether starting weights it names are in the operator's weights directory.
    Nothing is downloaded: models build from their configuration."""
    name = catalogue.canonical_name(body.model_name)
    if name is None:
        raise catalogue.unknown_model(body.model_name, field="model_name")
    rec = catalogue.get_model(name)
    assert rec is not None
    task = catalogue.catalogue_task(body.task_type) or rec["task_types"][0]
    if task not in rec["task_types"]:
        raise InvalidInput(
            f"{rec['model_id']} trains {', '.join(catalogue.seed003_tasks(rec['task_types']))}",
            field="task_type",
        )
    cfg = body.config
    advanced = cfg.get("advanced_config") if isinstance(cfg.get("advanced_config"), dict) else {}
    requested = cfg.get("weights") or advanced.get("weights") or None
    catalogue.check_model(rec["framework"], task, name, {"weights": requested})
    weights = catalogue.operator_weights(
        rec["framework"], rec["model_id"], c.settings.weights_dir, requested
    )
    if requested is None:
        status, message = "ready", f"{name} builds from its configuration; nothing to download"
    elif not weights["directory_configured"]:
        status = "weights_unverified"
        message = (
            f"No weights directory is configured in this process: the trainer checks "
            f"'{requested}' in its own when the job starts"
        )
    elif weights["requested"]["available"]:
        status, message = "ready", f"{name} starts from the operator's '{requested}'"
    else:
        status = "weights_unavailable"
        message = (
            f"'{requested}' is not in the operator's weights directory: ask the operator, "
            "or leave weights out to train from scratch"
        )
    return PrepareOut(
        model_name=name,
        model_id=rec["model_id"],
        framework=rec["framework"],
        task_type=catalogue.SEED003_TASKS.get(task, task),
        training_task_type=task,
        status=status,
        input_size=rec["input_size"],
        fixed_input_size=rec["fixed_input_size"],
        parameters=rec["parameters"],
        parameter_count=rec["parameter_count"],
        weights=weights,
        message=message,
    )
