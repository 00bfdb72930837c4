"""Ultralytics' view of an inspected, extracted YOLO or COCO dataset: a ``data.yaml``
with absolute paths to folders inside the dataset only (a path in the archive's own
yaml never leads outside it), COCO annotations converted to YOLO labels first."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from shared.archives import MAX_PARSED_BYTES, InvalidDataset, mib
from shared.datasets import IMAGE_EXT, SPLITS, yolo_names


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
            raise InvalidDataset(f"{found.name} is larger than {mib(MAX_PARSED_BYTES)}")
        cfg = yaml.safe_load(found.read_text()) or {}
        if not isinstance(cfg, dict):
            raise InvalidDataset(f"{found.name} must be a mapping with 'names'")
        names = yolo_names(cfg, found.name)

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
            raise InvalidDataset(f"{p.name} is larger than {mib(MAX_PARSED_BYTES)}")
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
