"""Pure validation metrics: classification (from labels or a confusion matrix),
seed 002's per-image results, and speech error rates."""

from __future__ import annotations

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
        "precision": sum(ps) / n,
        "recall": sum(rs) / n,
        "f1": sum(fs) / n,
        "per_class": per_class,
        "confusion_matrix": cm,
    }


def per_sample(
    samples: list[tuple[str, int]], root: Path, top: list, classes: list[str]
) -> list[dict]:
    """Seed 002's per-image validation results: truth, prediction and top-5."""
    out = []
    for i, ((path, truth), (conf, idx)) in enumerate(zip(samples, top, strict=True), 1):
        out.append(
            {
                "id": i,
                "image_path": Path(path).relative_to(root).as_posix(),
                "image_name": Path(path).name,
                "true_label": classes[truth],
                "true_label_id": truth,
                "predicted_label": classes[idx[0]],
                "predicted_label_id": idx[0],
                "confidence": round(conf[0], 6),
                "is_correct": idx[0] == truth,
                "top5_predictions": [
                    {"label": classes[k], "confidence": round(c, 6)}
                    for c, k in zip(conf, idx, strict=True)
                ],
            }
        )
    return out


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
    pairs = list(zip(refs, hyps, strict=True))
    words = sum(edit_distance(r.split(), h.split()) for r, h in pairs)
    chars = sum(edit_distance(list(r), list(h)) for r, h in pairs)
    return words / max(1, sum(len(r.split()) for r in refs)), chars / max(
        1, sum(len(r) for r in refs)
    )
