"""ultralytics YOLO: detection (YOLO or COCO datasets) and classification (imagefolder),
built from the catalogue model's YAML in the ultralytics package (no weight downloads;
starting weights only from the operator's weights directory). ultralytics' own loop
trains; callbacks report steps, per-epoch validation and checkpoints, and stop it.
Seed 002's knobs map onto ultralytics' own arguments (:func:`knob_args`); options passed
through from the spec: device, workers, patience and those in ``PASSED_THROUGH``.

ultralytics pickles its own classes into its checkpoint files, so those never leave the
job: what is stored is a plain state dict and metadata (:func:`snapshot`), which loads
with ``weights_only=True``. Predictions rebuild the network from the catalogue model's
YAML (never from a YAML inside a checkpoint: ultralytics evaluates parts of a model YAML)
and load the weights into it; a resume writes an ultralytics last.pt from the plain
checkpoint, here, and lets ultralytics resume from that."""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crucible_trainer.frameworks.yolo_data import yolo_data_yaml
from crucible_trainer.inputs import image, top_k
from crucible_trainer.metrics import confusion_metrics, per_sample
from crucible_trainer.run import Outcome, Run
from crucible_trainer.spec import JobSpec
from shared.catalogue import check_model
from shared.training_options import Options

PASSED_THROUGH = ("mosaic", "fliplr", "close_mosaic", "nbs")
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}
# what augmentation.enabled = false turns off
AUGMENTATIONS_OFF = ("fliplr", "hsv_h", "hsv_s", "hsv_v", "mosaic", "translate", "scale", "erasing")


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
    """The catalogue's ``yolov8n`` -> ``yolov8n.yaml`` (detect) or ``yolov8n-cls.yaml``
    (classify), a model YAML that ships with ultralytics."""
    check_model("ultralytics", task_type, model_name, {})
    return f"{model_name}-cls.yaml" if task_type == "image_classification" else f"{model_name}.yaml"


def network(model_name: str, task_type: str, names: list[str]) -> Any:
    """The catalogue model's network for ``names`` (untrained), as ultralytics' trainers
    build it."""
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, yaml_model_load

    classify = task_type == "image_classification"
    cls = ClassificationModel if classify else DetectionModel
    net = cls(yaml_model_load(model_file(model_name, task_type)), nc=len(names), verbose=False)
    net.names = dict(enumerate(names))
    net.task = "classify" if classify else "detect"
    return net


def _plain(value: Any) -> Any:
    """Numbers from numpy/torch as Python numbers (a checkpoint holds plain data only)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(value)


def snapshot(trainer: Any, spec: JobSpec, names: list[str], *, resumable: bool) -> dict:
    """What this job stores of ultralytics' checkpoint: the EMA weights (which it predicts
    and resumes with) as a state dict, in half precision as ultralytics keeps them, the
    model, classes and image size, and, to resume, the optimizer, scaler and EMA state."""
    import torch
    import ultralytics
    from ultralytics.utils.torch_utils import convert_optimizer_state_dict_to_fp16

    weights = {
        k: torch.nan_to_num(v.detach().half()) if v.is_floating_point() else v.detach().clone()
        for k, v in trainer.ema.ema.state_dict().items()
    }
    state: dict[str, Any] = {
        "framework": "ultralytics",
        "model_name": spec.model_name,
        "task_type": spec.task_type,
        "names": names,
        "image_size": int(trainer.args.imgsz),
        "epoch": int(trainer.epoch) + 1,  # epochs done (ultralytics counts from 0)
        "model": weights,
        "best_fitness": _plain(trainer.best_fitness),
        "fitness": _plain(trainer.fitness),
        "optimizer": None,
        "torch": str(torch.__version__),
        "ultralytics": str(ultralytics.__version__),
    }
    if resumable:
        state.update(
            optimizer=convert_optimizer_state_dict_to_fp16(
                copy.deepcopy(trainer.optimizer.state_dict())
            ),
            scaler=trainer.scaler.state_dict(),
            updates=int(trainer.ema.updates),
            stopper={
                "best_fitness": _plain(trainer.stopper.best_fitness),
                "best_epoch": int(trainer.stopper.best_epoch),
            },
        )
    return state


def knob_args(o: Options, cuda: bool) -> tuple[dict[str, Any], list[str]]:
    """ultralytics' training arguments for seed 002's knobs (shared/training_options.py
    says which it honours), and notes for the job's log."""
    lr0 = o.learning_rate
    kind = o["scheduler.type"]
    args: dict[str, Any] = {
        "optimizer": OPTIMIZERS[o["optimizer.type"]],
        "lr0": lr0,
        "weight_decay": o["optimizer.weight_decay"],
        "momentum": o["optimizer.momentum"],
        "cos_lr": kind == "cosine",
        "lrf": 1.0 if kind == "none" else o["scheduler.eta_min"] / lr0,
        "warmup_epochs": o["scheduler.warmup_epochs"],
        "amp": False,
    }
    notes = []
    if any(k.startswith("augmentation.") for k in o.given):
        if not o["augmentation.enabled"]:
            args.update(dict.fromkeys(AUGMENTATIONS_OFF, 0.0))
        else:
            flip = o["augmentation.random_flip"]
            args["fliplr"] = o["augmentation.random_flip_prob"] if flip else 0.0
            if o["augmentation.color_jitter"]:
                args["hsv_v"] = o["augmentation.brightness"]
            else:
                args.update(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    if o["mixed_precision"]:
        if cuda:
            import torch

            # bf16 needs no AMP check (which would fetch weights); float16 does
            args["amp"] = "bf16" if torch.cuda.is_bf16_supported() else True
            notes.append(f"Mixed precision: amp={args['amp']}")
        else:
            notes.append(
                "mixed_precision: ultralytics applies AMP on a GPU only; this run trains "
                "in float32 on the CPU"
            )
    return args, notes


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
        "plots": False,
        "project": str(work / "runs"),
        "name": "train",
        "exist_ok": True,
        "patience": int(opts.get("patience", 100)),
        "verbose": False,
    }
    import torch

    knobs, notes = knob_args(spec.knobs, torch.cuda.is_available() and opts.get("device") != "cpu")
    args.update(knobs)
    args.update({k: opts[k] for k in PASSED_THROUGH if k in opts})  # its own, as given
    args = {k: v for k, v in args.items() if v is not None}
    for note in notes:
        run.log(note)
    if spec.resume_from:
        model = YOLO(str(_resumable(spec, run, work / "resume.pt", args)))
        keep = ("data", "device", "workers", "plots")
        args = {
            "resume": True,
            "save_dir": str(work / "runs" / "train"),
            **{k: args[k] for k in keep if k in args},
        }
    else:
        model = YOLO(
            model_file(spec.model_name, spec.task_type), task="classify" if classify else "detect"
        )
        if spec.weights is not None:  # a file from the operator's weights directory
            model.load(str(spec.weights))
            run.log(f"Starting from {spec.weights.name}")
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
        names = [str(trainer.data["names"][i]) for i in sorted(trainer.data["names"])]
        best = None
        if trainer.best_fitness == trainer.fitness:
            best = snapshot(trainer, spec, names, resumable=False)
        last = snapshot(trainer, spec, names, resumable=True)
        run.checkpoints.save(last, trainer.epoch + 1, best=best)

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
        model.train(**trainer, **args)
    except _Stopped:
        return "stopped"
    return "completed"


