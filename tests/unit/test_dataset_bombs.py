"""Dataset inspection against hostile archives: members that are bombs when parsed,
archives of many small entries, damaged members, paths that lead out of the dataset,
and statistics too big to keep. Each is refused with InvalidDataset saying what to
fix, reading little (memory is bounded by the caps, not by what the archive holds)."""

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import yaml
from crucible_trainer.frameworks.yolo_data import yolo_data_yaml

from shared import archives
from shared import datasets as ds
from shared.archives import extract
from shared.datasets import InvalidDataset, inspect
from tests import datasets as make

MiB = 1024 * 1024
CAP = 8 * MiB  # what one parsed member may hold


def coco_with_huge_annotations(n: int) -> bytes:
    """A COCO dataset whose one JSON holds ``n`` annotations (about 60 bytes each):
    repetitive, so it zips well, but not so well that the ratio check catches it."""
    doc_head = '{"images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}], '
    doc_head += '"categories": [{"id": 1, "name": "circle"}], "annotations": ['
    body = ",".join(
        f'{{"id": {i}, "image_id": 1, "category_id": 1, "bbox": [{i % 7}, 8, 16, 16]}}'
        for i in range(n)
    )
    files = {
        "images/1.png": make.png("circle"),
        "annotations/instances_train.json": (doc_head + body + "]}").encode(),
    }
    return make.zip_of(files)


def test_a_huge_coco_json_is_refused_unread():
    archive = coco_with_huge_annotations(400_000)  # ~28 MiB of JSON in a ~2 MiB zip
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo("annotations/instances_train.json")
    assert info.file_size > 3 * CAP
    assert info.file_size < archives.MAX_RATIO * info.compress_size  # no zip bomb by ratio
    source = io.BytesIO(archive)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidDataset, match=r"instances_train.json' is .* at most 8.0 MiB"):
            inspect(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB, peak  # the member's 28 MiB were never read, let alone parsed


def test_a_coco_json_under_the_cap_is_inspected():
    s = inspect(io.BytesIO(coco_with_huge_annotations(50_000)))  # ~3.5 MiB of JSON
    assert s.format == "coco" and s.class_distribution == {"circle": 50_000}


def test_many_small_entries_expand_past_the_ratio_as_a_whole():
    # 300 entries of 512 KiB each: every one is under the per-entry floor (1 MiB), but the
    # archive expands ~1000x, to 150 MiB.
    files = {f"c{i % 2}/{i}.png": b"\0" * (512 * 1024) for i in range(300)}
    archive = make.zip_of(files)
    assert len(archive) < 2 * MiB
    with pytest.raises(InvalidDataset, match=r"entries expand .* refused as a zip bomb"):
        inspect(io.BytesIO(archive))


def test_the_bytes_read_in_all_are_bounded(monkeypatch):
    monkeypatch.setattr(archives, "MAX_READ_BYTES", 64 * 1024)
    files = {"data.yaml": b"names: [a, b]\n"}
    for i in range(40):  # 40 label files of ~3 KiB: 120 KiB of labels to read
        files[f"images/train/{i}.png"] = make.png("circle", seed=i)
        files[f"labels/train/{i}.txt"] = b"0 0.5 0.5 0.1 0.1\n" * 170
    with pytest.raises(InvalidDataset, match=r"would read more than 0\.1 MiB"):
        inspect(io.BytesIO(make.zip_of(files)))


def test_wav_headers_only_are_read_for_ljspeech():
    archive = make.ljspeech(3)
    zf = zipfile.ZipFile(io.BytesIO(archive))
    a = archives.Archive(zf, archives.members(zf))
    stats = ds._ljspeech(a)
    assert stats.extra["total_seconds"] == pytest.approx(3.0)
    metadata = zf.getinfo("metadata.csv").file_size
    assert a.read_bytes <= metadata + 3 * ds.WAV_HEADER_BYTES  # not the 3 x 32 KiB of audio


def _corrupt(archive: bytes, member: str) -> bytes:
    """The archive with the compressed bytes of ``member`` overwritten."""
    zf = zipfile.ZipFile(io.BytesIO(archive))
    info = zf.getinfo(member)
    data = bytearray(archive)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + info.compress_size] = b"\xff" * info.compress_size
    return bytes(data)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (  # a label file that is not text
            {
                "data.yaml": b"names: [a]\n",
                "images/1.png": b"x",
                "labels/1.txt": b"\xff\xfe\x00 binary",
            },
            "labels/1.txt' is not UTF-8 text",
        ),
        (  # COCO images without file names
            {
                "images/1.png": b"x",
                "annotations/instances.json": json.dumps(
                    {"images": [{"id": 1}], "annotations": [], "categories": []}
                ).encode(),
            },
            "is not a COCO file",
        ),
        (  # JSON nested deeper than any parser recursion
            {"images/1.png": b"x", "annotations/instances.json": b"[" * 200_000},
            "is not a COCO file",
        ),
        (  # metadata.csv with a field past the csv module's limit
            {"metadata.csv": b"LJ1|" + b"a" * 200_000, "wavs/LJ1.wav": b"x"},
            "metadata.csv is not 'id|text' lines",
        ),
        (  # YOLO names that are not a list of names
            {"data.yaml": b"names: {0: a, x: b}\n", "images/1.png": b"x"},
            "keys of 'names' must be class indices",
        ),
    ],
)
def test_malformed_members_are_refused_not_crashed_on(files, message):
    with pytest.raises(InvalidDataset, match=message):
        inspect(io.BytesIO(make.zip_of(files)))


