"""Dataset archives: safe extraction and the format readers (pure code, no ML imports).

An uploaded dataset is one zip. :func:`inspect` opens it without trusting it — no
absolute or ``..`` paths (zip slip), no symlinks, bounded entry count and
uncompressed size (zip bombs) — recognises its layout and returns its statistics:

* ``imagefolder`` — ``<class>/<image>``, optionally under ``train/``, ``val/``, ``test/``;
* ``yolo`` — ``data.yaml`` (``names``) with ``images/`` and ``labels/*.txt``
  (``class cx cy w h``, normalised);
* ``coco`` — a COCO ``instances*.json`` (images, annotations, categories) beside its
  images; the same statistics as YOLO, computed from the annotations;
* ``ljspeech`` — ``metadata.csv`` (``id|text[|normalized]``) and ``wavs/<id>.wav``.

Malformed archives raise :class:`InvalidDataset` saying what to fix.
"""

from __future__ import annotations

import csv
import io
import json
import stat
import wave
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from shared.errors import InvalidInput

FORMATS = ("imagefolder", "yolo", "coco", "ljspeech")
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val", "valid", "test")
MAX_ENTRIES = 200_000
MAX_UNCOMPRESSED = 20 * 1024**3  # 20 GiB
MAX_RATIO = 200  # uncompressed / compressed, per entry


class InvalidDataset(InvalidInput):
    code = "INVALID_DATASET"


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


def _members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's files, refusing anything that could escape or explode."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InvalidDataset(
            f"The archive has {len(infos)} entries; at most {MAX_ENTRIES} are allowed"
        )
    total, files = 0, []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if (
            name.startswith(("/", "\\"))
            or ":" in path.parts[0]
            or ".." in path.parts
            or "\\" in name
        ):
            raise InvalidDataset(f"Unsafe path in the archive: '{name}'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidDataset(f"Symbolic links are not allowed in datasets: '{name}'")
        if info.is_dir():
            continue
        total += info.file_size
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidDataset(
                f"'{name}' expands {info.file_size // max(info.compress_size, 1)}x: refused as a zip bomb"
            )
        if total > MAX_UNCOMPRESSED:
            raise InvalidDataset(f"The archive expands beyond {MAX_UNCOMPRESSED // 1024**3} GiB")
        if "__MACOSX" in path.parts or path.name.startswith("."):
            continue
        files.append(info)
    if not files:
        raise InvalidDataset("The archive contains no files")
    return files


def _strip_root(names: list[str]) -> str:
    """A single top-level folder that wraps everything (``mydata/...``), or ''."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        return tops.pop() + "/"
    return ""


def inspect(source: str | IO[bytes], declared: str | None = None) -> DatasetStats:
    """Statistics of a dataset zip, detecting its format unless ``declared``."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDataset(f"Not a readable zip archive: {exc}") from None
    with zf:
        files = _members(zf)
        root = _strip_root([f.filename for f in files])
        rel = {f.filename[len(root) :]: f for f in files}
        fmt = declared if declared and declared != "auto" else _detect(rel)
        if fmt not in FORMATS:
            raise InvalidDataset(
                f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}", field="format"
            )
        reader = {"imagefolder": _imagefolder, "yolo": _yolo, "coco": _coco, "ljspeech": _ljspeech}[
            fmt
        ]
        stats = reader(zf, rel, root)
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


def _imagefolder(zf: zipfile.ZipFile, rel: dict[str, zipfile.ZipInfo], root: str) -> DatasetStats:
    classes: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    for name in rel:
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


