"""Seed 001 end to end against the local stack: upload (multipart, presigned POST,
presigned multipart), automatic analysis with progress over WebSocket, results,
exports, visualisation, tags, access rules and deletion."""

import asyncio
import csv
import io
import json

import boto3
import httpx
import pytest
import websockets

from tests.audio.synth import cry, wav_bytes
from tests.conftest import Client

pytestmark = pytest.mark.e2e

SR = 44_100
UNITS = [(0.5, 1.5, 450), (1.8, 2.6, 500), (5.0, 6.2, 550)]


@pytest.fixture(scope="module")
def cry_wav() -> bytes:
    return wav_bytes(cry(SR, 7.0, UNITS), SR)


def wait_status(client: Client, file_id: int, want=("completed", "failed"), timeout=90) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.http.get(f"/analysis/{file_id}/status")
        st = r.json()
        if r.status_code == 200 and st["status"] in want:
            return st
        assert r.status_code in (200, 404), r.text  # 404 until a direct upload arrives
        time.sleep(0.5)
    raise AssertionError(f"analysis of {file_id} did not finish: {st}")


async def collect(ws, until_status=("completed", "failed"), timeout=90) -> list[dict]:
    msgs = []
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        msgs.append(msg)
        if msg.get("kind") in ("status", "error") and msg["data"]["status"] in until_status:
            return msgs


def test_multipart_upload_is_analysed_by_itself(stack, alice, cry_wav):
    r = alice.http.post(
        "/audio-files/upload",
        files={"file": ("baby_cry.wav", cry_wav, "audio/wav")},
        data={"recording_start_time": "2024-01-01T10:00:00Z"},
    )
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert r.json()["message"] == "File uploaded successfully"
    assert (f["sample_rate"], f["duration"], f["file_size"]) == (SR, 7.0, len(cry_wav))
    assert f["original_filename"] == "baby_cry.wav" and f["user_id"] == alice.id and f["tags"] == []
    assert f["recording_start_time"].startswith("2024-01-01T10:00:00")
    st = wait_status(alice, f["id"])
    assert st["status"] == "completed" and st["progress"] == 100

    res = alice.http.get(f"/analysis/{f['id']}/result").json()
    assert res["audio_file_id"] == f["id"] and res["analyzed_at"]
    episodes = res["result_data"]["cry_episodes"]
    assert len(episodes) == 2  # units 0.3 s apart share an episode; 2.4 s apart do not
    assert abs(episodes[0]["start_time"] - 0.5) < 0.05 and abs(episodes[0]["end_time"] - 2.6) < 0.05
    stats = res["result_data"]["statistics"]["episode_1"]
    assert abs(stats["f0"]["median"] - 550) < 11
    assert res["result_data"]["cry_units"]["episode_0"]["unit_count"] == 2
    assert res["result_data"]["parameters"]["pitch_floor"] == 150

    listed = alice.http.get("/audio-files/").json()
    assert listed["total"] == 1 and listed["files"][0]["status"] == "completed"


def test_presigned_upload_with_progress_over_websocket_then_rerun(stack, alice, cry_wav):
    grant = alice.http.post(
        "/audio-files/presign", json={"filename": "night.wav", "size": len(cry_wav)}
    )
    assert grant.status_code == 201, grant.text
    g = grant.json()
    assert g["key"].startswith(f"audio/{alice.id}/{g['file_id']}/")

    async def scenario():
        url = f"{stack.ws}/api/v1/ws?token={alice.token}&topic=file:{g['file_id']}"
        async with websockets.connect(url) as ws:
            form = {**g["fields"]}
            up = await asyncio.to_thread(
                httpx.post, g["url"], data=form, files={"file": ("night.wav", cry_wav, "audio/wav")}
            )
            assert up.status_code in (200, 204), up.text
            first = await collect(ws)
            rerun = alice.http.post(f"/analysis/{g['file_id']}/start")
            assert rerun.status_code == 200 and rerun.json()["message"] == "Analysis started"
            second = await collect(ws)
            return first, second, rerun.json()["task_id"]

    first, second, task_id = asyncio.run(scenario())
    for msgs in (first, second):
        pcts = [m["data"]["progress"] for m in msgs if m["kind"] == "progress"]
        assert len(pcts) >= 4 and pcts == sorted(pcts)
        assert msgs[-1]["data"]["status"] == "completed"
    assert {m["data"].get("task_id") for m in second if m["data"].get("task_id")} == {task_id}
    f = alice.http.get(f"/audio-files/{g['file_id']}").json()
    assert (
        f["original_filename"] == "night.wav"
        and f["sample_rate"] == SR
        and f["status"] == "completed"
    )


def test_presigned_post_refuses_more_than_it_granted(stack, alice, cry_wav):
    g = alice.http.post("/audio-files/presign", json={"filename": "x.wav", "size": 1000}).json()
    up = httpx.post(g["url"], data=g["fields"], files={"file": ("x.wav", cry_wav, "audio/wav")})
    assert up.status_code == 400  # S3 enforces the content-length-range condition
    too_big = alice.http.post(
        "/audio-files/presign", json={"filename": "x.wav", "size": 200 * 1024 * 1024}
    )
    assert too_big.status_code == 413 and too_big.json()["field"] == "size"


