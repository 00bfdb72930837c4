"""Framework tasks. Each trains from a job spec and reports only through callbacks."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def classification_metrics(
    y_true: list[int], y_pred: list[int], classes: list[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class metrics and the confusion matrix."""
    cm = [[0] * len(classes) for _ in classes]
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t][p] += 1
    return confusion_metrics(cm, classes)


def confusion_metrics(cm: list[list[int]], classes: list[str]) -> dict[str, Any]:
    """The same, from a confusion matrix ``cm[true][predicted]``."""
    n = len(classes)
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


def per_sample(
    samples: list[tuple[str, int]], root: Path, top: list, classes: list[str]
) -> list[dict]:
    """Seed 002's per-image validation results: truth, prediction and top-5."""
    out = []
    for i, ((path, truth), (conf, idx)) in enumerate(zip(samples, top, strict=True), 1):
        out.append({"id": i, "image_path": Path(path).relative_to(root).as_posix(), "image_name": Path(path).name,
                    "true_label": classes[truth], "true_label_id": truth, "predicted_label": classes[idx[0]],
                    "predicted_label_id": idx[0], "confidence": round(conf[0], 6), "is_correct": idx[0] == truth,
                    "top5_predictions": [{"label": classes[k], "confidence": round(c, 6)}
                                         for c, k in zip(conf, idx, strict=True)]})  # fmt: skip
    return out


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
        y_true, y_pred, val_loss, n, top = [], [], 0.0, 0, []
        with torch.no_grad():
            for x, y in val_loader:
                out = model(x)
                val_loss += loss_fn(out, y).item() * len(y)
                n += len(y)
                y_true += y.tolist()
                y_pred += out.argmax(1).tolist()
                conf, idx = out.softmax(1).topk(min(5, len(classes)), 1)
                top += list(zip(conf.tolist(), idx.tolist(), strict=True))
        val = {"val_loss": val_loss / max(n, 1), **classification_metrics(y_true, y_pred, classes),
               "samples": per_sample(val_ds.samples, val_dir, top, classes)}  # fmt: skip
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


# --- ultralytics YOLO: detection (YOLO or COCO datasets) and classification -----------


class _Stopped(Exception):
    """Raised from a callback once a stopped run's last checkpoint is saved: skips the
    final evaluation of best.pt, which could outlast a spot reclaim's grace period."""


