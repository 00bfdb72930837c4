"""Predictions from a job's checkpoint: images (timm, ultralytics) and speech (torchaudio).

``predict(request, artifacts)`` is what the inference Lambda (lambda_handler.py) and the
local stack's in-process predictor run. The request is ``{"checkpoint": <artifacts
key>, "data": <base64>, "filename": str, "options": {...}}``; the answer is the
prediction, or ``{"error": {"status": 400, "detail": ...}}`` for input that cannot be
predicted on, or ``{"error": {"status": 409, "code": "CHECKPOINT_UNUSABLE", ...}}`` for
a checkpoint that cannot be loaded. Loaded models stay cached by key and ETag.

Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain data
only, so a file that pickles anything else is refused, never unpickled; every framework's
checkpoint is a state dict with its metadata (``framework``, ``model_name``, ...).
"""

from __future__ import annotations

import base64
import logging
import pickle
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from crucible_trainer.frameworks import MODULES, framework
from crucible_trainer.inputs import BadInput
from shared.ports import ObjectStore

log = logging.getLogger("crucible.predict")
_lock = threading.Lock()
_models: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE = 4


class UnusableCheckpoint(Exception):
    """The checkpoint is not one this platform wrote (answered as 409)."""


def predict(request: dict[str, Any], artifacts: ObjectStore) -> dict[str, Any]:
    try:
        data = base64.b64decode(request["data"])
        model = _load(artifacts, request["checkpoint"], request.get("etag"))
        t0 = time.perf_counter()
        out = model.predict(data, request.get("filename") or "", request.get("options") or {})
        return {**out, "inference_time_ms": round((time.perf_counter() - t0) * 1000, 2)}
    except BadInput as exc:
        return {"error": {"status": 400, "detail": str(exc)}}
    except UnusableCheckpoint as exc:
        return {"error": {"status": 409, "code": "CHECKPOINT_UNUSABLE", "detail": str(exc)}}


def _load(artifacts: ObjectStore, key: str, etag: str | None = None) -> Any:
    """The model of ``key`` at version ``etag`` (the caller's HEAD of it, else ours)."""
    etag = etag or artifacts.etag(key)
    with _lock:
        if (key, etag) in _models:
            _models.move_to_end((key, etag))
            return _models[key, etag]
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model.pt"
            artifacts.download(key, str(local))
            model = _model(local, key)
        _models[key, etag] = model
        while len(_models) > _CACHE:
            _models.popitem(last=False)
        return model


def _model(path: Path, key: str) -> Any:
    """The framework's model for the checkpoint at ``path``, or :class:`UnusableCheckpoint`."""
    import torch

    refused = (
        "The job's checkpoint cannot be used for predictions: it is not a checkpoint this "
        "platform wrote (or one from before checkpoints were plain state dicts); train the "
        "job again to get one"
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        log.warning("refused checkpoint %s: %s", key, exc)
        raise UnusableCheckpoint(refused) from None
    if not isinstance(state, dict) or state.get("framework") not in MODULES:
        log.warning("refused checkpoint %s: no known framework", key)
        raise UnusableCheckpoint(refused)
    try:
        return framework(state["framework"]).Model(state)
    except Exception as exc:  # a malformed state: missing keys, wrong shapes, unknown model
        log.warning("refused checkpoint %s: %s: %s", key, type(exc).__name__, exc)
        raise UnusableCheckpoint(refused) from None
