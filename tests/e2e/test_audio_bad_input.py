"""Seed 001 with awkward and bad input: each case ends with a clear 4xx at upload or a
``failed`` status with its reason, and nothing stored before is lost."""

import boto3
import httpx
import numpy as np
import pytest

from tests.audio.synth import cry, encode, wav_bytes
from tests.e2e.test_audio import wait_status

pytestmark = pytest.mark.e2e


def upload(client, name, data):
    return client.http.post("/audio-files/upload", files={"file": (name, data, "audio/wav")})


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.wav", b"", "empty"),
        ("noise.wav", np.random.default_rng(1).bytes(50_000), "Not a readable audio file"),
        ("photo.wav", b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000, "Unsupported format"),
        ("notes.wav", b"hello, this is text and not audio\n" * 100, "Not a readable audio file"),
        ("cut.wav", wav_bytes(cry(16000, 4, [(0.5, 3, 450)]), 16000)[:20_000], "truncated"),
        ("header.wav", wav_bytes(cry(16000, 1, []), 16000)[:44], "no audio samples"),
    ],
)
def test_unusable_files_are_refused_at_upload(alice, name, data, message):
    r = upload(alice, name, data)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID_AUDIO" and r.json()["field"] == "file"
    assert message in r.json()["detail"]
    assert alice.http.get("/audio-files/").json()["total"] == 0  # nothing half-stored


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a", "ogg"])
def test_formats_are_accepted_by_content(alice, fmt):
    sr = 48_000 if fmt == "ogg" else 22_050
    data = encode(cry(sr, 3.0, [(0.5, 2.2, 480)]), sr, fmt)
    r = upload(alice, f"recording.{fmt}.bin", data)  # the name says nothing; the bytes do
    assert r.status_code == 201, r.text
    f = r.json()["file"]
    assert f["format"] == fmt and f["sample_rate"] == sr and abs(f["duration"] - 3.0) < 0.1
    st = wait_status(alice, f["id"])
    assert st["status"] == "completed", st
    res = alice.http.get(f"/analysis/{f['id']}/result").json()["result_data"]
    assert len(res["cry_episodes"]) == 1
    assert abs(res["statistics"]["episode_0"]["f0"]["median"] - 480) < 10


def test_silence_completes_with_no_episodes(alice):
    f = upload(alice, "quiet.wav", wav_bytes(np.zeros(16000 * 3), 16000)).json()["file"]
    st = wait_status(alice, f["id"])
    assert st["status"] == "completed" and "0 cry episode" in st["message"]
    assert alice.http.get(f"/analysis/{f['id']}/result").json()["result_data"]["cry_episodes"] == []


def test_too_short_fails_with_its_reason(alice):
    f = upload(alice, "blip.wav", wav_bytes(cry(16000, 0.03, [(0.0, 0.03, 450)]), 16000)).json()[
        "file"
    ]
    st = wait_status(alice, f["id"])
    assert st["status"] == "failed" and "too short" in st["error"]
    assert alice.http.get(f"/analysis/{f['id']}/result").json()["code"] == "RESULT_NOT_FOUND"


@pytest.mark.parametrize(("sr", "channels"), [(8000, 1), (44_100, 2), (96_000, 1)])
def test_rates_and_channels(alice, sr, channels):
    f = upload(alice, "x.wav", wav_bytes(cry(sr, 3.0, [(0.5, 2.5, 500)]), sr, channels)).json()[
        "file"
    ]
    assert (f["sample_rate"], f["channels"]) == (sr, channels)
    assert wait_status(alice, f["id"])["status"] == "completed"
    res = alice.http.get(f"/analysis/{f['id']}/result").json()["result_data"]
    assert abs(res["statistics"]["episode_0"]["f0"]["median"] - 500) < 10
    assert res["quality"]["analysed_sample_rate"] == min(sr, 16000)
    assert res["parameters"]["effective_max_formant"] <= min(sr, 16000) / 2