def ultralytics_offline(work: Path) -> None:
    """No network attempt and no hang: offline flags, a private config dir holding the
    font ultralytics would fetch, and its own MLflow/hub callbacks off (we report)."""
    import os
    import shutil

    cfg_dir = work / "ultralytics"
    (cfg_dir / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False",
                      YOLO_CONFIG_DIR=str(cfg_dir), MPLCONFIGDIR=str(cfg_dir / "mpl"))  # fmt: skip
    font = cfg_dir / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        shutil.copy(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", font)
    from ultralytics import settings

    settings.update({k: False for k in ("sync", "mlflow", "clearml", "comet", "dvc", "raytune",
                                        "tensorboard", "wandb")})  # fmt: skip


def yolo_model_file(model_name: str, task_type: str) -> str:
    """``yolov8n`` -> ``yolov8n.yaml`` (detect) or ``yolov8n-cls.yaml`` (classify); a path
    to local ``.pt`` weights is used as it is."""
    if model_name.endswith((".pt", ".yaml")):
        return model_name
    return f"{model_name}-cls.yaml" if task_type == "image_classification" else f"{model_name}.yaml"


def train_yolo(job: Any, root: Path, reporter: Any, checkpoints: Any, stop: threading.Event) -> str:
    """ultralytics YOLO from a model YAML (no weight downloads). Its own loop trains; our
    callbacks report steps, per-epoch validation and checkpoints, and stop it on SIGTERM."""
    work = root.parent
    ultralytics_offline(work)
    from ultralytics import YOLO

    from shared.datasets import yolo_data_yaml

    cfg = job.advanced_config or {}
    classify = job.task_type == "image_classification"
    if classify:  # ultralytics wants <root>/train/<class> and a val/ (or test/) split
        data = root
        if not (root / "train").is_dir():
            data = work / "cls"
            data.mkdir(exist_ok=True)
            for split in ("train", "val"):
                (data / split).symlink_to(root, target_is_directory=True)
    else:
        data = Path(yolo_data_yaml(str(root), str(work / "yolo")))
    args = {"data": str(data), "epochs": job.total_epochs, "batch": job.batch_size, "lr0": job.learning_rate,
            "imgsz": int(cfg.get("image_size", 224 if classify else 640)), "device": cfg.get("device"),
            "workers": int(cfg.get("workers", 0)), "seed": int(cfg.get("seed", 0)), "amp": False,
            "plots": False, "project": str(work / "runs"), "name": "train", "exist_ok": True,
            "optimizer": cfg.get("optimizer", "AdamW"), "patience": int(cfg.get("patience", 100)),
            "verbose": False}  # fmt: skip
    args.update(
        {
            k: cfg[k]
            for k in ("mosaic", "fliplr", "close_mosaic", "warmup_epochs", "nbs", "momentum")
            if k in cfg
        }
    )
    if cfg.get("resume_from"):
        import torch

        weights = work / "resume.pt"
        checkpoints.fetch(cfg["resume_from"], weights)
        # ultralytics resumes with the checkpoint's own arguments; this job sets the epochs.
        state = torch.load(weights, map_location="cpu", weights_only=False)
        if not state.get("optimizer"):
            raise ValueError(
                f"{cfg['resume_from']} is a finished run's weights; only a last.pt can resume"
            )
        state["train_args"]["epochs"] = job.total_epochs
        torch.save(state, weights)
        keep = ("data", "device", "workers", "plots")
        model = YOLO(str(weights))
        args = {
            "resume": True,
            "save_dir": str(work / "runs" / "train"),
            **{k: args[k] for k in keep},
        }
        reporter.log(f"Resumed from {cfg['resume_from']}")
    else:
        model = YOLO(
            yolo_model_file(job.model_name, job.task_type),
            task="classify" if classify else "detect",
        )
    reported, step = set(), [0]

    def on_epoch_start(trainer: Any) -> None:
        step[0] = 0

    def on_batch_end(trainer: Any) -> None:
        step[0] += 1
        reporter.on_step(trainer.epoch + 1, step[0], len(trainer.train_loader), _loss(trainer),
                         trainer.optimizer.param_groups[0]["lr"])  # fmt: skip
        if stop.is_set():
            trainer.stop = True  # ultralytics breaks, validates and saves last.pt

    def on_model_save(trainer: Any) -> None:
        best = trainer.best if trainer.best_fitness == trainer.fitness else None
        checkpoints.save_file(trainer.last, trainer.epoch + 1, best=best)

    def on_fit_epoch_end(trainer: Any) -> None:
        epoch = trainer.epoch + 1
        if (
            epoch not in reported and epoch <= trainer.epochs
        ):  # the final eval of best.pt repeats it
            reported.add(epoch)
            m = trainer.metrics or {}
            reporter.on_epoch_end(epoch, _loss(trainer), yolo_metrics(trainer, m, classify),
                                  trainer.optimizer.param_groups[0]["lr"])  # fmt: skip
        if stop.is_set():
            raise _Stopped

    for event, fn in (("on_train_epoch_start", on_epoch_start), ("on_train_batch_end", on_batch_end),
                      ("on_model_save", on_model_save), ("on_fit_epoch_end", on_fit_epoch_end)):  # fmt: skip
        model.add_callback(event, fn)
    try:
        trainer = {"trainer": recording_classifier()} if classify else {}
        model.train(**trainer, **{k: v for k, v in args.items() if v is not None})
    except _Stopped:
        return "stopped"
    return "completed"


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
    return (
        float(sum(float(v) for v in (trainer.tloss or {}).values())) if trainer.tloss else math.nan
    )


def yolo_metrics(trainer: Any, m: dict[str, Any], classify: bool) -> dict[str, Any]:
    """ultralytics' validation metrics under the names the API reports."""
    names = [trainer.data["names"][i] for i in sorted(trainer.data["names"])]
    val_loss = sum(float(v) for k, v in m.items() if k.startswith("val/"))
    if classify:
        out = {"val_loss": val_loss, "top1": float(m.get("metrics/accuracy_top1", 0)),
               "top5": float(m.get("metrics/accuracy_top5", 0))}  # fmt: skip
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
    per_class = {names[c]: {"precision": float(box.p[i]), "recall": float(box.r[i]),
                            "mAP50": float(box.ap50[i]), "mAP50-95": float(box.ap[i])}
                 for i, c in enumerate(box.ap_class_index)}  # fmt: skip
    return {"val_loss": val_loss, "precision": float(m.get("metrics/precision(B)", 0)),
            "recall": float(m.get("metrics/recall(B)", 0)), "mAP50": float(m.get("metrics/mAP50(B)", 0)),
            "mAP50-95": float(m.get("metrics/mAP50-95(B)", 0)), "per_class": per_class}  # fmt: skip


TASKS["ultralytics"] = train_yolo


# --- ASR: torchaudio Conformer + CTC on LJSpeech-style data --------------------------


def edit_distance(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
    """Word and character error rates over a set of utterances."""
    words = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True))
    chars = sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps, strict=True))
    return words / max(1, sum(len(r.split()) for r in refs)), chars / max(
        1, sum(len(r) for r in refs)
    )


