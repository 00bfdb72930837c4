"""Dataset archives: safe extraction and the format readers (pure code, no ML imports).

An uploaded dataset is one zip. :func:`inspect` opens it without trusting it — no
absolute or ``..`` paths (zip slip), no symlinks or encrypted entries, bounded entry
count and uncompressed size, and a bounded expansion ratio per entry and for the
archive as a whole (zip bombs) — recognises its layout and returns its statistics:

* ``imagefolder`` — ``<class>/<image>``, optionally under ``train/``, ``val/``, ``test/``;
* ``yolo`` — ``data.yaml`` (``names``) with ``images/`` and ``labels/*.txt``
  (``class cx cy w h``, normalised); every path it names stays inside the dataset;
* ``coco`` — a COCO ``instances*.json`` (images, annotations, categories) beside its
  images; the same statistics as YOLO, computed from the annotations;
* ``ljspeech`` — ``metadata.csv`` (``id|text[|normalized]``) and ``wavs/<id>.wav``.

Inspection reads only what it parses, as a stream and within bounds: each parsed
member (``data.yaml``, a label file, a COCO JSON, ``metadata.csv``) at most
:data:`MAX_PARSED_BYTES`, only the header of each WAV, and :data:`MAX_READ_BYTES` in
all; a member over its bound is refused by its declared size before a byte of it is
decompressed. Statistics are bounded too (:data:`MAX_CLASSES` classes, names of at
most :data:`MAX_CLASS_NAME` characters).

Malformed archives raise :class:`InvalidDataset` saying what to fix.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import stat
import wave
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from shared.errors import InvalidInput

FORMATS = ("imagefolder", "yolo", "coco", "ljspeech")
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val", "valid", "test")
MiB = 1024 * 1024
MAX_ENTRIES = 200_000
MAX_UNCOMPRESSED = 20 * 1024**3  # 20 GiB
MAX_RATIO = 200  # uncompressed / compressed: per entry, and for the archive as a whole
RATIO_FLOOR = 1 * MiB  # smaller than this (an entry, or the whole archive), any ratio is fine
# One member parsed whole: a COCO JSON of ~60,000 annotations, an LJSpeech metadata.csv of
# ~100,000 lines; parsed, ~10x that in memory. Larger COCO sets split their annotations.
MAX_PARSED_BYTES = 8 * MiB
MAX_READ_BYTES = 256 * MiB  # everything one inspection reads (labels, annotations, headers)
WAV_HEADER_BYTES = 8 * 1024  # what is read of each LJSpeech WAV: its header, not its audio
MAX_CLASSES = 1000  # ImageNet's count; every trainer here handles it
MAX_CLASS_NAME = 128  # characters; the longest ImageNet class description is under 100
# What a damaged or unsupported member raises when it is read.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)


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


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def _members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's files, refusing anything that could escape or explode."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InvalidDataset(
            f"The archive has {len(infos)} entries; at most {MAX_ENTRIES} are allowed"
        )
    total, packed, files = 0, 0, []
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
        if info.flag_bits & 0x1:
            raise InvalidDataset(f"Encrypted entries are not supported: '{name}'")
        total += info.file_size
        packed += info.compress_size
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidDataset(
                f"'{name}' expands {info.file_size // max(info.compress_size, 1)}x: refused as a zip bomb"
            )
        if total > MAX_UNCOMPRESSED:
            raise InvalidDataset(f"The archive expands beyond {MAX_UNCOMPRESSED // 1024**3} GiB")
        if "__MACOSX" in path.parts or path.name.startswith("."):
            continue
        files.append(info)
    # Many small entries, each under the floor, can expand as far as one big one.
    if total > RATIO_FLOOR and total > MAX_RATIO * max(packed, 1):
        raise InvalidDataset(
            f"The archive's {len(infos)} entries expand {total // max(packed, 1)}x in all "
            f"({_mib(total)} from {_mib(packed)}): refused as a zip bomb"
        )
    if not files:
        raise InvalidDataset("The archive contains no files")
    return files


def _strip_root(names: list[str]) -> str:
    """A single top-level folder that wraps everything (``mydata/...``), or ''."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        return tops.pop() + "/"
    return ""


class _Archive:
    """An open dataset zip, its files by path (inside a wrapping folder, if any), and
    the bytes inspection has read from it so far: every read is bounded."""

    def __init__(self, zf: zipfile.ZipFile, files: list[zipfile.ZipInfo]) -> None:
        self.zf = zf
        self.root = _strip_root([f.filename for f in files])
        self.rel = {f.filename[len(self.root) :]: f for f in files}
        self.read_bytes = 0

    def read(self, name: str, limit: int = MAX_PARSED_BYTES) -> bytes:
        """The whole of a member that is parsed; refused (unread) when over ``limit``."""
        info = self.rel[name]
        if info.file_size > limit:
            raise InvalidDataset(
                f"'{name}' is {_mib(info.file_size)}; files that inspection parses (data.yaml, "
                f"label files, COCO annotations, metadata.csv) may be at most {_mib(limit)} each"
            )
        data = self._take(name, info, limit + 1)
        if len(data) > limit:  # a member larger than the archive says (zipfile stops at its size)
            raise InvalidDataset(f"'{name}' is larger than {_mib(limit)}")
        return data

    def head(self, name: str, n: int) -> bytes:
        """At most the first ``n`` bytes of a member."""
        return self._take(name, self.rel[name], n)

    def text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(f"'{name}' is not UTF-8 text: {exc.reason}") from None

    def _take(self, name: str, info: zipfile.ZipInfo, n: int) -> bytes:
        if self.read_bytes + min(info.file_size, n) > MAX_READ_BYTES:
            raise InvalidDataset(
                f"Inspecting this archive would read more than {_mib(MAX_READ_BYTES)} of labels, "
                "annotations and headers; split it into smaller datasets"
            )
        try:
            with self.zf.open(info) as f:
                data = f.read(n)
        except _READ_ERRORS as exc:
            raise InvalidDataset(f"'{name}' cannot be read from the archive: {exc}") from None
        self.read_bytes += len(data)
        return data


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
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDataset(f"Not a readable zip archive: {exc}") from None
    with zf:
        files = _members(zf)
        archive = _Archive(zf, files)
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


