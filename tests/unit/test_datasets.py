import io
import stat
import zipfile

import pytest

from shared.datasets import InvalidDataset, inspect, validate
from tests import datasets as make


def test_imagefolder_with_splits_and_a_wrapping_folder():
    s = inspect(io.BytesIO(make.imagefolder(per_class=6)))
    assert s.format == "imagefolder" and s.num_classes == 2
    assert s.class_distribution == {"circle": 8, "square": 8}
    assert s.splits == {"train": 12, "val": 4} and s.file_count == 16 and s.total_size_bytes > 0


def test_yolo_coco_and_ljspeech():
    y = inspect(io.BytesIO(make.yolo(4)))
    assert (y.format, y.num_classes, y.class_distribution) == (
        "yolo",
        2,
        {"circle": 4, "square": 4},
    )
    c = inspect(io.BytesIO(make.coco(4)))
    assert (c.format, c.file_count, c.class_distribution) == ("coco", 4, {"circle": 2, "square": 2})
    lj = inspect(io.BytesIO(make.ljspeech(3)))
    assert lj.format == "ljspeech" and lj.extra["utterances"] == 3
    assert lj.extra["total_seconds"] == pytest.approx(3.0)


def _zip_with(name: str, data: bytes = b"x", *, symlink: bool = False) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, data)
        z.writestr("a/b.png", make.png("circle"))
    out.seek(0)
    return out


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (_zip_with("../../etc/passwd"), "Unsafe path"),
        (_zip_with("/abs/x.png"), "Unsafe path"),
        (_zip_with("cls/link.png", b"/etc/passwd", symlink=True), "Symbolic links"),
        (_zip_with("cls/bomb.png", b"\0" * (8 * 1024 * 1024)), "zip bomb"),
        (io.BytesIO(b"not a zip at all"), "Not a readable zip"),
        (io.BytesIO(make.zip_of({"readme.txt": b"hi"})), "Could not recognise"),
        (io.BytesIO(make.zip_of({"data/cats/1.png": make.png("circle")})), "at least 2 classes"),
        (
            io.BytesIO(
                make.zip_of(
                    {
                        "data.yaml": b"names: [a]\n",
                        "images/1.png": b"x",
                        "labels/1.txt": b"3 0.5 0.5 0.1 0.1",
                    }
                )
            ),
            "class 3 is not in names",
        ),
        (
            io.BytesIO(
                make.zip_of(
                    {
                        "data.yaml": b"names: [a]\n",
                        "images/1.png": b"x",
                        "labels/1.txt": b"0 1.5 0.5",
                    }
                )
            ),
            "box values",
        ),
        (
            io.BytesIO(make.zip_of({"metadata.csv": b"LJ1|hello", "wavs/LJ2.wav": b"x"})),
            "wavs/LJ1.wav is missing",
        ),
    ],
)
def test_unsafe_and_malformed_archives_say_what_to_fix(archive, message):
    with pytest.raises(InvalidDataset, match=message):
        inspect(archive)


def test_zip_bomb_ratio_is_compression_based():
    data = make.zip_of({"c1/a.png": b"\0" * (4 * 1024 * 1024), "c2/b.png": make.png("square")})
    with pytest.raises(InvalidDataset, match="zip bomb"):
        inspect(io.BytesIO(data))


def test_validation_report():
    s = inspect(io.BytesIO(make.yolo(4)))
    report = validate(s, "yolo", 2)
    assert report["valid"] and report["issues"] == []
    skewed = s.__class__(**{**s.as_dict(), "class_distribution": {"circle": 10, "square": 3}})
    report = validate(skewed, "coco", 3)
    assert not report["valid"]
    assert [i["severity"] for i in report["issues"]] == ["error", "error", "warning"]
    assert report["recommendations"]


def test_coco_is_converted_to_yolo_labels(tmp_path):
    import json
    from pathlib import Path

    import yaml
    from crucible_trainer.frameworks.yolo_data import yolo_data_yaml

    from shared.archives import extract

    doc = {
        "images": [{"id": 7, "file_name": "a.png", "width": 200, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 9, "bbox": [20, 10, 100, 50]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 200, 100]},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    archive = make.zip_of(
        {
            "images/a.png": make.png("circle"),
            "annotations/instances_val.json": json.dumps(doc).encode(),
        }
    )
    root = extract(io.BytesIO(archive), str(tmp_path / "data"))
    data = yaml.safe_load(Path(yolo_data_yaml(root, str(tmp_path / "yolo"))).read_text())
    assert data["names"] == {0: "cat", 1: "dog"}  # category-id order
    assert data["train"] == data["val"] == str(tmp_path / "yolo/images/val")  # no train split: val
    labels = (tmp_path / "yolo/labels/val/a.txt").read_text().split("\n")
    assert labels[:2] == [
        "1 0.350000 0.350000 0.500000 0.500000",
        "0 0.500000 0.500000 1.000000 1.000000",
    ]
    assert (tmp_path / "yolo/images/val/a.png").read_bytes() == make.png("circle")


def test_yolo_data_yaml_gets_absolute_paths_and_a_val_split(tmp_path):
    from pathlib import Path

    import yaml
    from crucible_trainer.frameworks.yolo_data import yolo_data_yaml

    from shared.archives import extract

    archive = make.zip_of(
        {
            "ds/data.yaml": b"names: {0: a, 1: b}\ntrain: images/train\n",
            "ds/images/train/0.png": make.png("square"),
            "ds/labels/train/0.txt": b"0 .5 .5 .2 .2\n",
        }
    )
    root = extract(io.BytesIO(archive), str(tmp_path / "data"))
    data = yaml.safe_load(Path(yolo_data_yaml(root, str(tmp_path / "yolo"))).read_text())
    assert data["train"] == data["val"] == str((Path(root) / "images/train").resolve())
    assert data["names"] == {0: "a", 1: "b"}
