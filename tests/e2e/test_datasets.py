"""Datasets over HTTP against the local stack: multipart (zip or loose files) and
presigned uploads, every format, statistics, validation, access and bad archives."""

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests import datasets as make
from tests.unit.test_datasets import MALFORMED

pytestmark = pytest.mark.e2e


def create(client, name, data, fmt="auto", filename="data.zip"):
    return client.http.post(
        "/datasets",
        data={"name": name, "format": fmt},
        files=[("files", (filename, data, "application/zip"))],
    )


@pytest.mark.parametrize(
    ("builder", "fmt", "classes"),
    [
        (make.imagefolder, "imagefolder", 2),
        (make.yolo, "yolo", 2),
        (make.coco, "coco", 2),
        (make.ljspeech, "ljspeech", 0),
    ],
)
def test_multipart_zip_each_format(alice, builder, fmt, classes):
    r = create(alice, f"my {fmt}", builder())
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["format"], d["status"], d["num_classes"]) == (fmt, "ready", classes)
    assert d["file_count"] > 0 and d["total_size_bytes"] > 0 and d["id"] == d["dataset_id"]
    got = alice.http.get(f"/datasets/{d['id']}").json()
    assert got["class_distribution"] == d["class_distribution"]
    assert [c["name"] for c in got["statistics"]["classes"]] == list(d["class_distribution"])


def test_loose_files_list_and_validate(alice, bob):
    files = [
        ("files", (f"{cls}/{i}.png", make.png(cls, seed=i), "image/png"))
        for cls in ("circle", "square")
        for i in range(3)
    ]
    files.append(("files", ("circle/extra.png", make.png("circle", seed=9), "image/png")))
    project = alice.http.post("/projects", json={"name": "shapes"}).json()["id"]
    r = alice.http.post("/datasets", data={"name": "loose", "project_id": project}, files=files)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["class_distribution"] == {"circle": 4, "square": 3} and d["project_id"] == project
    listed = alice.http.get("/datasets", params={"project_id": project}).json()
    assert listed["total"] == 1 and listed["datasets"][0]["id"] == d["id"]
    report = alice.http.post(
        f"/datasets/{d['id']}/validate",
        json={"expected_format": "imagefolder", "expected_classes": 2},
    ).json()
    assert report["valid"] and report["issues"][0]["severity"] == "warning"  # 4 vs 3: imbalance
    assert bob.http.get(f"/datasets/{d['id']}").status_code == 404
    assert bob.http.get("/datasets").json()["total"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip", "Could not recognise"),
        (
            make.zip_of({"../evil.png": make.png("circle"), "a/b.png": make.png("square")}),
            "Unsafe path",
        ),
        (make.zip_of({"metadata.csv": b"LJ1|hi", "wavs/LJ9.wav": b"x"}), "wavs/LJ1.wav is missing"),
    ],
    ids=["not-a-zip", "unsafe-path", "missing-wav"],
)
def test_bad_archives_are_refused_and_nothing_is_kept(alice, data, message):
    r = create(alice, "bad", data)
    assert (
        r.status_code == 400
        and r.json()["code"] == "INVALID_DATASET"
        and message in r.json()["detail"]
    )
    assert alice.http.get("/datasets").json()["total"] == 0


def wait_ready(client, dataset_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = client.http.get(f"/datasets/{dataset_id}").json()
        if d["status"] in ("ready", "failed"):
            return d
        time.sleep(0.3)
    raise AssertionError(d)


def test_presigned_upload_is_ingested_by_the_s3_event(alice):
    data = make.yolo(6)
    g = alice.http.post(
        "/datasets/presign", json={"name": "big", "size": len(data), "format": "yolo"}
    ).json()
    assert alice.http.get(f"/datasets/{g['dataset_id']}").json()["status"] == "uploading"
    up = httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", data)})
    assert up.status_code in (200, 204)
    d = wait_ready(alice, g["dataset_id"])
    assert d["status"] == "ready" and d["class_distribution"] == {"circle": 6, "square": 6}

    junk = b"PK\x03\x04 broken"
    g = alice.http.post("/datasets/presign", json={"name": "broken", "size": len(junk)}).json()
    httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", junk)})
    d = wait_ready(alice, g["dataset_id"])
    assert d["status"] == "failed" and "zip" in d["error"]


# --- malformed archives (issue 14): a 400 through the API, ``failed`` when presigned -----


def test_a_malformed_archive_is_a_400_naming_what_to_fix(alice):
    """Every case of tests/unit/test_datasets.py's MALFORMED, one user (a sign-up each
    would cost more than the cases), and nothing of any of them kept."""
    for case, (archive, message) in MALFORMED.items():
        r = create(alice, case, archive)
        assert r.status_code == 400, (case, r.text)
        assert r.json()["code"] == "INVALID_DATASET", (case, r.text)
        assert message in r.json()["detail"], (case, r.text)
    assert alice.http.get("/datasets").json()["total"] == 0


def test_a_malformed_presigned_archive_ends_failed_with_its_reason(alice):
    """Every case uploaded at once, each ingested once: ``failed`` with the reason the API
    would have given, never ``uploading`` forever."""
    grants = {}
    for case, (archive, _) in MALFORMED.items():
        g = alice.http.post("/datasets/presign", json={"name": case, "size": len(archive)})
        assert g.status_code == 201, g.text
        grants[case] = g.json()
        up = httpx.post(
            g.json()["url"], data=g.json()["fields"], files={"file": ("d.zip", archive)}
        )
        assert up.status_code in (200, 204), up.text
    for case, g in grants.items():
        d = wait_ready(alice, g["dataset_id"], timeout=120)
        assert d["status"] == "failed" and MALFORMED[case][1] in d["error"], (case, d)


def test_a_presign_larger_than_the_ingest_can_hold_is_refused(alice):
    r = alice.http.post("/datasets/presign", json={"name": "huge", "size": 9 * 2**30 + 1})
    assert r.status_code == 413 and r.json()["field"] == "size"
    assert "9 GiB" in r.json()["detail"]


def test_the_owner_hears_a_presigned_dataset_settle(stack, alice):
    """Followed on ``dataset:<id>``: the failure (with its reason), then nothing more."""
    archive, message = MALFORMED["COCO image without file_name"]
    g = alice.http.post("/datasets/presign", json={"name": "told", "size": len(archive)}).json()

    async def scenario():
        url = f"{stack.ws}/api/v1/ws?token={alice.token}&topic=dataset:{g['dataset_id']}"
        async with websockets.connect(url) as ws:
            up = await asyncio.to_thread(
                httpx.post, g["url"], data=g["fields"], files={"file": ("d.zip", archive)}
            )
            assert up.status_code in (200, 204), up.text
            return json.loads(await asyncio.wait_for(ws.recv(), 60))

    msg = asyncio.run(scenario())
    assert (msg["topic"], msg["kind"]) == (f"dataset:{g['dataset_id']}", "error")
    assert msg["data"]["status"] == "failed" and message in msg["data"]["error"]
