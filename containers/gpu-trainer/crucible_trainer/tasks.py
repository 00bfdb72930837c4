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


def greedy_ctc(log_probs: Any, lengths: Any, vocab: list[str]) -> list[str]:
    """Best path: argmax per frame, repeats collapsed, blanks (index 0) dropped."""
    out = []
    for seq, n in zip(log_probs.argmax(-1).tolist(), lengths.tolist(), strict=True):
        chars, prev = [], 0
        for k in seq[:n]:
            if k != prev and k != 0:
                chars.append(vocab[k])
            prev = k
        out.append("".join(chars))
    return out


class ConformerCTC:
    """Log-mel features -> linear -> torchaudio Conformer -> linear over characters."""

    def __new__(cls, vocab_size: int, dim: int = 144, layers: int = 4, heads: int = 4):
        import torch
        import torchaudio

        class Model(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.mel = torchaudio.transforms.MelSpectrogram(
                    16_000, n_fft=400, hop_length=160, n_mels=80
                )
                self.inp = torch.nn.Linear(80, dim)
                self.conformer = torchaudio.models.Conformer(
                    input_dim=dim,
                    num_heads=heads,
                    ffn_dim=4 * dim,
                    num_layers=layers,
                    depthwise_conv_kernel_size=15,
                )
                self.out = torch.nn.Linear(dim, vocab_size)

            def forward(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
                feats = (self.mel(audio) + 1e-6).log().transpose(1, 2)  # (batch, frames, mels)
                frames = (lengths // 160 + 1).clamp(max=feats.shape[1])
                x, frames = self.conformer(self.inp(feats), frames)
                return self.out(x).log_softmax(-1), frames

        return Model()


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
    """Conformer + CTC with greedy decoding (seed 000's ``conformer``)."""
    import torch

    cfg = job.advanced_config or {}
    torch.manual_seed(int(cfg.get("seed", 0)))
    items = load_ljspeech(root)
    vocab = ["<blank>", *sorted({ch for _, text in items for ch in text})]
    index = {ch: i for i, ch in enumerate(vocab)}
    n_val = max(1, len(items) // 10) if len(items) >= 10 else len(items)
    train, val = items[: len(items) - n_val] or items, items[len(items) - n_val :]
    model = ConformerCTC(len(vocab), dim=int(cfg.get("dim", 144)), layers=int(cfg.get("layers", 4)))
    opt = torch.optim.AdamW(model.parameters(), lr=job.learning_rate)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    start, best = 1, math.inf
    if cfg.get("resume_from"):
        state = checkpoints.load(cfg["resume_from"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best = state["epoch"] + 1, state.get("best", best)
    interval = float(cfg.get("checkpoint_interval_s", 60))
    best_weights, last_save = None, time.monotonic()

    def batch(rows: list) -> tuple[Any, Any, Any, Any]:
        audio = torch.nn.utils.rnn.pad_sequence(
            [torch.from_numpy(a) for a, _ in rows], batch_first=True
        )
        targets = torch.tensor([index[ch] for _, t in rows for ch in t if ch in index])
        return (audio, torch.tensor([len(a) for a, _ in rows]), targets,
                torch.tensor([sum(ch in index for ch in t) for _, t in rows]))  # fmt: skip

    def state(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                "vocab": vocab, "framework": "torchaudio", "model_name": job.model_name,
                "dim": int(cfg.get("dim", 144)), "layers": int(cfg.get("layers", 4))}  # fmt: skip

    steps = math.ceil(len(train) / job.batch_size)
    for epoch in range(start, job.total_epochs + 1):
        model.train()
        order = torch.randperm(len(train)).tolist()
        total = 0.0
        for step in range(1, steps + 1):
            if stop.is_set():
                checkpoints.save(state(epoch - 1), epoch - 1, best=best_weights)
                return "stopped"
            rows = [train[i] for i in order[(step - 1) * job.batch_size : step * job.batch_size]]
            audio, lengths, targets, target_lengths = batch(rows)
            log_probs, frames = model(audio, lengths)
            loss = ctc(log_probs.transpose(0, 1), targets, frames, target_lengths)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item()
            reporter.on_step(epoch, step, steps, loss.item(), opt.param_groups[0]["lr"])
        model.eval()
        with torch.no_grad():
            audio, lengths, targets, target_lengths = batch(val)
            log_probs, frames = model(audio, lengths)
            val_loss = ctc(log_probs.transpose(0, 1), targets, frames, target_lengths).item()
            hyps = greedy_ctc(log_probs, frames, vocab)
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
