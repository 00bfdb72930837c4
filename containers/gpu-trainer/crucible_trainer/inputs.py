"""What every framework's predictions share: decoding an input and ranking classes."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

# Pillow's own opener, kept before ultralytics replaces Image.open (on import) with one that
# answers an unidentified file by installing and importing a HEIF plugin: an upload that
# is not an image must be a 400, never a package install or a 500.
_open = Image.open if Image.open.__module__ == "PIL.Image" else None  # None: replaced already


class BadInput(ValueError):
    """The input cannot be predicted on (answered as 400)."""


def image(data: bytes) -> Any:
    """An uploaded image as RGB (PIL), or :class:`BadInput`."""
    try:
        img = (_open or Image.open)(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ImportError):
        raise BadInput("Not an image file that can be read (PNG, JPEG, BMP, WebP, ...)") from None
    return img.convert("RGB")


def top_k(probs: Any, names: list[str], k: int, threshold: float) -> list[dict[str, Any]]:
    """The ``k`` likeliest classes of a probability vector, those at or over ``threshold``."""
    conf, idx = probs.topk(min(k, len(names)))
    return [
        {"label": names[i], "label_id": i, "confidence": round(c, 6)}
        for c, i in zip(conf.tolist(), idx.tolist(), strict=True)
        if c >= threshold
    ]
