"""Dataset formats: what is in an uploaded dataset (pure code, no ML imports).

An uploaded dataset is one zip. :func:`inspect` opens it without trusting it (the
checks of shared/archives.py: zip slip, symlinks, encryption, entry count, bombs),
recognises its layout and returns its statistics:

* ``imagefolder`` — ``<class>/<image>``, optionally under ``train/``, ``val/``, ``test/``;
* ``yolo`` — ``data.yaml`` (``names``) with ``images/`` and ``labels/*.txt``
  (``class cx cy w h``, normalised); every path it names stays inside the dataset;
* ``coco`` — a COCO ``instances*.json`` (images, annotations, categories) beside its
  images; the same statistics as YOLO, computed from the annotations;
* ``ljspeech`` — ``metadata.csv`` (``id|text[|normalized]``) and ``wavs/<id>.wav``.

Inspection reads only what it parses, as a stream and within bounds: each parsed
member (``data.yaml``, a label file, a COCO JSON, ``metadata.csv``) at most
:data:`~shared.archives.MAX_PARSED_BYTES`, only the header of each WAV, and
:data:`~shared.archives.MAX_READ_BYTES` in all; a member over its bound is refused by
its declared size before a byte of it is decompressed. Statistics are bounded too (:data:`MAX_CLASSES` classes, names of at
most :data:`MAX_CLASS_NAME` characters). Last, every member is decompressed once as a
stream (nothing kept) against its CRC-32: a damaged archive is refused at upload, not
when a training job unpacks it.

Malformed archives raise :class:`InvalidDataset` saying what to fix.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import wave
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.archives import (
    Archive,
    InvalidDataset,
    members,
    open_zip,
)

FORMATS = ("imagefolder", "yolo", "coco", "ljspeech")
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val", "valid", "test")
WAV_HEADER_BYTES = 8 * 1024  # what is read of each LJSpeech WAV: its header, not its audio
MAX_CLASSES = 1000  # ImageNet's count; every trainer here handles it
MAX_CLASS_NAME = 128  # characters; the longest ImageNet class description is under 100


@dataclass
class DatasetStats:
    format: str
    file_count: int
    total_size_bytes: int
    num_classes: int
    class_distribution: dict[str, int]
    splits: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_classes(names: list[str], source: str) -> None:
    if len(names) > MAX_CLASSES:
        raise InvalidDataset(
            f"{source} has {len(names)} classes; at most {MAX_CLASSES} are supported"
        )
    for name in names:
        if len(name) > MAX_CLASS_NAME:
            raise InvalidDataset(
                f"{source}: the class name '{name[:40]}...' is {len(name)} characters long; "
                f"at most {MAX_CLASS_NAME} are allowed"
            )


def inspect(source: str | IO[bytes], declared: str | None = None) -> DatasetStats:
    """Statistics of a dataset zip, detecting its format unless ``declared``."""
    with open_zip(source) as zf:
        files = members(zf)
        archive = Archive(zf, files)
        fmt = declared if declared and declared != "auto" else _detect(archive.rel)
        if fmt not in FORMATS:
            raise InvalidDataset(
                f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}", field="format"
            )
        reader = {"imagefolder": _imagefolder, "yolo": _yolo, "coco": _coco, "ljspeech": _ljspeech}[
            fmt
        ]
        stats = reader(archive)
        _check_classes(list(stats.class_distribution), "The dataset")
        archive.verify()
        stats.total_size_bytes = sum(f.file_size for f in files)
        return stats


def _detect(rel: dict[str, zipfile.ZipInfo]) -> str:
    names = set(rel)
    if "metadata.csv" in names and any(n.startswith("wavs/") for n in names):
        return "ljspeech"
    if any(PurePosixPath(n).name in ("data.yaml", "dataset.yaml") for n in names):
        return "yolo"
    if any(n.endswith(".json") and ("annotations/" in n or "instances" in n) for n in names):
        return "coco"
    if any(
        PurePosixPath(n).suffix.lower() in IMAGE_EXT and len(PurePosixPath(n).parts) >= 2
        for n in names
    ):
        return "imagefolder"
    raise InvalidDataset(
        "Could not recognise the layout: expected <class>/<image> folders (imagefolder), data.yaml with "
        "images/ and labels/ (YOLO), a COCO annotations JSON, or metadata.csv with wavs/ (LJSpeech)",
        field="format",
    )


def _imagefolder(a: Archive) -> DatasetStats:
    classes: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    for name in a.rel:
        p = PurePosixPath(name)
        if p.suffix.lower() not in IMAGE_EXT:
            continue
        parts = p.parts
        split = parts[0] if parts[0] in SPLITS else "train"
        cls_parts = parts[1:] if parts[0] in SPLITS else parts
        if len(cls_parts) != 2:
            raise InvalidDataset(
                f"'{name}' is not <class>/<image> (optionally under train/, val/ or test/)"
            )
        classes[cls_parts[0]] += 1
        splits["val" if split == "valid" else split] += 1
        if len(classes) > MAX_CLASSES:
            raise InvalidDataset(f"The dataset has more than {MAX_CLASSES} class folders")
    if not classes:
        raise InvalidDataset("No images found (jpg, png, bmp, webp, gif, tif)")
    if len(classes) < 2:
        raise InvalidDataset(
            f"Classification needs at least 2 classes; found only '{next(iter(classes))}'"
        )
    return DatasetStats(
        "imagefolder",
        sum(classes.values()),
        0,
        len(classes),
        dict(sorted(classes.items())),
        dict(splits),
    )


def yolo_names(cfg: dict, cfg_name: str) -> list[str]:
    names = cfg.get("names")
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise InvalidDataset(
                f"{cfg_name}: the keys of 'names' must be class indices (0, 1, ...)"
            )
        if sorted(names) != list(range(len(names))):  # labels index the list: no gaps
            raise InvalidDataset(
                f"{cfg_name}: the keys of 'names' must be 0 to {len(names) - 1}, each once"
            )
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise InvalidDataset(f"{cfg_name} must list the class names under 'names'")
    if not all(isinstance(n, str | int | float) and not isinstance(n, bool) for n in names):
        raise InvalidDataset(f"{cfg_name}: each entry of 'names' must be a class name")
    names = [str(n) for n in names]
    _check_classes(names, cfg_name)
    return names


_DRIVE = re.compile(r"^[A-Za-z]:")


def _yolo_paths(a: Archive, cfg: dict, cfg_name: str) -> None:
    """``path``, ``train``, ``val`` and ``test`` name folders inside the dataset: the
    trainer reads what they name, so nothing absolute, nothing above the dataset."""
    for key in ("path", "train", "val", "test"):
        value = cfg.get(key)
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, str) or not v.strip():
                raise InvalidDataset(f"{cfg_name}: '{key}' must be a folder inside the dataset")
            p = PurePosixPath(v.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or _DRIVE.match(v) or v.startswith("~"):
                raise InvalidDataset(
                    f"{cfg_name}: '{key}: {v}' points outside the dataset; give a folder relative "
                    f"to {cfg_name} (e.g. 'images/train'), or leave '{key}' out"
                )
            if key != "path":
                base = PurePosixPath(cfg_name).parent / str(cfg.get("path") or ".") / p
                if str(base) in a.rel:  # a file: an image list whose lines could name any path
                    raise InvalidDataset(
                        f"{cfg_name}: '{key}: {v}' is a file; give the folder of the images "
                        "(image list files are not supported)"
                    )


def _yolo(a: Archive) -> DatasetStats:
    import yaml

    cfg_name = next(n for n in a.rel if PurePosixPath(n).name in ("data.yaml", "dataset.yaml"))
    try:
        cfg = yaml.safe_load(a.text(cfg_name)) or {}
    except yaml.YAMLError as exc:
        raise InvalidDataset(f"{cfg_name} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise InvalidDataset(f"{cfg_name} must be a mapping with 'names'")
    names = yolo_names(cfg, cfg_name)
    _yolo_paths(a, cfg, cfg_name)
    images = [n for n in a.rel if PurePosixPath(n).suffix.lower() in IMAGE_EXT]
    labels = {n for n in a.rel if n.endswith(".txt") and "labels/" in n}
    counts: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    for img in images:
        label = img.replace("images/", "labels/", 1).rsplit(".", 1)[0] + ".txt"
        split = next((s for s in SPLITS if f"/{s}/" in f"/{img}"), "train")
        splits["val" if split == "valid" else split] += 1
        if label not in labels:
            continue  # an image without a label file is a background image
        for lineno, line in enumerate(a.text(label).splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls, *box = int(parts[0]), *map(float, parts[1:])
            except (ValueError, IndexError):
                raise InvalidDataset(
                    f"{label}:{lineno}: expected 'class cx cy w h', got '{line[:80]}'"
                ) from None
            if len(box) != 4 or not all(0 <= v <= 1 for v in box):
                raise InvalidDataset(f"{label}:{lineno}: box values must be 4 numbers in [0, 1]")
            if not 0 <= cls < len(names):
                raise InvalidDataset(
                    f"{label}:{lineno}: class {cls} is not in names (0..{len(names) - 1})"
                )
            counts[names[cls]] += 1
    if not images:
        raise InvalidDataset("No images under images/")
    return DatasetStats(
        "yolo",
        len(images),
        0,
        len(names),
        {n: counts.get(n, 0) for n in names},
        dict(splits),
        {"labelled_images": len(labels)},
    )


class _CocoImage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    file_name: str


class _CocoCategory(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    name: str


class _CocoAnnotation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image_id: int
    category_id: int


class _CocoFile(BaseModel):
    """What inspection needs of a COCO file; JSON parsed and checked in one pass (depth,
    numbers and types bounded by pydantic-core), whatever else it holds is ignored."""

    model_config = ConfigDict(extra="ignore")
    images: list[_CocoImage]
    annotations: list[_CocoAnnotation]
    categories: list[_CocoCategory]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    return f"{where}: {err['msg']}" if where else err["msg"]


def _coco(a: Archive) -> DatasetStats:
    ann_files = [
        n for n in a.rel if n.endswith(".json") and ("annotations/" in n or "instances" in n)
    ]
    counts: Counter[str] = Counter()
    categories: dict[int, str] = {}
    splits: Counter[str] = Counter()
    image_names = {
        PurePosixPath(n).name for n in a.rel if PurePosixPath(n).suffix.lower() in IMAGE_EXT
    }
    n_images = 0
    for ann in ann_files:
        try:
            doc = _CocoFile.model_validate_json(a.read(ann))
        except ValidationError as exc:
            raise InvalidDataset(
                f"{ann} is not a COCO file (images, annotations, categories): {_first_error(exc)}"
            ) from None
        cats = {c.id: c.name for c in doc.categories}
        _check_classes(list(cats.values()), ann)
        images = {i.id: i for i in doc.images}
        missing = [
            i.file_name
            for i in images.values()
            if PurePosixPath(i.file_name).name not in image_names
        ]
        if missing:
            raise InvalidDataset(
                f"{ann} names {len(missing)} image(s) not in the archive, e.g. '{missing[0][:80]}'"
            )
        for n, x in enumerate(doc.annotations):
            if x.category_id not in cats or x.image_id not in images:
                raise InvalidDataset(
                    f"{ann}: annotations[{n}] refers to an unknown image or category"
                )
            counts[cats[x.category_id]] += 1
        categories.update(cats)
        split = next((s for s in SPLITS if s in PurePosixPath(ann).stem), "train")
        splits["val" if split == "valid" else split] += len(images)
        n_images += len(images)
    names = [categories[k] for k in sorted(categories)]
    return DatasetStats(
        "coco", n_images, 0, len(names), {n: counts.get(n, 0) for n in names}, dict(splits)
    )


def _ljspeech(a: Archive) -> DatasetStats:
    try:
        rows = list(
            csv.reader(io.StringIO(a.text("metadata.csv")), delimiter="|", quoting=csv.QUOTE_NONE)
        )
    except csv.Error as exc:
        raise InvalidDataset(f"metadata.csv is not 'id|text' lines: {exc}") from None
    if not rows:
        raise InvalidDataset("metadata.csv is empty")
    seconds, chars = 0.0, Counter[str]()
    for lineno, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0] or not row[-1].strip():
            raise InvalidDataset(
                f"metadata.csv:{lineno}: expected 'id|text' or 'id|text|normalized text'"
            )
        wav = f"wavs/{row[0]}.wav"
        if wav not in a.rel:
            raise InvalidDataset(f"metadata.csv:{lineno}: {wav} is missing from the archive")
        try:  # the header says how long it is: the audio itself is not read
            with wave.open(io.BytesIO(a.head(wav, WAV_HEADER_BYTES))) as w:
                rate, frames = w.getframerate(), w.getnframes()
                if rate <= 0:
                    raise wave.Error("its sample rate is 0")
                held = a.rel[wav].file_size // (w.getnchannels() * w.getsampwidth())
                if frames > held:  # a header that lies (or a truncated file)
                    raise InvalidDataset(
                        f"{wav}'s header declares {frames / rate:.1f} s of audio but the file "
                        f"holds at most {held / rate:.1f} s: it is truncated or its header is wrong"
                    )
                seconds += frames / rate
        except (
            wave.Error,
            EOFError,
            struct.error,
            ValueError,
            RuntimeError,
            ArithmeticError,
        ) as exc:
            raise InvalidDataset(
                f"{wav} is not a PCM WAV file (or its header passes "
                f"{WAV_HEADER_BYTES // 1024} KiB): {exc}"
            ) from None
        chars.update(row[-1].lower())
    return DatasetStats(
        "ljspeech",
        len(rows),
        0,
        0,
        {},
        {"train": len(rows)},
        {"utterances": len(rows), "total_seconds": round(seconds, 3), "characters": len(chars)},
    )


def validate(
    stats: DatasetStats, expected_format: str | None, expected_classes: int | None
) -> dict[str, Any]:
    """Seed 003's validation report: problems, warnings (class imbalance) and advice."""
    issues, advice = [], []
    if expected_format and expected_format != stats.format:
        issues.append(
            {
                "severity": "error",
                "message": f"Expected {expected_format}, found {stats.format}",
                "details": {},
            }
        )
    if expected_classes is not None and expected_classes != stats.num_classes:
        issues.append(
            {
                "severity": "error",
                "message": f"Expected {expected_classes} classes, found {stats.num_classes}",
                "details": stats.class_distribution,
            }
        )
    counts = [c for c in stats.class_distribution.values()]
    if counts and max(counts) > 0:
        spread = (max(counts) - min(counts)) / max(counts)
        if spread > 0.1:
            issues.append(
                {
                    "severity": "warning",
                    "message": f"Class imbalance: the smallest class is {spread:.0%} below the largest",
                    "details": stats.class_distribution,
                }
            )
            advice.append("Use augmentation or class weights to balance the classes.")
        if min(counts) == 0:
            issues.append(
                {
                    "severity": "warning",
                    "message": "Some classes have no examples",
                    "details": {k: v for k, v in stats.class_distribution.items() if v == 0},
                }
            )
    if stats.format != "ljspeech" and "val" not in stats.splits:
        advice.append(
            "No validation split: training validates on the training data, so its metrics "
            "will be optimistic; add a val/ split."
        )
    return {
        "valid": not any(i["severity"] == "error" for i in issues),
        "issues": issues,
        "recommendations": advice,
    }
