"""Seed 000 against the local stack: /config, /train/start (202, 400, 409),
/train/stop (200, 404), /ws with seed 000's messages and /inference, on espeak-ng
speech; an rnn-t job trained through seed 002's API."""

import asyncio
import json
import shutil
import time

import pytest
import websockets

pytest.importorskip("torchaudio")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make test installs it"),
]

from tests import datasets as make  # noqa: E402
from tests.e2e.live import assert_both_formats, wait_for_status, watch  # noqa: E402

TEXTS = [
    "hello world",
    "good morning",
    "the cat sat",
    "open the door",
    "red and blue",
    "one two three",
]


@pytest.fixture
def speech(alice, tmp_path):
    r = alice.http.post(
        "/datasets",
        data={"name": "ljspeech"},
        files=[("files", ("lj.zip", make.ljspeech_espeak(TEXTS, str(tmp_path))))],
    )
    assert r.status_code == 201 and r.json()["format"] == "ljspeech", r.text
    return r.json()


def test_seed000_training_flow(stack, alice, speech):
    root = alice.http.base_url.copy_with(path="/")
    cfg = alice.http.get(root.join("config")).json()
    assert cfg["available_models"] == ["conformer", "rnn-t"]
    assert cfg["available_datasets"] == ["ljspeech"]
    assert cfg["training_config"] == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "optimizer": "Adam",
        "epochs": 20,
    }

    bad_model = alice.http.post(
        root.join("train/start"), json={"model_name": "invalid_model", "dataset_name": "ljspeech"}
    )
    assert (
        bad_model.status_code == 400
        and bad_model.json()["detail"] == "Model 'invalid_model' not found in config."
    )
    bad_data = alice.http.post(
        root.join("train/start"), json={"model_name": "conformer", "dataset_name": "nope"}
    )
    assert bad_data.status_code == 400
    assert (
        alice.http.post(root.join("train/stop")).json()["detail"]
        == "No training process is running."
    )

    async def scenario():
        async with websockets.connect(f"{stack.ws}/ws?token={alice.token}") as ws:
            started = alice.http.post(
                root.join("train/start"),
                json={"model_name": "conformer", "dataset_name": "ljspeech"},
            )
            assert started.status_code == 202 and started.json() == {
                "status": "Training started in background."
            }
            again = alice.http.post(
                root.join("train/start"),
                json={"model_name": "conformer", "dataset_name": "ljspeech"},
            )
            assert (
                again.status_code == 409
                and again.json()["detail"] == "Training is already in progress."
            )
            types = []
            while "validation_result" not in types:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 180))
                types.append(msg["type"])
                if msg["type"] == "progress":
                    assert {
                        "epoch",
                        "total_epochs",
                        "step",
                        "total_steps",
                        "loss",
                        "learning_rate",
                    } <= set(msg["payload"])
            stop = alice.http.post(root.join("train/stop"))
            assert stop.status_code == 200 and stop.json() == {
                "status": "Stop signal sent to training process."
            }
            while types[-1] != "status":
                types.append(json.loads(await asyncio.wait_for(ws.recv(), 120))["type"])
            return types

    types = asyncio.run(scenario())
    assert {"progress", "log", "validation_result", "status"} <= set(types)
    deadline = time.monotonic() + 60
    while (
        alice.http.post(root.join("train/stop")).status_code != 404 and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert alice.http.post(root.join("train/stop")).status_code == 404  # stopped: nothing runs


@pytest.mark.timeout(1200)  # 80 epochs: 12 min on a 2-core machine kept very busy
def test_rnnt_trains_and_transcribes(stack, alice, speech, tmp_path):
    root = alice.http.base_url.copy_with(path="/")
    r = alice.http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "torchaudio",
                "model_name": "rnn-t",
                "task_type": "speech_recognition",
                "dataset_id": speech["id"],
                "epochs": 80,
                "batch_size": 3,
                "learning_rate": 0.002,
                "advanced_config": {"dim": 96, "layers": 2},
            }
        },
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["primary_metric"] == "cer"
    start = lambda: alice.http.post(f"/training/jobs/{job['id']}/start").raise_for_status()  # noqa: E731
    assert_both_formats(*watch(stack, alice, job["id"], start), job["id"])
    job = wait_for_status(alice, job["id"])
    assert job["status"] == "completed", job
    metrics = alice.http.get(f"/training/jobs/{job['id']}/metrics").json()
    assert [m["epoch"] for m in metrics] == list(range(1, 81))
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 10
    # Six utterances, memorised: it learns to spell what it hears.
    assert {"wer", "cer", "val_loss"} <= set(metrics[-1]["extra_metrics"])
    assert metrics[-1]["extra_metrics"]["cer"] < 0.3

    # seed 000's /inference transcribes with the newest ASR checkpoint: this job's.
    wav = make.espeak_wav("hello world", str(tmp_path))
    out = alice.http.post(root.join("inference"), files={"file": ("hello.wav", wav)})
    assert out.status_code == 200, out.text
    assert set(out.json()) == {"transcription"}
    from crucible_trainer.metrics import edit_distance

    assert edit_distance(list(out.json()["transcription"]), list("hello world")) <= 3, out.json()
    assert alice.http.post(root.join("inference")).status_code == 400  # no file
    bad = alice.http.post(root.join("inference"), files={"file": ("x.wav", b"RIFF....WAVEjunk")})
    assert bad.status_code == 400 and bad.json()["field"] == "file"


def test_inference_needs_a_trained_model(bob):
    root = bob.http.base_url.copy_with(path="/")
    r = bob.http.post(root.join("inference"), files={"file": ("a.wav", b"RIFF")})
    assert r.status_code == 404 and r.json()["code"] == "NO_MODEL"
