"""Uploads an attacker sends over HTTP against the local stack: multipart uploads of
another size than declared, presigned POSTs used again after ingestion, datasets that
are parsing bombs or whose statistics would not fit an item, projects of others,
non-Latin-1 names, and deletes that must erase every version."""

import time

import boto3
import httpx
import pytest
import yaml

from tests import datasets as make
from tests.audio.synth import cry, wav_bytes
from tests.conftest import Client, start_stack, stop_stack
from tests.e2e.test_audio import wait_status
from tests.e2e.test_datasets import create, wait_ready
from tests.unit.test_dataset_bombs import coco_with_huge_annotations

pytestmark = pytest.mark.e2e

UPLOADS, ARTIFACTS, TABLE = (
    "crucible-local-uploads",
    "crucible-local-artifacts",
    "crucible-local-data",
)


def s3(stack):
    return boto3.client("s3", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")


def keys(stack, prefix: str, bucket: str = UPLOADS) -> list[str]:
    r = s3(stack).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in r.get("Contents", []))


def versions(stack, prefix: str, bucket: str) -> list[str]:
    r = s3(stack).list_object_versions(Bucket=bucket, Prefix=prefix)
    return [v["Key"] for v in r.get("Versions", []) + r.get("DeleteMarkers", [])]


def eventually(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def dataset_bytes(stack, dataset_id: str) -> bytes:
    """What a training job reads: the object at the dataset item's ``key``."""
    ddb = boto3.client("dynamodb", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")
    item = ddb.get_item(
        TableName=TABLE, Key={"PK": {"S": f"DATASET#{dataset_id}"}, "SK": {"S": "DATASET"}}
    )["Item"]
    return s3(stack).get_object(Bucket=UPLOADS, Key=item["key"]["S"])["Body"].read()


@pytest.fixture(scope="module")
def cry_wav() -> bytes:
    return wav_bytes(cry(16_000, 3.0, [(0.5, 2.5, 450)]), 16_000)


# --- item 7: multipart uploads are sized ------------------------------------------------


def test_a_part_url_takes_exactly_its_size(alice, cry_wav):
    g = alice.http.post(
        "/audio-files/multipart", json={"filename": "long.wav", "size": len(cry_wav)}
    ).json()
    part = g["parts"][0]
    more = httpx.put(part["url"], content=cry_wav + b"\0" * 100_000)
    assert more.status_code == 403  # the URL is signed for len(cry_wav) bytes
    assert httpx.put(part["url"], content=cry_wav[:-1]).status_code == 403
    assert part["size"] == len(cry_wav)
    put = httpx.put(part["url"], content=cry_wav)
    assert put.status_code == 200
    done = alice.http.post(
        f"/audio-files/{g['file_id']}/multipart/complete",
        json={
            "upload_id": g["upload_id"],
            "parts": [{"part_number": 1, "etag": put.headers["ETag"]}],
        },
    )
    assert done.status_code == 200, done.text
    assert wait_status(alice, g["file_id"])["status"] == "completed"


def test_a_completed_upload_of_another_size_is_deleted_and_refused(stack, alice, cry_wav):
    declared = 8 * 1024 * 1024 + len(cry_wav)  # two parts: 8 MiB, then the rest
    g = alice.http.post(
        "/audio-files/multipart", json={"filename": "long.wav", "size": declared}
    ).json()
    last = g["parts"][1]
    put = httpx.put(last["url"], content=cry_wav)  # only the last part: a real, short WAV
    assert put.status_code == 200
    done = alice.http.post(
        f"/audio-files/{g['file_id']}/multipart/complete",
        json={
            "upload_id": g["upload_id"],
            "parts": [{"part_number": 2, "etag": put.headers["ETag"]}],
        },
    )
    assert done.status_code == 400, done.text
    assert [p["size"] for p in g["parts"]] == [g["part_size"], len(cry_wav)]
    body = done.json()
    assert body["code"] == "UPLOAD_SIZE_MISMATCH" and body["field"] == "parts"
    assert f"holds {len(cry_wav)} bytes but {declared} were declared" in body["detail"]
    assert keys(stack, f"audio/{alice.id}/{g['file_id']}/") == []  # nothing of it is kept
    f = alice.http.get(f"/audio-files/{g['file_id']}").json()
    assert f["status"] == "failed" and "were declared" in f["error"]
    again = alice.http.post(f"/analysis/{g['file_id']}/start")
    assert again.status_code == 409 and again.json()["code"] == "INVALID_AUDIO"
    assert alice.http.get(f"/audio-files/{g['file_id']}/stream").status_code == 404


# --- item 8: a presigned POST used again changes nothing inspected --------------------------


def test_a_recordings_presigned_post_used_again_changes_nothing(stack, alice, cry_wav):
    other = wav_bytes(cry(16_000, 1.0, [(0.2, 0.8, 600)]), 16_000)
    g = alice.http.post(
        "/audio-files/presign", json={"filename": "night.wav", "size": len(cry_wav)}
    ).json()
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("n.wav", cry_wav)}).is_success
    assert wait_status(alice, g["file_id"])["status"] == "completed"
    f = alice.http.get(f"/audio-files/{g['file_id']}").json()

    assert httpx.post(g["url"], data=g["fields"], files={"file": ("n.wav", other)}).is_success
    eventually(  # the second arrival is handled: deleted, unread
        lambda: keys(stack, f"audio/{alice.id}/{g['file_id']}/") == [f["file_path"]],
        what="the second arrival's removal",
    )
    assert alice.http.get(f"/audio-files/{g['file_id']}/stream").content == cry_wav
    assert alice.http.post(f"/analysis/{g['file_id']}/start").status_code == 200
    assert wait_status(alice, g["file_id"])["status"] == "completed"
    assert alice.http.get(f"/audio-files/{g['file_id']}").json()["duration"] == f["duration"] == 3.0
    result = alice.http.get(f"/analysis/{g['file_id']}/result").json()["result_data"]
    assert abs(result["statistics"]["episode_0"]["f0"]["median"] - 450) < 10  # not 600 Hz


