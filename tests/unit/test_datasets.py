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
