"""Small real datasets made in the tests: shape images, YOLO/COCO labels, espeak-free speech."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from tests.audio.synth import cry, wav_bytes


def png(shape: str, size: int = 32, seed: int = 0) -> bytes:
    """A small PNG of a circle or a square (Pillow comes with torchvision; fall back to PPM)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, np.uint8)
    c, r = size // 2 + rng.integers(-3, 4), size // 4 + rng.integers(0, 3)
    yy, xx = np.mgrid[:size, :size]
    mask = (
        ((yy - c) ** 2 + (xx - c) ** 2 <= r * r)
        if shape == "circle"
        else (abs(yy - c) <= r) & (abs(xx - c) <= r)
    )
    img[mask] = (200, 30, 30) if shape == "circle" else (30, 30, 200)
    try:
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(img).save(out, format="PNG")
        return out.getvalue()
    except ImportError:
        return f"P6 {size} {size} 255\n".encode() + img.tobytes()


def zip_of(files: dict[str, bytes]) -> bytes:
    """The same bytes for the same files, whenever it runs (a fixed date: parametrized
    tests are named by their arguments, and each xdist worker must collect the same)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def imagefolder(per_class: int = 6, root: str = "shapes/") -> bytes:
    files = {}
    for split, n in (("train", per_class), ("val", max(2, per_class // 3))):
        for cls in ("circle", "square"):
            for i in range(n):
                files[f"{root}{split}/{cls}/{i}.png"] = png(cls, seed=i)
    return zip_of(files)


def yolo(n: int = 4) -> bytes:
    files = {"data.yaml": b"names: [circle, square]\ntrain: images/train\nval: images/val\n"}
    for split in ("train", "val"):
        for i in range(n):
            files[f"images/{split}/{i}.png"] = png("circle" if i % 2 else "square", seed=i)
            files[f"labels/{split}/{i}.txt"] = f"{i % 2} 0.5 0.5 0.4 0.4\n".encode()
    return zip_of(files)


def coco(n: int = 4) -> bytes:
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(n)]
    anns = [
        {
            "id": i,
            "image_id": i,
            "category_id": 1 + i % 2,
            "bbox": [8, 8, 16, 16],
            "area": 256,
            "iscrowd": 0,
        }
        for i in range(n)
    ]
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
    }
    files = {f"images/{i}.png": png("circle", seed=i) for i in range(n)}
    files["annotations/instances_train.json"] = json.dumps(doc).encode()
    return zip_of(files)


def ljspeech(n: int = 3) -> bytes:
    files = {
        "metadata.csv": "\n".join(
            f"LJ{i:03d}|Hello number {i}.|hello number {i}" for i in range(n)
        ).encode()
    }
    for i in range(n):
        files[f"wavs/LJ{i:03d}.wav"] = wav_bytes(cry(16000, 1.0, [(0.1, 0.9, 200 + 20 * i)]), 16000)
    return zip_of(files)


def espeak_wav(text: str, tmp: str) -> bytes:
    """espeak-ng speech as 16 kHz mono PCM WAV bytes."""
    import subprocess
    import uuid
    from pathlib import Path

    from shared.audio import decode

    env = {"XDG_CONFIG_HOME": tmp, "XDG_RUNTIME_DIR": tmp, "PATH": "/usr/bin:/bin"}
    raw = Path(tmp) / f"raw-{uuid.uuid4().hex}.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True, env=env)
    samples, _, _ = decode(raw, 16_000)
    return wav_bytes(samples, 16_000)


def ljspeech_espeak(texts: list[str], tmp: str) -> bytes:
    """LJSpeech layout of espeak-ng speech (16 kHz mono PCM)."""
    files = {f"wavs/LJ{i:03d}.wav": espeak_wav(text, tmp) for i, text in enumerate(texts)}
    files["metadata.csv"] = "\n".join(f"LJ{i:03d}|{t}|{t}" for i, t in enumerate(texts)).encode()
    return zip_of(files)