def test_a_datasets_presigned_post_used_again_changes_nothing(stack, alice):
    first, second = make.yolo(4), make.imagefolder(2)
    g = alice.http.post(
        "/datasets/presign", json={"name": "d", "size": max(len(first), len(second))}
    ).json()
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", first)}).is_success
    ready = wait_ready(alice, g["dataset_id"])
    assert ready["status"] == "ready" and ready["format"] == "yolo"
    assert dataset_bytes(stack, g["dataset_id"]) == first

    assert httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", second)}).is_success
    eventually(lambda: g["key"] not in keys(stack, g["key"]), what="the second arrival's removal")
    assert alice.http.get(f"/datasets/{g['dataset_id']}").json() == ready
    assert dataset_bytes(stack, g["dataset_id"]) == first  # what a training job would read


# --- item 10: inspection is bounded ---------------------------------------------------------


def test_a_parsing_bomb_is_refused_on_both_paths(alice):
    bomb = coco_with_huge_annotations(400_000)  # 28 MiB of COCO JSON in a ~2 MiB zip
    r = create(alice, "bomb", bomb)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_DATASET"
    assert "at most 8.0 MiB" in r.json()["detail"]
    assert alice.http.get("/datasets").json()["total"] == 0

    g = alice.http.post("/datasets/presign", json={"name": "bomb", "size": len(bomb)}).json()
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", bomb)}).is_success
    d = wait_ready(alice, g["dataset_id"], timeout=60)
    assert d["status"] == "failed" and "at most 8.0 MiB" in d["error"]


# --- statistics that would not fit an item ----------------------------------------------


def yolo_with_classes(names: list[str]) -> bytes:
    return make.zip_of(
        {
            "data.yaml": yaml.safe_dump({"names": names}, allow_unicode=True).encode(),
            "images/1.png": make.png("circle"),
            "labels/1.txt": b"0 0.5 0.5 0.2 0.2\n",
        }
    )


def test_too_many_classes_are_refused_on_both_paths(alice):
    archive = yolo_with_classes([f"class {i} " + "x" * 150 for i in range(2500)])
    r = create(alice, "many", archive)
    assert r.status_code == 400 and "has 2500 classes; at most 1000" in r.json()["detail"]
    assert alice.http.get("/datasets").json()["total"] == 0

    g = alice.http.post("/datasets/presign", json={"name": "many", "size": len(archive)}).json()
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("d.zip", archive)}).is_success
    d = wait_ready(alice, g["dataset_id"])
    assert d["status"] == "failed" and "at most 1000" in d["error"]


