"""Predictions from a job's checkpoint: images (timm, ultralytics) and speech (torchaudio).

``predict(request, artifacts)`` is what the inference Lambda (lambda_handler.py) and the
local stack's in-process predictor run. The request is ``{"checkpoint": <artifacts
key>, "data": <base64>, "filename": str, "options": {...}}``; the answer is the
prediction, or ``{"error": {"status": 400, "detail": ...}}`` for input that cannot be
predicted on. Loaded models stay cached by key and ETag.
"""

from __future__ import annotations

import base64
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from crucible_trainer.frameworks import framework
from crucible_trainer.inputs import BadInput
from shared.ports import ObjectStore

_lock = threading.Lock()
_models: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE = 4


def predict(request: dict[str, Any], artifacts: ObjectStore) -> dict[str, Any]:
    try:
        data = base64.b64decode(request["data"])
        model = _load(artifacts, request["checkpoint"])
        t0 = time.perf_counter()
        out = model.predict(data, request.get("filename") or "", request.get("options") or {})
        return {**out, "inference_time_ms": round((time.perf_counter() - t0) * 1000, 2)}
    except BadInput as exc:
        return {"error": {"status": 400, "detail": str(exc)}}


def _load(artifacts: ObjectStore, key: str) -> Any:
    import torch

    etag = artifacts.etag(key)
    with _lock:
        if (key, etag) in _models:
            _models.move_to_end((key, etag))
            return _models[key, etag]
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model.pt"
            artifacts.download(key, str(local))
            if _is_ultralytics(local):
                model = framework("ultralytics").Model(local)
            else:
                state = torch.load(local, map_location="cpu", weights_only=False)
                model = framework(state["framework"]).Model(state)
        _models[key, etag] = model
        while len(_models) > _CACHE:
            _models.popitem(last=False)
        return model


def _is_ultralytics(path: Path) -> bool:
    """ultralytics checkpoints pickle its own classes; ours are plain dicts of tensors."""
    with zipfile.ZipFile(path) as zf:
        pickle = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return b"ultralytics." in zf.read(pickle)
