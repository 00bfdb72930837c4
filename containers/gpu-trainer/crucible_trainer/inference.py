"""Predictions from a job's checkpoint: images (timm, ultralytics) and speech (torchaudio).

``handler(event)`` is the inference Lambda's entry (the trainer image, run by
``awslambdaric``) and what the local predictor calls in-process. The event is
``{"checkpoint": <artifacts key>, "data": <base64>, "filename": str, "options": {...}}``;
the answer is the prediction, or ``{"error": {"status": 4xx, "detail": ...}}`` for
input that cannot be predicted on. Loaded models stay cached by key and ETag.
"""

from __future__ import annotations

import base64
import functools
import io
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_models: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE = 4


class BadInput(ValueError):
    """The input cannot be predicted on (answered as 400)."""


@functools.cache
def _container() -> Any:
    from shared.settings import load_settings
    from shared.wiring import build

    return build(load_settings())


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    try:
        data = base64.b64decode(event["data"])
        model = _load(_container().artifacts, event["checkpoint"])
        t0 = time.perf_counter()
        out = model.predict(data, event.get("filename") or "", event.get("options") or {})
        return {**out, "inference_time_ms": round((time.perf_counter() - t0) * 1000, 2)}
    except BadInput as exc:
        return {"error": {"status": 400, "detail": str(exc)}}


def _load(artifacts: Any, key: str) -> Any:
    import tempfile

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
                model: Any = YoloModel(local)
            else:
                state = torch.load(local, map_location="cpu", weights_only=False)
                model = {"timm": TimmModel, "torchaudio": AsrModel}[state["framework"]](state)
        _models[key, etag] = model
        while len(_models) > _CACHE:
            _models.popitem(last=False)
        return model


def _is_ultralytics(path: Path) -> bool:
    """ultralytics checkpoints pickle its own classes; ours are plain dicts of tensors."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        pickle = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return b"ultralytics." in zf.read(pickle)


def _image(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"Not an image file: {exc}") from None
    return img.convert("RGB")


def _top(probs: Any, names: list[str], top_k: int, threshold: float) -> list[dict[str, Any]]:
    conf, idx = probs.topk(min(top_k, len(names)))
    return [{"label": names[i], "label_id": i, "confidence": round(c, 6)}
            for c, i in zip(conf.tolist(), idx.tolist(), strict=True) if c >= threshold]  # fmt: skip


class TimmModel:
    def __init__(self, state: dict[str, Any]) -> None:
        import timm
        from torchvision import transforms

        self.names, self.model_name = state["classes"], state["model_name"]
        self.model = timm.create_model(
            self.model_name, pretrained=False, num_classes=len(self.names)
        )
        self.model.load_state_dict(state["model"])
        self.model.eval()
        size = int(state["image_size"])
        self.tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                      transforms.Normalize([0.5] * 3, [0.5] * 3)])  # fmt: skip

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            probs = self.model(self.tf(_image(data))[None]).softmax(1)[0]
        return {"predictions": _top(probs, self.names, int(options.get("top_k", 5)),
                                    float(options.get("confidence_threshold", 0.0))),
                "task_type": "image_classification", "model_name": self.model_name}  # fmt: skip


class YoloModel:
    def __init__(self, path: Path) -> None:
        import tempfile

        from crucible_trainer.tasks import ultralytics_offline

        ultralytics_offline(Path(tempfile.mkdtemp(prefix="crucible-yolo-")))
        from ultralytics import YOLO

        self.model = YOLO(str(path))
        self.args = self.model.ckpt.get("train_args", {}) if self.model.ckpt else {}
        self.model_name = Path(str(self.args.get("model", "yolo"))).stem.removesuffix("-cls")

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        threshold = float(options.get("confidence_threshold", 0.25))
        result = self.model.predict(_image(data), conf=threshold, imgsz=self.args.get("imgsz", 640),
                                    verbose=False, device="cpu")[0]  # fmt: skip
        names = [result.names[i] for i in sorted(result.names)]
        if self.model.task == "classify":
            preds = _top(result.probs.data, names, int(options.get("top_k", 5)), threshold)
            return {
                "predictions": preds,
                "task_type": "image_classification",
                "model_name": self.model_name,
            }
        boxes = result.boxes
        preds = [{"label": names[int(k)], "label_id": int(k), "confidence": round(float(c), 6),
                  "bbox": [round(float(v), 2) for v in xyxy]}
                 for k, c, xyxy in zip(boxes.cls, boxes.conf, boxes.xyxy, strict=True)]  # fmt: skip
        preds = preds[: int(options.get("top_k", 100))]
        return {
            "predictions": preds,
            "task_type": "object_detection",
            "model_name": self.model_name,
        }


class AsrModel:
    def __init__(self, state: dict[str, Any]) -> None:
        from crucible_trainer.tasks import asr_model

        self.vocab, self.model_name = state["vocab"], state["model_name"]
        self.model = asr_model(
            self.model_name, len(self.vocab), dim=state["dim"], layers=state["layers"]
        )
        self.model.load_state_dict(state["model"])
        self.model.eval()

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        from shared.audio import InvalidAudio, decode, probe

        try:
            probe(data)
            samples, _, _ = decode(data, 16_000)
        except InvalidAudio as exc:
            raise BadInput(str(exc)) from None
        audio = torch.from_numpy(samples.astype("float32"))[None]
        with torch.no_grad():
            tokens = self.model.decode(audio, torch.tensor([audio.shape[1]]))[0]
        return {"transcription": "".join(self.vocab[k] for k in tokens), "model_name": self.model_name,
                "task_type": "speech_recognition"}  # fmt: skip