def test_a_damaged_member_is_refused():
    archive = make.zip_of(
        {
            "data.yaml": b"names: [a]\n",
            "images/1.png": make.png("circle"),
            "labels/1.txt": b"0 0.5 0.5 0.2 0.2\n" * 50,
        }
    )
    with pytest.raises(InvalidDataset, match=r"labels/1\.txt' cannot be read from the archive"):
        inspect(io.BytesIO(_corrupt(archive, "labels/1.txt")))


def test_encrypted_entries_are_refused():
    out = io.BytesIO(make.imagefolder(2))
    data = bytearray(out.getvalue())
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.infolist()[0]
    # set the "encrypted" flag in the central directory entry of the first member
    cd = bytes(data).index(b"PK\x01\x02")
    flags = int.from_bytes(data[cd + 8 : cd + 10], "little") | 0x1
    data[cd + 8 : cd + 10] = flags.to_bytes(2, "little")
    with pytest.raises(
        InvalidDataset, match=f"Encrypted entries are not supported: '{info.filename}'"
    ):
        inspect(io.BytesIO(bytes(data)))


@pytest.mark.parametrize(
    ("data_yaml", "message"),
    [
        (b"path: /etc\nnames: [a]\ntrain: images\n", "'path: /etc' points outside the dataset"),
        (
            b"names: [a]\ntrain: /home/someone/images\n",
            "'train: /home/someone/images' points outside",
        ),
        (
            b"names: [a]\ntrain: images\nval: ../../other/images\n",
            "'val: ../../other/images' points outside",
        ),
        (b"names: [a]\ntrain: C:\\\\data\\\\images\n", "points outside the dataset"),
        (b"names: [a]\ntrain: [images, /abs]\n", "'train: /abs' points outside"),
        (b"names: [a]\ntrain: train.txt\n", "'train: train.txt' is a file"),
    ],
)
def test_yolo_paths_outside_the_dataset_are_refused(data_yaml, message):
    files = {
        "data.yaml": data_yaml,
        "train.txt": b"/etc/passwd\n",
        "images/1.png": make.png("circle"),
        "labels/1.txt": b"0 0.5 0.5 0.2 0.2\n",
    }
    with pytest.raises(InvalidDataset, match=message):
        inspect(io.BytesIO(make.zip_of(files)))


def test_relative_yolo_paths_inside_the_dataset_are_fine(tmp_path):
    archive = make.zip_of(
        {
            "ds/data.yaml": b"path: .\nnames: [a, b]\ntrain: images/train\nval: images/train\n",
            "ds/images/train/0.png": make.png("square"),
            "ds/labels/train/0.txt": b"1 .5 .5 .2 .2\n",
        }
    )
    assert inspect(io.BytesIO(archive)).class_distribution == {"a": 0, "b": 1}
    root = extract(io.BytesIO(archive), str(tmp_path / "data"))
    data = yaml.safe_load(Path(yolo_data_yaml(root, str(tmp_path / "yolo"))).read_text())
    assert data["train"] == str((Path(root) / "images/train").resolve())


def test_the_trainer_never_follows_a_data_yaml_out_of_the_dataset(tmp_path):
    """Belt and braces for archives inspected before these checks: yolo_data_yaml uses
    only folders inside the extracted dataset."""
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    root = tmp_path / "data"
    (root / "images" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text(
        f"path: {outside}\nnames: [a]\ntrain: {outside}/images\nval: ../outside/images\n"
    )
    data = yaml.safe_load(Path(yolo_data_yaml(str(root), str(tmp_path / "yolo"))).read_text())
    for split in ("train", "val"):
        assert Path(data[split]).is_relative_to(root.resolve()), data


def test_class_count_and_name_length_are_bounded():
    names = [f"class-{i}" for i in range(1001)]
    many = {"data.yaml": yaml.safe_dump({"names": names}).encode(), "images/1.png": b"x"}
    with pytest.raises(InvalidDataset, match="has 1001 classes; at most 1000"):
        inspect(io.BytesIO(make.zip_of(many)))
    folders = {f"c{i}/1.png": b"x" for i in range(1001)}
    with pytest.raises(InvalidDataset, match="more than 1000 class folders"):
        inspect(io.BytesIO(make.zip_of(folders)))
    long = {"a" * 129 + "/1.png": b"x", "b/1.png": b"x"}
    with pytest.raises(InvalidDataset, match="is 129 characters long; at most 128"):
        inspect(io.BytesIO(make.zip_of(long)))
    fine = {f"{'n' * 120}{i:04d}/1.png": b"x" for i in range(1000)}
    assert inspect(io.BytesIO(make.zip_of(fine))).num_classes == 1000


def test_every_member_is_checked_against_its_crc_as_a_stream(tmp_path):
    """Inspection decompresses each member once to check its CRC-32 (a damaged image is
    refused at upload, not when a job unpacks it), holding at most a chunk of it."""
    import numpy as np

    from tests.unit.test_datasets import flip_crc

    big = np.random.default_rng(0).bytes(24 * MiB)  # incompressible: no bomb by ratio
    archive = make.zip_of({"c1/big.png": big, "c2/a.png": make.png("square")})
    good, damaged = tmp_path / "good.zip", tmp_path / "damaged.zip"
    good.write_bytes(archive)
    damaged.write_bytes(flip_crc(archive, "c1/big.png"))
    del big, archive
    tracemalloc.start()
    try:
        s = inspect(str(good))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s.class_distribution == {"c1": 1, "c2": 1}
    assert peak < 4 * MiB, peak  # 24 MiB read through, a chunk at a time
    with pytest.raises(InvalidDataset, match=r"'c1/big.png' is damaged .*Bad CRC-32"):
        inspect(str(damaged))