def test_a_thousand_long_class_names_are_kept_whole_beside_a_summary(alice):
    names = [f"{i:04d} " + "\N{CAT FACE}" * 120 for i in range(1000)]  # ~480 bytes each in UTF-8
    r = create(alice, "wide", yolo_with_classes(names))
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["status"] == "ready" and d["num_classes"] == 1000
    assert len(d["class_distribution"]) == 100  # the item's summary
    whole = alice.http.get(f"/datasets/{d['id']}").json()
    assert list(whole["class_distribution"]) == names
    assert whole["class_distribution"][names[0]] == 1
    listed = alice.http.get("/datasets").json()["datasets"][0]
    assert listed["num_classes"] == 1000 and len(listed["class_distribution"]) == 100
    report = alice.http.post(f"/datasets/{d['id']}/validate", json={"expected_classes": 1000})
    assert report.json()["valid"]


# --- project_id is the caller's ------------------------------------------------------------


def test_a_dataset_names_only_a_project_of_its_owner(alice, bob):
    mine = alice.http.post("/projects", json={"name": "mine"}).json()
    theirs = bob.http.post("/projects", json={"name": "theirs"}).json()
    ok = alice.http.post(
        "/datasets",
        data={"name": "ok", "project_id": str(mine["id"])},
        files=[("files", ("d.zip", make.imagefolder(2), "application/zip"))],
    )
    assert ok.status_code == 201 and ok.json()["project_id"] == mine["id"], ok.text
    for attempt in (
        lambda: alice.http.post(
            "/datasets",
            data={"name": "no", "project_id": str(theirs["id"])},
            files=[("files", ("d.zip", make.imagefolder(2), "application/zip"))],
        ),
        lambda: alice.http.post(
            "/datasets/presign", json={"name": "no", "size": 100, "project_id": theirs["id"]}
        ),
    ):
        r = attempt()
        assert r.status_code == 404 and r.json()["code"] == "PROJECT_NOT_FOUND", r.text
        assert r.json()["field"] == "project_id"
    assert [d["name"] for d in alice.http.get("/datasets").json()["datasets"]] == ["ok"]


# --- a name beyond Latin-1 ---------------------------------------------------------------------


def test_a_recording_named_beyond_latin_1_streams(alice, cry_wav):
    up = alice.http.post(
        "/audio-files/upload", files={"file": ("泣き声.wav", cry_wav, "audio/wav")}
    )
    assert up.status_code == 201, up.text
    f = up.json()["file"]
    assert f["original_filename"] == "泣き声.wav"
    r = alice.http.get(f"/audio-files/{f['id']}/stream")
    assert r.status_code == 200 and r.content == cry_wav
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"download.wav\"; filename*=UTF-8''%E6%B3%A3%E3%81%8D%E5%A3%B0.wav"
    )


# --- item 14: deleting erases (buckets versioned, as in AWS) -----------------------------------


@pytest.fixture(scope="module")
def versioned_stack(tmp_path_factory):
    stack = start_stack(
        tmp_path_factory.mktemp("versioned") / "data",
        {"CRUCIBLE_RATE_LIMIT_PER_MINUTE": "600", "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "600"},
        timeout=240,  # a start on a busy machine (the emulator, then the API) takes its time
    )
    for bucket in (UPLOADS, ARTIFACTS):
        s3(stack).put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    yield stack
    stop_stack(stack)


def test_deleting_a_recording_erases_every_version_of_it_and_its_results(versioned_stack, cry_wav):
    stack, carol = versioned_stack, Client(versioned_stack)
    g = carol.http.post(
        "/audio-files/presign", json={"filename": "baby.wav", "size": len(cry_wav)}
    ).json()
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("b.wav", cry_wav)}).is_success
    assert wait_status(carol, g["file_id"])["status"] == "completed"
    assert carol.http.post(f"/analysis/{g['file_id']}/start").status_code == 200  # two results
    assert wait_status(carol, g["file_id"])["status"] == "completed"
    recording, results = f"audio/{carol.id}/{g['file_id']}/", f"analysis/{g['file_id']}/"
    assert versions(stack, recording, UPLOADS) and versions(stack, results, ARTIFACTS)

    assert carol.http.delete(f"/audio-files/{g['file_id']}").status_code == 204
    assert versions(stack, recording, UPLOADS) == []
    assert versions(stack, results, ARTIFACTS) == []

    # the presigned POST is still valid: what it sends now belongs to nothing and goes
    assert httpx.post(g["url"], data=g["fields"], files={"file": ("b.wav", cry_wav)}).is_success
    eventually(lambda: versions(stack, recording, UPLOADS) == [], what="the late arrival's removal")
    assert carol.http.get(f"/audio-files/{g['file_id']}").status_code == 404
