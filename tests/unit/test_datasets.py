import contextlib
import io
import json
import stat
import struct
import zipfile

import pytest

from shared.datasets import InvalidDataset, inspect, validate
from tests import datasets as make
from tests.audio.synth import cry, wav_bytes


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


# --- malformed archives (issue 14): each is InvalidDataset saying what to fix ------------


def _wav_header(
    rate: int | None = None, channels: int | None = None, data_bytes: int | None = None
) -> bytes:
    """A 1 s 16 kHz PCM WAV whose header says another frame rate, channel count or
    length of its data."""
    w = bytearray(wav_bytes(cry(16000, 1.0, []), 16000))
    if data_bytes is not None:
        w[40:44] = struct.pack("<I", data_bytes)
    if rate is not None:
        w[24:28] = struct.pack("<I", rate)
    if channels is not None:
        w[22:24] = struct.pack("<H", channels)
    return bytes(w)


def flip_crc(archive: bytes, name: str) -> bytes:
    """The archive with ``name``'s CRC-32 flipped in both its headers (local and central)."""
    out = bytearray(archive)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    out[info.header_offset + 14] ^= 0xFF
    i = archive.find(b"PK\x01\x02")
    while i >= 0:
        n = struct.unpack("<H", archive[i + 28 : i + 30])[0]
        if archive[i + 46 : i + 46 + n] == name.encode():
            out[i + 16] ^= 0xFF
        i = archive.find(b"PK\x01\x02", i + 4)
    return bytes(out)


def _coco_doc(**changes) -> bytes:
    doc = {
        "images": [{"id": 1, "file_name": "1.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
        "categories": [{"id": 1, "name": "a"}],
    }
    doc.update(changes)
    return make.zip_of(
        {"images/1.png": make.png("circle"), "annotations/instances.json": json.dumps(doc).encode()}
    )


def _yaml(text: bytes) -> bytes:
    return make.zip_of({"data.yaml": text, "images/1.png": make.png("circle")})


def _lj(metadata: bytes, wav: bytes | None = None) -> bytes:
    return make.zip_of(
        {"metadata.csv": metadata, "wavs/LJ1.wav": wav or wav_bytes(cry(16000, 1.0, []), 16000)}
    )


# name -> (archive, what the message says); tests/e2e/test_datasets.py sends each over HTTP
MALFORMED = {
    "metadata.csv not UTF-8": (_lj("LJ1|héllo".encode("latin-1")), "metadata.csv' is not UTF-8"),
    "WAV frame rate 0": (_lj(b"LJ1|hi", _wav_header(rate=0)), "its sample rate is 0"),
    "WAV 0 channels": (_lj(b"LJ1|hi", _wav_header(channels=0)), "not a PCM WAV file"),
    "WAV header longer than the file": (
        _lj(b"LJ1|hi", _wav_header(data_bytes=320_000)),
        "header declares 10.0 s of audio but the file holds at most 1.0 s",
    ),
    "flipped CRC in an image": (
        flip_crc(make.imagefolder(2), "shapes/train/circle/0.png"),
        "train/circle/0.png' is damaged",
    ),
    "flipped CRC in data.yaml": (flip_crc(make.yolo(2), "data.yaml"), "Bad CRC-32"),
    "data.yaml a list": (_yaml(b"- a\n- b\n"), "must be a mapping with 'names'"),
    "names a list of lists": (_yaml(b"names: [[a, b], [c]]\n"), "must be a class name"),
    "names a list of dicts": (_yaml(b"names: [{a: 1}, {b: 2}]\n"), "must be a class name"),
    "names a dict of lists": (_yaml(b"names: {0: [a], 1: b}\n"), "must be a class name"),
    "names indices with a gap": (_yaml(b"names: {0: a, 5: b}\n"), "must be 0 to 1, each once"),
    "COCO image without file_name": (
        _coco_doc(images=[{"id": 1}]),
        "images[0].file_name: Field required",
    ),
    "COCO nested category names": (
        _coco_doc(categories=[{"id": 1, "name": ["a", "b"]}]),
        "categories[0].name: Input should be a valid string",
    ),
    "COCO id Infinity": (
        make.zip_of(
            {
                "images/1.png": make.png("circle"),
                "annotations/instances.json": b'{"images": [{"id": Infinity, "file_name": '
                b'"1.png"}], "annotations": [], "categories": []}',
            }
        ),
        "images[0].id",
    ),
    "COCO a list": (
        make.zip_of({"images/1.png": b"x", "annotations/instances.json": b"[1, 2]"}),
        "Input should be an object",
    ),
    "a member twice": (
        make.zip_of({"a/1.png": make.png("circle"), "b/1.png": b"x", "a//1.png": b"y"}),
        "'a//1.png' is in the archive twice",
    ),
    "a file that is a folder too": (
        make.zip_of({"a/1.png": make.png("circle"), "a": b"x", "b/2.png": b"y"}),
        "'a' is in the archive as a file and as a folder",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_archives_are_invalid_datasets(case):
    archive, message = MALFORMED[case]
    with pytest.raises(InvalidDataset) as exc:
        inspect(io.BytesIO(archive))
    assert message in exc.value.detail


def _each_byte_flipped(archive: bytes):
    """Hypothesis: the archive with one byte changed, anywhere."""
    from hypothesis import strategies as st

    return st.tuples(st.integers(0, len(archive) - 1), st.integers(1, 255)).map(
        lambda t: archive[: t[0]] + bytes([archive[t[0]] ^ t[1]]) + archive[t[0] + 1 :]
    )


@pytest.mark.parametrize("builder", [make.yolo, make.coco, make.ljspeech, make.imagefolder])
def test_a_damaged_archive_is_inspected_or_refused_never_an_error(builder):
    """Fuzzed (bounded): any one byte of a good archive changed, inspection either reads
    it or raises InvalidDataset; nothing else escapes (a 500, a failed ingest's retries)."""
    from hypothesis import HealthCheck, given, settings

    archive = builder(2)

    @settings(
        max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(_each_byte_flipped(archive))
    def check(damaged: bytes) -> None:
        with contextlib.suppress(InvalidDataset):
            inspect(io.BytesIO(damaged))

    check()


def test_parsed_members_of_any_content_are_inspected_or_refused():
    """Fuzzed (bounded): data.yaml, a label file, a COCO JSON and metadata.csv of arbitrary
    text or JSON-like values never raise anything but InvalidDataset."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    )
    png = make.png("circle")
    wav = wav_bytes(cry(16000, 0.1, []), 16000)

    @settings(
        max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(
        st.sampled_from(["yaml", "label", "coco", "coco-json", "csv", "wav"]),
        st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
        values,
    )
    def check(where: str, raw: bytes, value) -> None:
        files = {
            "yaml": {"data.yaml": raw, "images/1.png": png},
            "label": {"data.yaml": b"names: [a]\n", "images/1.png": png, "labels/1.txt": raw},
            "coco": {"images/1.png": png, "annotations/instances.json": raw},
            "coco-json": {
                "images/1.png": png,
                "annotations/instances.json": json.dumps(
                    {"images": value, "annotations": value, "categories": value}
                ).encode(),
            },
            "csv": {"metadata.csv": raw, "wavs/1.wav": wav},
            "wav": {"metadata.csv": b"1|hi", "wavs/1.wav": wav[:44] + raw},
        }[where]
        if where == "yaml":
            files["data.yaml"] = json.dumps({"names": value, "train": value}).encode()
        with contextlib.suppress(InvalidDataset):
            inspect(io.BytesIO(make.zip_of(files)))

    check()