def test_clipping_is_reported_not_refused(alice):
    loud = np.clip(cry(16000, 3.0, [(0.5, 2.5, 450)]) * 4, -1, 1)
    f = upload(alice, "loud.wav", wav_bytes(loud, 16000)).json()["file"]
    assert wait_status(alice, f["id"])["status"] == "completed"
    res = alice.http.get(f"/analysis/{f['id']}/result").json()["result_data"]
    assert res["quality"]["clipped_fraction"] > 0.1 and len(res["cry_episodes"]) == 1


def test_batch_keeps_the_good_and_reports_the_bad(alice):
    good = wav_bytes(cry(16000, 2.0, [(0.3, 1.5, 450)]), 16000)
    files = [
        ("files", ("a.wav", good)),
        ("files", ("bad.wav", b"nope" * 100)),
        ("files", ("b.wav", good)),
    ]
    r = alice.http.post("/audio-files/upload/batch", files=files)
    assert r.status_code == 201, r.text
    body = r.json()
    assert [f["original_filename"] for f in body["files"]] == ["a.wav", "b.wav"]
    assert (
        body["errors"][0]["filename"] == "bad.wav" and body["errors"][0]["code"] == "INVALID_AUDIO"
    )
    assert body["message"] == "Successfully uploaded 2 files"
    eleven = [("files", (f"{i}.wav", good)) for i in range(11)]
    assert alice.http.post("/audio-files/upload/batch", files=eleven).status_code == 400


def test_presigned_non_audio_fails_with_its_reason(alice):
    junk = b"definitely not audio" * 50
    g = alice.http.post(
        "/audio-files/presign", json={"filename": "cry.wav", "size": len(junk)}
    ).json()
    assert httpx.post(
        g["url"], data=g["fields"], files={"file": ("cry.wav", junk)}
    ).status_code in (200, 204)
    st = wait_status(alice, g["file_id"])
    assert st["status"] == "failed" and "Not a readable audio file" in st["error"]
    again = alice.http.post(f"/analysis/{g['file_id']}/start")
    assert again.status_code == 409 and again.json()["code"] == "INVALID_AUDIO"


def test_a_failed_rerun_keeps_the_earlier_result(stack, alice):
    f = upload(alice, "c.wav", wav_bytes(cry(16000, 3.0, [(0.5, 2.5, 450)]), 16000)).json()["file"]
    wait_status(alice, f["id"])
    before = alice.http.get(f"/analysis/{f['id']}/result").json()
    s3 = boto3.client("s3", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")
    s3.delete_object(Bucket="crucible-local-uploads", Key=f["file_path"])  # storage loses the audio
    assert alice.http.post(f"/analysis/{f['id']}/start").status_code == 200
    st = wait_status(alice, f["id"])
    assert st["status"] == "failed" and st["error"]
    assert alice.http.get(f"/analysis/{f['id']}/result").json() == before


@pytest.fixture(scope="module")
def sixteen_minutes_of_flac() -> bytes:
    """16 minutes of silence: a FLAC of ~180 KB that decodes past the 15-minute limit."""
    return encode(np.zeros(8000 * 60 * 16), 8000, "flac")


def test_audio_longer_than_the_limit_is_refused_at_upload(alice, sixteen_minutes_of_flac):
    assert len(sixteen_minutes_of_flac) < 1_000_000  # highly compressed: small as sent
    r = alice.http.post(
        "/audio-files/upload", files={"file": ("long.flac", sixteen_minutes_of_flac)}
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID_AUDIO" and r.json()["field"] == "file"
    assert "longer than 15 min" in r.json()["detail"]
    assert alice.http.get("/audio-files/").json()["total"] == 0


def test_presigned_audio_longer_than_the_limit_fails_with_its_reason(
    alice, sixteen_minutes_of_flac
):
    data = sixteen_minutes_of_flac
    g = alice.http.post(
        "/audio-files/presign", json={"filename": "long.flac", "size": len(data)}
    ).json()
    up = httpx.post(g["url"], data=g["fields"], files={"file": ("long.flac", data)})
    assert up.status_code in (200, 204)
    st = wait_status(alice, g["file_id"])
    assert st["status"] == "failed" and "longer than 15 min" in st["error"]