def test_presigned_multipart_upload(stack, alice, cry_wav):
    g = alice.http.post(
        "/audio-files/multipart", json={"filename": "long.wav", "size": len(cry_wav)}
    ).json()
    assert len(g["parts"]) == 1
    put = httpx.put(g["parts"][0]["url"], content=cry_wav)
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


def test_results_exports_visualisation_and_tags(stack, alice, cry_wav):
    f = alice.http.post("/audio-files/upload", files={"file": ("c.wav", cry_wav)}).json()["file"]
    wait_status(alice, f["id"])
    csv_r = alice.http.get(f"/export/{f['id']}/csv")
    assert csv_r.headers["content-type"].startswith("text/csv")
    assert (
        csv_r.headers["content-disposition"]
        == f'attachment; filename="analysis_results_{f["id"]}.csv"'
    )
    rows = list(csv.reader(line for line in io.StringIO(csv_r.text) if not line.startswith("#")))
    assert rows[0][:4] == ["episode", "episode_start", "episode_end", "time"] and len(rows) > 100
    js = alice.http.get(f"/export/{f['id']}/json")
    assert (
        js.headers["content-disposition"]
        == f'attachment; filename="analysis_results_{f["id"]}.json"'
    )
    assert js.json()["result_data"]["cry_episodes"]

    wave = alice.http.get(f"/visualization/{f['id']}/waveform").json()
    assert wave["points"] <= 2000 and len(wave["times"]) == len(wave["amplitudes"]) == len(
        wave["min"]
    )
    assert wave["sample_rate"] == 16000 and abs(wave["duration"] - 7.0) < 0.01
    small = alice.http.get(f"/visualization/{f['id']}/waveform", params={"points": 100}).json()
    assert len(small["times"]) <= 100 and max(small["max"]) == pytest.approx(max(wave["max"]))
    spec = alice.http.get(f"/visualization/{f['id']}/spectrogram").json()
    assert len(spec["spectrogram"]) == len(spec["frequencies"]) and len(
        spec["spectrogram"][0]
    ) == len(spec["times"])
    assert len(spec["times"]) <= 400 and max(max(r) for r in spec["spectrogram"]) == 0.0

    stream = alice.http.get(f"/audio-files/{f['id']}/stream")
    assert stream.content == cry_wav and stream.headers["content-type"] == "audio/wav"
    assert stream.headers["content-disposition"] == 'attachment; filename="c.wav"'

    night, day = (alice.http.post("/tags/", json={"name": n}).json() for n in ("夜泣き", "昼間"))
    put = alice.http.put(f"/tags/{f['id']}/tags", json={"tag_ids": [night["id"], day["id"]]})
    assert [t["name"] for t in put.json()] == ["夜泣き", "昼間"]
    assert [t["name"] for t in alice.http.delete(f"/tags/{f['id']}/tags/{day['id']}").json()] == [
        "夜泣き"
    ]
    assert len(alice.http.post(f"/tags/{f['id']}/tags/{day['id']}").json()) == 2
    assert [t["name"] for t in alice.http.get(f"/audio-files/{f['id']}").json()["tags"]] == [
        "夜泣き",
        "昼間",
    ]


def test_who_may_read_and_change_files(stack, alice, bob, cry_wav):
    f = alice.http.post("/audio-files/upload", files={"file": ("c.wav", cry_wav)}).json()["file"]
    wait_status(alice, f["id"])
    for path in (
        f"/audio-files/{f['id']}",
        f"/analysis/{f['id']}/result",
        f"/export/{f['id']}/csv",
        f"/visualization/{f['id']}/waveform",
        f"/audio-files/{f['id']}/stream",
    ):
        assert bob.http.get(path).status_code == 404, path
    assert bob.http.post(f"/analysis/{f['id']}/start").status_code == 404
    assert bob.http.delete(f"/audio-files/{f['id']}").status_code == 404
    assert bob.http.get("/audio-files/").json()["total"] == 0

    researcher = Client(stack, role="researcher")
    assert researcher.http.get(f"/analysis/{f['id']}/result").status_code == 200
    assert f["id"] in [
        x["id"]
        for x in researcher.http.get("/audio-files/", params={"limit": 1000}).json()["files"]
    ]
    assert researcher.http.delete(f"/audio-files/{f['id']}").status_code == 403

    patched = alice.http.patch(
        f"/audio-files/{f['id']}", json={"recording_start_time": "2024-02-02T02:00:00Z"}
    )
    assert patched.json()["recording_start_time"].startswith("2024-02-02T02:00:00")
    bad = alice.http.patch(f"/audio-files/{f['id']}", json={"status": "uploaded"})
    assert bad.status_code == 409 and bad.json()["code"] == "INVALID_STATUS"

    assert alice.http.delete(f"/audio-files/{f['id']}").status_code == 204
    assert alice.http.get(f"/audio-files/{f['id']}").status_code == 404
    s3 = boto3.client("s3", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")
    assert (
        s3.list_objects_v2(Bucket="crucible-local-uploads", Prefix=f"audio/{alice.id}/{f['id']}/")[
            "KeyCount"
        ]
        == 0
    )
    assert (
        s3.list_objects_v2(Bucket="crucible-local-artifacts", Prefix=f"analysis/{f['id']}/")[
            "KeyCount"
        ]
        == 0
    )