def _imagefolder(a: _Archive) -> DatasetStats:
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


def _yolo_names(cfg: dict, cfg_name: str) -> list[str]:
    names = cfg.get("names")
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise InvalidDataset(
                f"{cfg_name}: the keys of 'names' must be class indices (0, 1, ...)"
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


def _yolo_paths(a: _Archive, cfg: dict, cfg_name: str) -> None:
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


def _yolo(a: _Archive) -> DatasetStats:
    import yaml

    cfg_name = next(n for n in a.rel if PurePosixPath(n).name in ("data.yaml", "dataset.yaml"))
    try:
        cfg = yaml.safe_load(a.text(cfg_name)) or {}
    except yaml.YAMLError as exc:
        raise InvalidDataset(f"{cfg_name} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise InvalidDataset(f"{cfg_name} must be a mapping with 'names'")
    names = _yolo_names(cfg, cfg_name)
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


def _coco(a: _Archive) -> DatasetStats:
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
        raw = a.read(ann)
        try:
            doc = json.loads(raw)
            cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            _check_classes(list(cats.values()), ann)
            images = {int(i["id"]): i for i in doc["images"]}
            annotations = doc["annotations"]
            missing = [
                i["file_name"]
                for i in images.values()
                if PurePosixPath(str(i["file_name"])).name not in image_names
            ]
            if missing:
                raise InvalidDataset(
                    f"{ann} names {len(missing)} image(s) not in the archive, e.g. '{missing[0]}'"
                )
            for x in annotations:
                if x.get("category_id") not in cats or x.get("image_id") not in images:
                    raise InvalidDataset(
                        f"{ann}: annotation {x.get('id')} refers to an unknown image or category"
                    )
                counts[cats[x["category_id"]]] += 1
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            RecursionError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:
            raise InvalidDataset(
                f"{ann} is not a COCO file (images, annotations, categories): {exc}"
            ) from None
        categories.update(cats)
        split = next((s for s in SPLITS if s in PurePosixPath(ann).stem), "train")
        splits["val" if split == "valid" else split] += len(images)
        n_images += len(images)
    names = [categories[k] for k in sorted(categories)]
    return DatasetStats(
        "coco", n_images, 0, len(names), {n: counts.get(n, 0) for n in names}, dict(splits)
    )


def _ljspeech(a: _Archive) -> DatasetStats:
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
                if w.getframerate() <= 0:
                    raise wave.Error("its sample rate is 0")
                seconds += w.getnframes() / w.getframerate()
        except (wave.Error, EOFError) as exc:
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
                shutil.copyfileobj(src, out, 1 << 20)  # streamed: a member may be GiBs
        root = _strip_root([f.filename for f in files])
    return str(base / root) if root else str(base)


def yolo_data_yaml(root: str, dest: str) -> str:
    """A ``data.yaml`` with absolute paths for an extracted YOLO or COCO dataset at ``root``,
    written under ``dest``; COCO annotations are converted to YOLO labels there first.
    Without a val split, train is validated on (ultralytics needs one)."""
    from pathlib import Path

    import yaml

    src, out = Path(root).resolve(), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    found = next((p for n in ("data.yaml", "dataset.yaml") for p in sorted(src.rglob(n))), None)
    if found is not None:
        if found.stat().st_size > MAX_PARSED_BYTES:
            raise InvalidDataset(f"{found.name} is larger than {_mib(MAX_PARSED_BYTES)}")
        cfg = yaml.safe_load(found.read_text()) or {}
        if not isinstance(cfg, dict):
            raise InvalidDataset(f"{found.name} must be a mapping with 'names'")
        names = _yolo_names(cfg, found.name)

        def inside(path: Path) -> Path | None:
            """``path`` resolved, if it is a folder of the dataset (never anything outside)."""
            path = path.resolve()
            return path if path.is_relative_to(src) and path.is_dir() else None

        home = found.parent.resolve()
        given = cfg.get("path")
        base = (inside(home / given) if isinstance(given, str) and given else None) or home
        splits = {}
        for split in ("train", "val", "test"):
            for cand in (
                cfg.get(split),
                f"images/{split}",
                "images/valid" if split == "val" else None,
            ):
                target = inside(base / cand) if isinstance(cand, str) and cand else None
                if target is not None:
                    splits[split] = str(target)
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
    for p in ann_files:
        if p.stat().st_size > MAX_PARSED_BYTES:
            raise InvalidDataset(f"{p.name} is larger than {_mib(MAX_PARSED_BYTES)}")
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
