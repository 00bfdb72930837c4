"""ultralytics YOLO: detection (YOLO or COCO datasets) and classification (imagefolder),
from a model YAML (no weight downloads). ultralytics' own loop trains and writes its
checkpoints; callbacks report steps, per-epoch validation and checkpoints, and stop it.
Options passed through from the spec: device, workers, optimizer, patience and the
augmentation settings in ``PASSED_THROUGH``."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crucible_trainer.inputs import image, top_k
from crucible_trainer.metrics import confusion_metrics, per_sample
from crucible_trainer.run import Outcome, Run
from crucible_trainer.spec import JobSpec
from shared.datasets import yolo_data_yaml

PASSED_THROUGH = ("mosaic", "fliplr", "close_mosaic", "warmup_epochs", "nbs", "momentum")


class _Stopped(Exception):
    """Raised from a callback once a stopped run's last checkpoint is saved: skips the
    final evaluation of best.pt, which could outlast a spot reclaim's grace period."""


def offline(work: Path) -> None:
    """No network attempt and no hang: offline flags, a private config dir holding the
    font ultralytics would fetch, and its own MLflow/hub callbacks off (we report)."""
    cfg_dir = work / "ultralytics"
    (cfg_dir / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="0",
        YOLO_VERBOSE="False",
        YOLO_CONFIG_DIR=str(cfg_dir),
        MPLCONFIGDIR=str(cfg_dir / "mpl"),
    )
    font = cfg_dir / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        shutil.copy(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", font)
    from ultralytics import settings

    off = ("sync", "mlflow", "clearml", "comet", "dvc", "raytune", "tensorboard", "wandb")
    settings.update({k: False for k in off})


def model_file(model_name: str, task_type: str) -> str:
    """``yolov8n`` -> ``yolov8n.yaml`` (detect) or ``yolov8n-cls.yaml`` (classify); a path
    to local ``.pt`` weights is used as it is."""
    if model_name.endswith((".pt", ".yaml")):
        return model_name
    return f"{model_name}-cls.yaml" if task_type == "image_classification" else f"{model_name}.yaml"


def train(spec: JobSpec, data: Path, run: Run) -> Outcome:
    work = data.parent
    offline(work)
    from ultralytics import YOLO

    opts = spec.extras
    classify = spec.task_type == "image_classification"
    default_size = 224 if classify else 640
    if classify:  # ultralytics wants <root>/train/<class> and a val/ (or test/) split
        source = data
        if not (data / "train").is_dir():
            source = work / "cls"
            source.mkdir(exist_ok=True)
            for split in ("train", "val"):
                (source / split).symlink_to(data, target_is_directory=True)
    else:
        source = Path(yolo_data_yaml(str(data), str(work / "yolo")))
    args = {
        "data": str(source),
        "epochs": spec.epochs,
        "batch": spec.batch_size,
        "lr0": spec.learning_rate,
        "imgsz": default_size if spec.image_size is None else spec.image_size,
        "device": opts.get("device"),
        "workers": int(opts.get("workers", 0)),
        "seed": spec.seed,
        "amp": False,
        "plots": False,
        "project": str(work / "runs"),
        "name": "train",
        "exist_ok": True,
        "optimizer": opts.get("optimizer", "AdamW"),
        "patience": int(opts.get("patience", 100)),
        "verbose": False,
        **{k: opts[k] for k in PASSED_THROUGH if k in opts},
    }
    if spec.resume_from:
        model = YOLO(str(_resumable(spec, run, work / "resume.pt")))
        keep = ("data", "device", "workers", "plots")
        args = {
            "resume": True,
            "save_dir": str(work / "runs" / "train"),
            **{k: args[k] for k in keep},
        }
        run.log(f"Resumed from {spec.resume_from}")
    else:
        model = YOLO(
            model_file(spec.model_name, spec.task_type), task="classify" if classify else "detect"
        )
    reported, step = set(), [0]

    def on_epoch_start(trainer: Any) -> None:
        step[0] = 0

    def on_batch_end(trainer: Any) -> None:
        step[0] += 1
        lr = trainer.optimizer.param_groups[0]["lr"]
        run.on_step(trainer.epoch + 1, step[0], len(trainer.train_loader), _loss(trainer), lr)
        if run.stopping:
            trainer.stop = True  # ultralytics breaks, validates and saves last.pt

    def on_model_save(trainer: Any) -> None:
        best = trainer.best if trainer.best_fitness == trainer.fitness else None
        run.checkpoints.save_file(trainer.last, trainer.epoch + 1, best=best)

    def on_fit_epoch_end(trainer: Any) -> None:
        epoch = trainer.epoch + 1
        if (
            epoch not in reported and epoch <= trainer.epochs
        ):  # the final eval of best.pt repeats it
            reported.add(epoch)
            val = validation_metrics(trainer, trainer.metrics or {}, classify)
            run.report_epoch(epoch, _loss(trainer), val, trainer.optimizer.param_groups[0]["lr"])
        if run.stopping:
            raise _Stopped

    callbacks = {
        "on_train_epoch_start": on_epoch_start,
        "on_train_batch_end": on_batch_end,
        "on_model_save": on_model_save,
        "on_fit_epoch_end": on_fit_epoch_end,
    }
    for event, fn in callbacks.items():
        model.add_callback(event, fn)
    try:
        trainer = {"trainer": recording_classifier()} if classify else {}
        model.train(**trainer, **{k: v for k, v in args.items() if v is not None})
    except _Stopped:
        return "stopped"
    return "completed"


def _resumable(spec: JobSpec, run: Run, weights: Path) -> Path:
    """The checkpoint to resume from, fetched; ultralytics resumes with the checkpoint's
    own arguments, so this job's epochs are written into it."""
    import torch

    run.checkpoints.fetch(spec.resume_from, weights)
    state = torch.load(weights, map_location="cpu", weights_only=False)
    if not state.get("optimizer"):
        raise ValueError(
            f"{spec.resume_from} is a finished run's weights; only a last.pt can resume"
        )
    state["train_args"]["epochs"] = spec.epochs
    torch.save(state, weights)
    return weights


def recording_classifier() -> type:
    """ultralytics' classification trainer whose validator also keeps each image's top-5
    (its probabilities come from the model's softmax), for per-image results."""
    from ultralytics.models.yolo.classify import ClassificationTrainer, ClassificationValidator

    class RecordingValidator(ClassificationValidator):
        def init_metrics(self, model: Any) -> None:
            super().init_metrics(model)
            self.top: list = []

        def update_metrics(self, preds: Any, batch: dict[str, Any]) -> None:
            super().update_metrics(preds, batch)
            conf, idx = preds.float().topk(min(5, preds.shape[1]), 1)
            self.top += list(zip(conf.tolist(), idx.tolist(), strict=True))

    class RecordingTrainer(ClassificationTrainer):
        def get_validator(self) -> Any:
            validator = super().get_validator()
            validator.__class__ = RecordingValidator  # same state, one more record
            return validator

    return RecordingTrainer


def _loss(trainer: Any) -> float:
    """The epoch's running mean training loss (box + cls + dfl, or the classifier's)."""
    if not trainer.tloss:
        return math.nan
    return float(sum(float(v) for v in trainer.tloss.values()))


def validation_metrics(trainer: Any, m: dict[str, Any], classify: bool) -> dict[str, Any]:
    """ultralytics' validation metrics under the names the API reports."""
    names = [trainer.data["names"][i] for i in sorted(trainer.data["names"])]
    val_loss = sum(float(v) for k, v in m.items() if k.startswith("val/"))
    if classify:
        out = {
            "val_loss": val_loss,
            "top1": float(m.get("metrics/accuracy_top1", 0)),
            "top5": float(m.get("metrics/accuracy_top5", 0)),
        }
        cm = getattr(trainer.validator, "confusion_matrix", None)
        if cm is not None:  # ultralytics counts matrix[predicted][true]
            out.update(confusion_metrics(cm.matrix.astype(int).T.tolist(), names))
        top = getattr(trainer.validator, "top", None)
        samples = trainer.validator.dataloader.dataset.samples
        if top and len(top) == len(samples):  # the order of the (unshuffled) val loader
            root = Path(os.path.commonpath([s[0] for s in samples]))
            root = root.parent if len(samples) == 1 else root
            out["samples"] = per_sample([(s[0], s[1]) for s in samples], root, top, names)
        return out
    box = trainer.validator.metrics.box
    per_class = {
        names[c]: {
            "precision": float(box.p[i]),
            "recall": float(box.r[i]),
            "mAP50": float(box.ap50[i]),
            "mAP50-95": float(box.ap[i]),
        }
        for i, c in enumerate(box.ap_class_index)
    }
    return {
        "val_loss": val_loss,
        "precision": float(m.get("metrics/precision(B)", 0)),
        "recall": float(m.get("metrics/recall(B)", 0)),
        "mAP50": float(m.get("metrics/mAP50(B)", 0)),
        "mAP50-95": float(m.get("metrics/mAP50-95(B)", 0)),
        "per_class": per_class,
    }


class Model:
    """An ultralytics checkpoint (its own file), detecting objects or classifying an image."""

    def __init__(self, path: Path) -> None:
        offline(Path(tempfile.mkdtemp(prefix="crucible-yolo-")))
        from ultralytics import YOLO

        self.model = YOLO(str(path))
        self.args = self.model.ckpt.get("train_args", {}) if self.model.ckpt else {}
        self.model_name = Path(str(self.args.get("model", "yolo"))).stem.removesuffix("-cls")

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        threshold = float(options.get("confidence_threshold", 0.25))
        result = self.model.predict(
            image(data),
            conf=threshold,
            imgsz=self.args.get("imgsz", 640),
            verbose=False,
            device="cpu",
        )[0]
        names = [result.names[i] for i in sorted(result.names)]
        if self.model.task == "classify":
            preds = top_k(result.probs.data, names, int(options.get("top_k", 5)), threshold)
            return {
                "predictions": preds,
                "task_type": "image_classification",
                "model_name": self.model_name,
            }
        boxes = result.boxes
        preds = [
            {
                "label": names[int(k)],
                "label_id": int(k),
                "confidence": round(float(c), 6),
                "bbox": [round(float(v), 2) for v in xyxy],
            }
            for k, c, xyxy in zip(boxes.cls, boxes.conf, boxes.xyxy, strict=True)
        ]
        preds = preds[: int(options.get("top_k", 100))]
        return {
            "predictions": preds,
            "task_type": "object_detection",
            "model_name": self.model_name,
        }
