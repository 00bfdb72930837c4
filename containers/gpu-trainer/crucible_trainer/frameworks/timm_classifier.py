"""timm image classification on an imagefolder dataset (``train/<class>/...``, with a
``val/`` or ``valid/`` split if it has one). ``pretrained=False`` unless the spec names
starting weights (a file in the operator's weights directory). Every seed 002 knob is
honoured (:mod:`crucible_trainer.optim`): the optimizer, the per-epoch schedule with
warm-up, augmentation of the training images (flips, colour jitter), mixed precision
and gradient clipping. Checkpoints are state dicts and plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crucible_trainer.inputs import image, top_k
from crucible_trainer.metrics import classification_metrics, per_sample
from crucible_trainer.optim import Stepper, optimizer, resume, schedule
from crucible_trainer.run import Outcome, Run
from crucible_trainer.spec import JobSpec
from shared.catalogue import check_model
from shared.training_options import Options

DEFAULT_IMAGE_SIZE = 64


def transform(size: int, augment: Options | None = None) -> Any:
    """Validation and prediction see images this way; training too, with the
    augmentation the knobs ask for (``augment``) before the tensor conversion."""
    from torchvision import transforms

    extra: list[Any] = []
    if augment is not None and augment["augmentation.enabled"]:
        if augment["augmentation.random_flip"]:
            extra.append(transforms.RandomHorizontalFlip(augment["augmentation.random_flip_prob"]))
        if augment["augmentation.color_jitter"]:
            extra.append(
                transforms.ColorJitter(
                    brightness=augment["augmentation.brightness"],
                    contrast=augment["augmentation.contrast"],
                )
            )
    return transforms.Compose(
        [
            transforms.Resize((size, size)),
            *extra,
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )


def train(spec: JobSpec, data: Path, run: Run) -> Outcome:
    import timm
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets

    size = DEFAULT_IMAGE_SIZE if spec.image_size is None else spec.image_size
    knobs = spec.knobs
    tf, train_tf = transform(size), transform(size, knobs)
    train_dir = data / "train" if (data / "train").is_dir() else data
    val_dir = next((data / s for s in ("val", "valid") if (data / s).is_dir()), train_dir)
    train_ds, val_ds = datasets.ImageFolder(train_dir, train_tf), datasets.ImageFolder(val_dir, tf)
    classes = train_ds.classes
    torch.manual_seed(spec.seed)
    # Starting weights come only from the operator's directory (spec.weights, resolved
    # there); timm reads them as a state dict (safetensors, or torch.load weights_only).
    model = timm.create_model(
        spec.model_name,
        pretrained=spec.weights is not None,
        num_classes=len(classes),
        **({"pretrained_cfg_overlay": {"file": str(spec.weights)}} if spec.weights else {}),
    )
    # The GPU when the job has one (the GPU queue's instances), the CPU otherwise.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    params = list(model.parameters())
    opt = optimizer(params, knobs)
    sched = schedule(opt, knobs)
    stepper = Stepper(params, opt, knobs, device)
    loader = DataLoader(train_ds, batch_size=spec.batch_size, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=spec.batch_size)
    loss_fn = torch.nn.CrossEntropyLoss()

    def state(epoch: int) -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": run.best,
            "classes": classes,
            "model_name": spec.model_name,
            "image_size": size,
            "framework": "timm",
            "torch": str(torch.__version__),  # a str subclass that weights_only refuses
            "timm": str(timm.__version__),
        }

    resumed = run.begin(state, monitor="accuracy", mode="max")
    if resumed:
        model.load_state_dict(resumed["model"])
        resume(opt, sched, knobs, resumed, run.first_epoch)
    augmented = [type(t).__name__ for t in train_tf.transforms[1:-2]]
    run.log(f"{stepper.describe()}; augmentation: {', '.join(augmented) or 'none'}")

    for epoch in run.epochs():
        model.train()
        total, seen = 0.0, 0
        for step, (x, y) in enumerate(loader, 1):
            if run.stopping:
                run.checkpoint(epoch - 1)
                return "stopped"
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with stepper.autocast():
                loss = loss_fn(model(x), y)
            stepper.step(loss)
            total += loss.item() * len(y)
            seen += len(y)
            run.on_step(epoch, step, len(loader), loss.item(), opt.param_groups[0]["lr"])
        lr = opt.param_groups[0]["lr"]
        sched.step()
        model.eval()
        y_true, y_pred, val_loss, n, top = [], [], 0.0, 0, []
        with torch.no_grad(), stepper.autocast():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                out = model(x).float()
                val_loss += loss_fn(out, y).item() * len(y)
                n += len(y)
                y_true += y.tolist()
                y_pred += out.argmax(1).tolist()
                conf, idx = out.softmax(1).topk(min(5, len(classes)), 1)
                top += list(zip(conf.tolist(), idx.tolist(), strict=True))
        val = {
            "val_loss": val_loss / max(n, 1),
            **classification_metrics(y_true, y_pred, classes),
            "samples": per_sample(val_ds.samples, val_dir, top, classes),
        }
        run.on_epoch_end(epoch, total / max(seen, 1), val, lr)
    return "completed"


class Model:
    """A timm checkpoint, predicting an image's top classes."""

    def __init__(self, state: dict[str, Any]) -> None:
        import timm

        self.names, self.model_name = [str(c) for c in state["classes"]], state["model_name"]
        check_model("timm", "image_classification", self.model_name, {})  # no hub ids
        self.model = timm.create_model(
            self.model_name, pretrained=False, num_classes=len(self.names)
        )
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.tf = transform(int(state["image_size"]))

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            probs = self.model(self.tf(image(data))[None]).softmax(1)[0]
        return {
            "predictions": top_k(
                probs,
                self.names,
                int(options.get("top_k", 5)),
                float(options.get("confidence_threshold", 0.0)),
            ),
            "task_type": "image_classification",
            "model_name": self.model_name,
        }