def _yolo(zf: zipfile.ZipFile, rel: dict[str, zipfile.ZipInfo], root: str) -> DatasetStats:
    import yaml

    cfg_name = next(n for n in rel if PurePosixPath(n).name in ("data.yaml", "dataset.yaml"))
    try:
        cfg = yaml.safe_load(zf.read(rel[cfg_name])) or {}
    except yaml.YAMLError as exc:
        raise InvalidDataset(f"{cfg_name} is not valid YAML: {exc}") from None
    names = cfg.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise InvalidDataset(f"{cfg_name} must list the class names under 'names'")
    images = [n for n in rel if PurePosixPath(n).suffix.lower() in IMAGE_EXT]
    labels = {n for n in rel if n.endswith(".txt") and "labels/" in n}
    counts: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    for img in images:
        label = img.replace("images/", "labels/", 1).rsplit(".", 1)[0] + ".txt"
        split = next((s for s in SPLITS if f"/{s}/" in f"/{img}"), "train")
        splits["val" if split == "valid" else split] += 1
        if label not in labels:
            continue  # an image without a label file is a background image
        for lineno, line in enumerate(zf.read(rel[label]).decode().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls, *box = int(parts[0]), *map(float, parts[1:])
            except (ValueError, IndexError):
                raise InvalidDataset(
                    f"{label}:{lineno}: expected 'class cx cy w h', got '{line}'"
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


def _coco(zf: zipfile.ZipFile, rel: dict[str, zipfile.ZipInfo], root: str) -> DatasetStats:
    ann_files = [
        n for n in rel if n.endswith(".json") and ("annotations/" in n or "instances" in n)
    ]
    counts: Counter[str] = Counter()
    categories: dict[int, str] = {}
    splits: Counter[str] = Counter()
    image_names = {
        PurePosixPath(n).name for n in rel if PurePosixPath(n).suffix.lower() in IMAGE_EXT
    }
    n_images = 0
    for ann in ann_files:
        try:
            doc = json.loads(zf.read(rel[ann]))
            cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            images = {int(i["id"]): i for i in doc["images"]}
            annotations = doc["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidDataset(
                f"{ann} is not a COCO file (images, annotations, categories): {exc}"
            ) from None
        missing = [
            i["file_name"]
            for i in images.values()
            if PurePosixPath(i["file_name"]).name not in image_names
        ]
        if missing:
            raise InvalidDataset(
                f"{ann} names {len(missing)} image(s) not in the archive, e.g. '{missing[0]}'"
            )
        for a in annotations:
            if a.get("category_id") not in cats or a.get("image_id") not in images:
                raise InvalidDataset(
                    f"{ann}: annotation {a.get('id')} refers to an unknown image or category"
                )
            counts[cats[a["category_id"]]] += 1
        categories.update(cats)
        split = next((s for s in SPLITS if s in PurePosixPath(ann).stem), "train")
        splits["val" if split == "valid" else split] += len(images)
        n_images += len(images)
    names = [categories[k] for k in sorted(categories)]
    return DatasetStats(
        "coco", n_images, 0, len(names), {n: counts.get(n, 0) for n in names}, dict(splits)
    )


def _ljspeech(zf: zipfile.ZipFile, rel: dict[str, zipfile.ZipInfo], root: str) -> DatasetStats:
    rows = list(
        csv.reader(
            io.StringIO(zf.read(rel["metadata.csv"]).decode("utf-8")),
            delimiter="|",
            quoting=csv.QUOTE_NONE,
        )
    )
    if not rows:
        raise InvalidDataset("metadata.csv is empty")
    seconds, chars = 0.0, Counter[str]()
    for lineno, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0] or not row[-1].strip():
            raise InvalidDataset(
                f"metadata.csv:{lineno}: expected 'id|text' or 'id|text|normalized text'"
            )
        wav = f"wavs/{row[0]}.wav"
        if wav not in rel:
            raise InvalidDataset(f"metadata.csv:{lineno}: {wav} is missing from the archive")
        try:
            with wave.open(io.BytesIO(zf.read(rel[wav]))) as w:
                seconds += w.getnframes() / w.getframerate()
        except (wave.Error, EOFError) as exc:
            raise InvalidDataset(f"{wav} is not a PCM WAV file: {exc}") from None
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


def extract(source: str | IO[bytes], dest: str) -> str:
    """Extract a dataset zip under ``dest`` with the same checks as :func:`inspect`;
    returns the dataset root (inside a single wrapping folder, if there is one)."""
    from pathlib import Path

    base = Path(dest).resolve()
    with zipfile.ZipFile(source) as zf:
        files = _members(zf)
        for info in files:
            target = (base / info.filename).resolve()
            if not target.is_relative_to(base):  # belt and braces after _members
                raise InvalidDataset(f"Unsafe path in the archive: '{info.filename}'")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                out.write(src.read())
        root = _strip_root([f.filename for f in files])
    return str(base / root) if root else str(base)


def yolo_data_yaml(root: str, dest: str) -> str:
    """A ``data.yaml`` with absolute paths for an extracted YOLO or COCO dataset at ``root``,
    written under ``dest``; COCO annotations are converted to YOLO labels there first.
    Without a val split, train is validated on (ultralytics needs one)."""
    from pathlib import Path

    import yaml

    src, out = Path(root), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    found = next((p for n in ("data.yaml", "dataset.yaml") for p in sorted(src.rglob(n))), None)
    if found is not None:
        cfg = yaml.safe_load(found.read_text()) or {}
        base = Path(cfg.get("path") or found.parent)
        base = base if base.is_absolute() and base.is_dir() else found.parent
        names = cfg["names"]
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
        splits = {}
        for split in ("train", "val", "test"):
            for cand in (
                cfg.get(split),
                f"images/{split}",
                "images/valid" if split == "val" else None,
            ):
                if cand and (base / cand).exists():
                    splits[split] = str((base / cand).resolve())
                    break
        splits.setdefault("train", str((base / "images").resolve()))
    else:
        names, splits = _coco_to_yolo(src, out)
    splits.setdefault("train", splits.get("val") or next(iter(splits.values())))
    splits.setdefault("val", splits["train"])
    data = {"path": str(out.resolve()), **splits, "names": dict(enumerate(names))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return str(out / "data.yaml")


def _coco_to_yolo(src: Any, out: Any) -> tuple[list[str], dict[str, str]]:
    """COCO ``[x, y, w, h]`` pixel boxes -> ``labels/<split>/<stem>.txt`` with normalised
    ``class cx cy w h`` (classes in category-id order), images linked into ``images/<split>/``."""
    images_by_name = {p.name: p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXT}
    ann_files = sorted(
        p for p in src.rglob("*.json") if "annotations" in p.parts or "instances" in p.name
    )
    if not ann_files:
        raise InvalidDataset("No COCO annotations JSON found")
    docs = [(p, json.loads(p.read_text())) for p in ann_files]
    cat_ids = sorted({int(c["id"]) for _, d in docs for c in d["categories"]})
    names_by_id = {int(c["id"]): str(c["name"]) for _, d in docs for c in d["categories"]}
    index = {cid: i for i, cid in enumerate(cat_ids)}
    splits: dict[str, str] = {}
    for path, doc in docs:
        split = next((s for s in SPLITS if s in path.stem), "train")
        split = "val" if split == "valid" else split
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        lines: dict[int, list[str]] = {int(i["id"]): [] for i in doc["images"]}
        images = {int(i["id"]): i for i in doc["images"]}
        for a in doc["annotations"]:
            img = images[int(a["image_id"])]
            if not img.get("width") or not img.get("height"):
                raise InvalidDataset(f"{path.name}: image {img['id']} has no width/height")
            x, y, w, h = map(float, a["bbox"])
            W, H = float(img["width"]), float(img["height"])
            if w <= 0 or h <= 0:
                continue
            cx, cy = min(max((x + w / 2) / W, 0), 1), min(max((y + h / 2) / H, 0), 1)
            lines[int(a["image_id"])].append(
                f"{index[int(a['category_id'])]} {cx:.6f} {cy:.6f} {min(w / W, 1):.6f} {min(h / H, 1):.6f}"
            )
        for image_id, rows in lines.items():
            name = PurePosixPath(images[image_id]["file_name"]).name
            link = img_dir / name
            if not link.exists():
                link.symlink_to(images_by_name[name].resolve())
            (lbl_dir / f"{link.stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
        splits[split] = str(img_dir.resolve())
    return [names_by_id[c] for c in cat_ids], splits