def asr_model(kind: str, vocab_size: int, dim: int = 144, layers: int = 4, heads: int = 4) -> Any:
    """Seed 000's models over one encoder (log-mel -> linear -> torchaudio Conformer):
    ``conformer`` adds a CTC head; ``rnn-t`` an LSTM prediction network and a joiner
    trained with torchaudio's RNN-T loss. Both decode greedily (blank is index 0) and
    share ``loss(audio, lengths, targets, target_lengths)`` and ``decode(audio, lengths)``."""
    import torch
    import torchaudio

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mel = torchaudio.transforms.MelSpectrogram(
                16_000, n_fft=400, hop_length=160, n_mels=80
            )
            self.inp = torch.nn.Linear(80, dim)
            self.conformer = torchaudio.models.Conformer(input_dim=dim, num_heads=heads, ffn_dim=4 * dim,
                                                         num_layers=layers, depthwise_conv_kernel_size=15)  # fmt: skip

        def encode(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
            feats = (self.mel(audio) + 1e-6).log().transpose(1, 2)  # (batch, frames, mels)
            frames = (lengths // 160 + 1).clamp(max=feats.shape[1])
            return self.conformer(self.inp(feats), frames)

    class CTC(Encoder):
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.nn.Linear(dim, vocab_size)
            self.ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)

        def forward(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
            x, frames = self.encode(audio, lengths)
            return self.out(x).log_softmax(-1), frames

        def loss(self, audio: Any, lengths: Any, targets: Any, target_lengths: Any) -> Any:
            log_probs, frames = self(audio, lengths)
            flat = torch.cat([t[:n] for t, n in zip(targets, target_lengths, strict=True)])
            return self.ctc(log_probs.transpose(0, 1), flat, frames, target_lengths)

        def decode(self, audio: Any, lengths: Any) -> list[list[int]]:
            """Best path: argmax per frame, repeats collapsed, blanks dropped."""
            log_probs, frames = self(audio, lengths)
            out = []
            for seq, n in zip(log_probs.argmax(-1).tolist(), frames.tolist(), strict=True):
                out.append(
                    [k for i, k in enumerate(seq[:n]) if k != 0 and (i == 0 or k != seq[i - 1])]
                )
            return out

    class RNNT(Encoder):
        def __init__(self, joint: int = 256, max_symbols: int = 5) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab_size, dim)
            self.lstm = torch.nn.LSTM(dim, dim, batch_first=True)
            self.enc_proj, self.pred_proj = torch.nn.Linear(dim, joint), torch.nn.Linear(dim, joint)
            self.joint_out = torch.nn.Linear(joint, vocab_size)
            self.max_symbols = max_symbols

        def predict(self, tokens: Any, state: Any = None) -> tuple[Any, Any]:
            out, state = self.lstm(self.embed(tokens), state)
            return self.pred_proj(out), state

        def join(self, enc: Any, pred: Any) -> Any:
            return self.joint_out(torch.tanh(enc + pred))

        def loss(self, audio: Any, lengths: Any, targets: Any, target_lengths: Any) -> Any:
            x, frames = self.encode(audio, lengths)
            blank = targets.new_zeros((targets.shape[0], 1))
            pred, _ = self.predict(torch.cat([blank, targets], 1))  # (batch, U + 1, joint)
            logits = self.join(self.enc_proj(x)[:, :, None], pred[:, None])  # (batch, T, U + 1, V)
            return torchaudio.functional.rnnt_loss(logits, targets.int(), frames.int(), target_lengths.int(),
                                                   blank=0, reduction="mean")  # fmt: skip

        def decode(self, audio: Any, lengths: Any) -> list[list[int]]:
            """Greedy: at each frame, emit the best symbol until blank (at most max_symbols)."""
            x, frames = self.encode(audio, lengths)
            enc = self.enc_proj(x)
            out = []
            for b in range(enc.shape[0]):
                tokens: list[int] = []
                pred, state = self.predict(torch.zeros((1, 1), dtype=torch.long))
                for t in range(int(frames[b])):
                    for _ in range(self.max_symbols):
                        k = int(self.join(enc[b, t], pred[0, 0]).argmax())
                        if k == 0:
                            break
                        tokens.append(k)
                        pred, state = self.predict(torch.tensor([[k]]), state)
                out.append(tokens)
            return out

    return RNNT() if kind == "rnn-t" else CTC()


def load_ljspeech(root: Path) -> list[tuple[Any, str]]:
    import csv

    from shared.audio import decode

    items = []
    with open(root / "metadata.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
            samples, _, _ = decode(root / "wavs" / f"{row[0]}.wav", 16_000)
            items.append((samples.astype("float32"), row[-1].strip().lower()))
    return items


def train_asr(job: Any, root: Path, reporter: Any, checkpoints: Any, stop: threading.Event) -> str:
    """Seed 000's ``conformer`` (CTC) or ``rnn-t`` on an LJSpeech-style dataset."""
    import torch

    cfg = job.advanced_config or {}
    torch.manual_seed(int(cfg.get("seed", 0)))
    items = load_ljspeech(root)
    vocab = ["<blank>", *sorted({ch for _, text in items for ch in text})]
    index = {ch: i for i, ch in enumerate(vocab)}
    n_val = max(1, len(items) // 10) if len(items) >= 10 else len(items)
    train, val = items[: len(items) - n_val] or items, items[len(items) - n_val :]
    dim, layers = int(cfg.get("dim", 144)), int(cfg.get("layers", 4))
    model = asr_model(job.model_name, len(vocab), dim=dim, layers=layers)
    opt = torch.optim.AdamW(model.parameters(), lr=job.learning_rate)
    start, best = 1, math.inf
    if cfg.get("resume_from"):
        state = checkpoints.load(cfg["resume_from"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best = state["epoch"] + 1, state.get("best", best)
    interval = float(cfg.get("checkpoint_interval_s", 60))
    best_weights, last_save = None, time.monotonic()

    def batch(rows: list) -> tuple[Any, Any, Any, Any]:
        pad = torch.nn.utils.rnn.pad_sequence
        audio = pad([torch.from_numpy(a) for a, _ in rows], batch_first=True)
        ids = [
            torch.tensor([index[ch] for ch in t if ch in index], dtype=torch.long) for _, t in rows
        ]
        return (audio, torch.tensor([len(a) for a, _ in rows]), pad(ids, batch_first=True),
                torch.tensor([len(i) for i in ids]))  # fmt: skip

    def state(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                "vocab": vocab, "framework": "torchaudio", "model_name": job.model_name,
                "dim": dim, "layers": layers}  # fmt: skip

    steps = math.ceil(len(train) / job.batch_size)
    for epoch in range(start, job.total_epochs + 1):
        model.train()
        order = torch.randperm(len(train)).tolist()
        total = 0.0
        for step in range(1, steps + 1):
            if stop.is_set():
                checkpoints.save(state(epoch - 1), epoch - 1, best=best_weights)
                return "stopped"
            loss = model.loss(
                *batch(
                    [train[i] for i in order[(step - 1) * job.batch_size : step * job.batch_size]]
                )
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item()
            reporter.on_step(epoch, step, steps, loss.item(), opt.param_groups[0]["lr"])
        model.eval()
        with torch.no_grad():
            audio, lengths, targets, target_lengths = batch(val)
            val_loss = model.loss(audio, lengths, targets, target_lengths).item()
            hyps = ["".join(vocab[k] for k in seq) for seq in model.decode(audio, lengths)]
        wer, cer = error_rates([t for _, t in val], hyps)
        reporter.on_epoch_end(epoch, total / steps, {"val_loss": val_loss, "wer": wer, "cer": cer,
                                                     "sample": hyps[0][:200]}, opt.param_groups[0]["lr"])  # fmt: skip
        if cer < best:
            best = cer
            best_weights = {**state(epoch), "optimizer": None,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}  # fmt: skip
        if epoch == job.total_epochs or time.monotonic() - last_save >= interval:
            checkpoints.save(state(epoch), epoch, best=best_weights)
            best_weights, last_save = None, time.monotonic()
    return "completed"


TASKS["torchaudio"] = train_asr
