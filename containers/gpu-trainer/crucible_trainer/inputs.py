"""What every framework's predictions share: decoding an input and ranking classes."""

from __future__ import annotations

import io
from typing import Any


class BadInput(ValueError):
    """The input cannot be predicted on (answered as 400)."""


def image(data: bytes) -> Any:
    """An uploaded image as RGB (PIL), or :class:`BadInput`."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"Not an image file: {exc}") from None
    return img.convert("RGB")


def top_k(probs: Any, names: list[str], k: int, threshold: float) -> list[dict[str, Any]]:
    """The ``k`` likeliest classes of a probability vector, those at or over ``threshold``."""
    conf, idx = probs.topk(min(k, len(names)))
    return [
        {"label": names[i], "label_id": i, "confidence": round(c, 6)}
        for c, i in zip(conf.tolist(), idx.tolist(), strict=True)
        if c >= threshold
    ]
