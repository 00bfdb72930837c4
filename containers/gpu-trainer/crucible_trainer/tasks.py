"""Framework tasks. Each trains from a job spec and reports only through callbacks."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def classification_metrics(
    y_true: list[int], y_pred: list[int], classes: list[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class metrics and the confusion matrix."""
    n = len(classes)
    cm = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t][p] += 1
    per_class, ps, rs, fs = {}, [], [], []
    for i, name in enumerate(classes):
        tp = cm[i][i]
        fp = sum(cm[r][i] for r in range(n)) - tp
        fn = sum(cm[i]) - tp
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": p, "recall": r, "f1": f, "support": sum(cm[i])}
        ps.append(p), rs.append(r), fs.append(f)
    total = sum(map(sum, cm))
    return {
        "accuracy": sum(cm[i][i] for i in range(n)) / total if total else 0.0,
        "precision": sum(ps) / n, "recall": sum(rs) / n, "f1": sum(fs) / n,
        "per_class": per_class, "confusion_matrix": cm,
    }  # fmt: skip


def train_timm(job: Any, root: Path, reporter: Any, checkpoints: Any, stop: threading.Event) -> str:
    """timm image classification on an imagefolder dataset (``pretrained=False`` unless
    ``advanced_config.weights`` names a local weights file)."""
    import timm
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    cfg = job.advanced_config or {}
    size = int(cfg.get("image_size", 64))
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize([0.5] * 3, [0.5] * 3)])  # fmt: skip
    train_dir = root / "train" if (root / "train").is_dir() else root
    val_dir = next((root / s for s in ("val", "valid") if (root / s).is_dir()), train_dir)
    train_ds, val_ds = datasets.ImageFolder(train_dir, tf), datasets.ImageFolder(val_dir, tf)
    classes = train_ds.classes
    torch.manual_seed(int(cfg.get("seed", 0)))
    weights = cfg.get("weights")
    model = timm.create_model(
        job.model_name, pretrained=bool(weights), num_classes=len(classes),
        **({"pretrained_cfg_overlay": {"file": weights}} if weights else {}),
    )  # fmt: skip
    opt = torch.optim.AdamW(
        model.parameters(), lr=job.learning_rate, weight_decay=float(cfg.get("weight_decay", 0.01))
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, job.total_epochs))
    loader = DataLoader(train_ds, batch_size=job.batch_size, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=job.batch_size)
    loss_fn = torch.nn.CrossEntropyLoss()
    start, best = 1, -math.inf
    # "last" is written at most every checkpoint_interval_s (and at the end, and on
    # SIGTERM); the best weights wait in memory until then, so short epochs pay nothing.
    interval = float(cfg.get("checkpoint_interval_s", 60))
    best_weights: dict | None = None
    last_save = time.monotonic()
    if cfg.get("resume_from"):
        state = checkpoints.load(cfg["resume_from"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, best = state["epoch"] + 1, state.get("best", best)
        reporter.log(f"Resumed from {cfg['resume_from']} at epoch {start}")

    def state(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "best": best, "classes": classes, "model_name": job.model_name,
                "image_size": size, "framework": "timm", "torch": torch.__version__, "timm": timm.__version__}  # fmt: skip

    for epoch in range(start, job.total_epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for step, (x, y) in enumerate(loader, 1):
            if stop.is_set():
                checkpoints.save(state(epoch - 1), epoch - 1, best=best_weights)
                return "stopped"
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
            reporter.on_step(epoch, step, len(loader), loss.item(), opt.param_groups[0]["lr"])
        lr = opt.param_groups[0]["lr"]
        sched.step()
        model.eval()
        y_true, y_pred, val_loss, n = [], [], 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                out = model(x)
                val_loss += loss_fn(out, y).item() * len(y)
                n += len(y)
                y_true += y.tolist()
                y_pred += out.argmax(1).tolist()
        val = {"val_loss": val_loss / max(n, 1), **classification_metrics(y_true, y_pred, classes)}
        reporter.on_epoch_end(epoch, total / max(seen, 1), val, lr)
        if val["accuracy"] > best:
            best = val["accuracy"]
            best_weights = {**state(epoch), "optimizer": None, "scheduler": None,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}  # fmt: skip
        if epoch == job.total_epochs or time.monotonic() - last_save >= interval:
            checkpoints.save(state(epoch), epoch, best=best_weights)
            best_weights, last_save = None, time.monotonic()
    return "completed"


TASKS: dict[str, Callable[..., str]] = {"timm": train_timm}