def _resumable(spec: JobSpec, run: Run, path: Path, args: dict[str, Any]) -> Path:
    """An ultralytics last.pt at ``path`` to resume from, written here from the plain
    checkpoint ``spec.resume_from`` (loaded with ``weights_only=True``): the catalogue
    model's network with its weights, its optimizer and EMA state, and this job's own
    training arguments ``args`` (never arguments from the checkpoint)."""
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT

    state = run.checkpoints.load(spec.resume_from)
    if state.get("framework") != "ultralytics":
        raise ValueError(f"{spec.resume_from} is not an ultralytics checkpoint")
    if (state.get("model_name"), state.get("task_type")) != (spec.model_name, spec.task_type):
        raise ValueError(
            f"{spec.resume_from} is a {state.get('model_name')} {state.get('task_type')} "
            f"checkpoint; this job trains {spec.model_name} {spec.task_type}"
        )
    if not state.get("optimizer"):
        raise ValueError(
            f"{spec.resume_from} is a finished run's weights; only a last.pt can resume"
        )
    if state["epoch"] >= spec.epochs:
        raise ValueError(
            f"{spec.resume_from} has {state['epoch']} epochs done; this job trains "
            f"{spec.epochs}, so there is nothing left to resume"
        )
    net = network(spec.model_name, spec.task_type, [str(n) for n in state["names"]])
    net.load_state_dict(state["model"])
    run.log(
        f"Resumed from checkpoint {spec.resume_from} at epoch {state['epoch']}: "
        f"epochs {state['epoch'] + 1}-{spec.epochs} to go"
    )
    task = net.task
    train_args = {**DEFAULT_CFG_DICT, **args, "task": task, "mode": "train", "model": str(path)}
    net.args = train_args
    stopper = state.get("stopper") or {}
    torch.save(
        {
            "epoch": state["epoch"] - 1,
            "best_fitness": state.get("best_fitness"),
            "stopper": {k: stopper[k] for k in ("best_fitness", "best_epoch") if k in stopper},
            "model": None,
            "ema": net.half(),
            "updates": int(state.get("updates", 0)),
            "optimizer": state["optimizer"],
            "scaler": state.get("scaler") or {},
            "train_args": train_args,
            "train_metrics": {},
        },
        path,
    )
    return path


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
    """An ultralytics checkpoint (our plain state dict), detecting objects or classifying
    an image: the catalogue model's network, rebuilt, with the checkpoint's weights."""

    def __init__(self, state: dict[str, Any]) -> None:
        offline(Path(tempfile.mkdtemp(prefix="crucible-yolo-")))
        from ultralytics import YOLO

        self.model_name, task_type = state["model_name"], state["task_type"]
        net = network(self.model_name, task_type, [str(n) for n in state["names"]])
        net.load_state_dict(state["model"])
        self.model = YOLO(model_file(self.model_name, task_type), task=net.task)
        net.args, net.task = self.model.model.args, self.model.model.task
        self.model.model = net.float().eval()
        self.args = {"imgsz": int(state["image_size"])}

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
