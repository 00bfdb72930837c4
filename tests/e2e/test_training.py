"""Training over HTTP and WebSocket against the local stack: a dataset upload, a timm
job trained to completion with seed 003's messages on /ws/workflows/{id} and seed
000's on /ws, metrics and logs; a job stopped mid-run and another resumed from its
checkpoint."""

import time

import pytest

pytest.importorskip("timm")

from tests import datasets as make
from tests.e2e.live import assert_both_formats, wait_for_status, watch
from tests.unit.test_training_options import SEED_EXAMPLE

pytestmark = pytest.mark.e2e


@pytest.fixture
def dataset(alice):
    r = alice.http.post(
        "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(12)))]
    )
    assert r.status_code == 201, r.text
    return r.json()


def job(client, dataset, epochs):
    r = client.http.post(
        "/training/jobs",
        json={
            "experiment_name": "shapes",
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": dataset["id"],
                "epochs": epochs,
                "batch_size": 8,
                "learning_rate": 0.003,
                "advanced_config": {"image_size": 32},
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_train_to_completion_with_live_messages(stack, alice, bob, dataset):
    j = job(alice, dataset, epochs=3)
    assert j["status"] == "pending" and j["primary_metric"] == "accuracy"

    def start():
        started = alice.http.post(f"/training/jobs/{j['id']}/start")
        assert started.status_code == 200 and started.json()["status"] == "queued"

    assert_both_formats(*watch(stack, alice, j["id"], start), j["id"])
    done = wait_for_status(alice, j["id"], {"completed"})
    assert done["current_epoch"] == 3 and done["mlflow_run_id"] and done["completed_at"]
    metrics = alice.http.get(f"/training/jobs/{j['id']}/metrics").json()
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and metrics[-1]["loss"] < metrics[0]["loss"]
    logs = alice.http.get(f"/training/jobs/{j['id']}/logs").json()
    assert any("Starting timm resnet10t" in row["message"] for row in logs)
    results = alice.http.get(f"/validation/results/{j['id']}").json()["results"]
    assert [r["epoch"] for r in results] == [1, 2, 3] and results[-1][
        "primary_metric_name"
    ] == "accuracy"
    assert set(results[-1]["per_class_metrics"]) == {"circle", "square"}
    cm = results[-1]["confusion_matrix"]
    assert len(cm) == 2 and sum(map(sum, cm)) == 8  # the validation split: 4 per class
    again = alice.http.post(f"/training/jobs/{j['id']}/start")
    assert again.status_code == 409 and again.json()["code"] == "INVALID_STATUS"

    # Per-image results of the last validation, filtered and paged.
    images = alice.http.get(f"/validation/images/{results[-1]['id']}").json()
    assert images["total"] == 8 and len(images["images"]) == 8
    first = images["images"][0]
    assert {"image_path", "image_name", "true_label", "predicted_label", "confidence"} <= set(first)
    assert len(first["top5_predictions"]) == 2  # two classes
    assert first["top5_predictions"][0]["label"] == first["predicted_label"]
    right = alice.http.get(f"/validation/images/{results[-1]['id']}", params={"is_correct": True})
    assert right.json()["total"] == round(results[-1]["metrics"]["accuracy"] * 8)
    paged = alice.http.get(
        f"/validation/images/{results[-1]['id']}", params={"skip": 6, "limit": 5}
    )
    assert len(paged.json()["images"]) == 2
    assert alice.http.get("/validation/images/999999999").status_code == 404

    # Its checkpoints, best first; nobody else's to list.
    stored = alice.http.get(f"/training/jobs/{j['id']}/checkpoints").json()
    assert [c["name"] for c in stored] == ["best", "last"], stored
    assert stored[1]["path"] == f"jobs/{j['id']}/checkpoints/last.pt"
    assert all(c["size_bytes"] > 1000 and c["etag"] for c in stored)
    assert bob.http.get(f"/training/jobs/{j['id']}/checkpoints").status_code == 404

    # Predictions from the checkpoint.
    r = alice.http.post(
        "/test-inference",
        data={"training_job_id": j["id"], "top_k": 1, "confidence_threshold": 0.0},
        files={"file": ("c.png", make.png("circle", seed=99))},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task_type"] == "image_classification" and out["model_name"] == "resnet10t"
    assert len(out["predictions"]) == 1 and out["predictions"][0]["label"] in ("circle", "square")
    assert out["inference_time_ms"] > 0
    bad = alice.http.post(
        "/test-inference",
        data={"training_job_id": j["id"]},
        files={"file": ("c.png", b"not an image")},
    )
    assert bad.status_code == 400 and bad.json()["field"] == "file"


def test_stop_then_resume_from_its_checkpoint(alice, bob, dataset):
    long = job(alice, dataset, epochs=200)
    assert bob.http.post(f"/training/jobs/{long['id']}/start").status_code == 404
    alice.http.post(f"/training/jobs/{long['id']}/start")
    deadline = time.monotonic() + 180
    while (
        not alice.http.get(f"/training/jobs/{long['id']}/metrics").json()
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    stop = alice.http.post(f"/training/stop/{long['id']}")
    assert stop.status_code == 200 and stop.json()["status"] == "stopping"
    stopped = wait_for_status(alice, long["id"], {"stopped", "failed"})
    assert stopped["status"] == "stopped"
    assert alice.http.post(f"/training/stop/{long['id']}").status_code == 409
    last = stopped["current_epoch"]

    resumed = job(alice, dataset, epochs=last + 1)
    missing = alice.http.post(
        f"/training/jobs/{resumed['id']}/start", params={"checkpoint_path": "jobs/0/none.pt"}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "CHECKPOINT_NOT_FOUND"
    r = alice.http.post(
        f"/training/jobs/{resumed['id']}/start",
        params={"checkpoint_path": f"jobs/{long['id']}/checkpoints/last.pt"},
    )
    assert r.status_code == 200
    assert wait_for_status(alice, resumed["id"], {"completed", "failed"})["status"] == "completed"
    assert [
        m["epoch"] for m in alice.http.get(f"/training/jobs/{resumed['id']}/metrics").json()
    ] == [last + 1]

    # Seed 002's resume=true: the stopped job itself goes on from its last checkpoint,
    # its epochs numbered on from there, and its log says so.
    again = alice.http.post(f"/training/jobs/{long['id']}/start", params={"resume": "true"})
    assert again.status_code == 200, again.text
    deadline = time.monotonic() + 180
    while True:
        epochs = [m["epoch"] for m in alice.http.get(f"/training/jobs/{long['id']}/metrics").json()]
        if last + 1 in epochs or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert epochs[: last + 1] == list(range(1, last + 2)), epochs
    logs = [r["message"] for r in alice.http.get(f"/training/jobs/{long['id']}/logs").json()]
    said = f"Resumed from checkpoint jobs/{long['id']}/checkpoints/last.pt at epoch {last}:"
    assert any(said in m for m in logs), logs
    assert alice.http.post(f"/training/stop/{long['id']}").status_code == 200
    assert wait_for_status(alice, long["id"], {"stopped", "failed"})["status"] == "stopped"


SEED_ADVANCED = SEED_EXAMPLE  # seed 002's example advanced_config


def test_seed_002_fields_are_stored_and_returned(alice, dataset):
    project = alice.http.post("/projects", json={"name": "My Project"}).json()
    request = {
        "session_id": 1,
        "project_id": project["id"],
        "experiment_name": "ResNet-50 Experiment",
        "tags": ["baseline", "classification"],
        "notes": "Initial baseline training",
        "config": {
            "framework": "timm",
            "model_name": "resnet50",
            "task_type": "image_classification",
            "dataset_id": dataset["id"],
            "dataset_format": "dice",  # seed 002's example: whatever the dataset is
            "num_classes": 2,
            "epochs": 50,
            "batch_size": 32,
            "learning_rate": 0.001,
            "advanced_config": SEED_ADVANCED,
        },
    }
    r = alice.http.post("/training/jobs", json=request)
    assert r.status_code == 201, r.text
    created = r.json()
    expected = {
        "session_id": 1,
        "project_id": project["id"],
        "experiment_name": "ResNet-50 Experiment",
        "tags": ["baseline", "classification"],
        "notes": "Initial baseline training",
        "dataset_id": dataset["id"],
        "dataset_path": dataset["id"],
        "dataset_format": "imagefolder",
        "num_classes": 2,
        "output_dir": f"jobs/{created['id']}/checkpoints/",
        "epochs": 50,
        "status": "pending",
    }
    assert {k: created[k] for k in expected} == expected
    got = alice.http.get(f"/training/jobs/{created['id']}").json()
    assert got["project_name"] == "My Project"
    assert {k: got[k] for k in expected} == expected

    # What the dataset says is the dataset's: a request saying otherwise is refused.
    for field, value in (("num_classes", 3), ("dataset_format", "yolo")):
        bad = alice.http.post(
            "/training/jobs", json={**request, "config": {**request["config"], field: value}}
        )
        assert bad.status_code == 400 and bad.json()["field"] == f"config.{field}", bad.text


def test_knobs_a_framework_does_not_honour_are_refused_by_name(alice, dataset):
    def create(advanced):
        return alice.http.post(
            "/training/jobs",
            json={
                "config": {
                    "framework": "timm",
                    "model_name": "resnet10t",
                    "dataset_id": dataset["id"],
                    "advanced_config": advanced,
                }
            },
        )

    typo = create({"optimizer": {"type": "sgd"}, "gradient_clipping": 1.0, "mixup": 0.2})
    body = typo.json()
    assert typo.status_code == 400 and body["field"] == "config.advanced_config.gradient_clipping"
    assert "gradient_clipping" in body["detail"] and "mixup" in body["detail"]
    bad = create({"optimizer": {"type": "lamb"}})
    assert bad.status_code == 400 and bad.json()["field"] == "config.advanced_config.optimizer.type"
    # the knobs' learning rate is the job's
    ok = create({"optimizer": {"type": "sgd", "learning_rate": 0.05}})
    assert ok.status_code == 201 and ok.json()["learning_rate"] == 0.05


def test_models_and_config_schema(alice):
    models = alice.http.get("/models/list", params={"framework": "timm"}).json()
    assert models["total"] >= 3 and all(m["framework"] == "timm" for m in models["models"])
    schema = alice.http.get("/training/config-schema", params={"framework": "timm"}).json()
    assert schema["task_type"] == "image_classification" and set(schema["presets"]) == {
        "basic",
        "standard",
        "aggressive",
    }
    fields = {f["name"]: f for f in schema["schema"]["fields"]}
    assert [o["value"] for o in fields["optimizer.type"]["options"]] == ["adamw", "adam", "sgd"]
    assert {"scheduler.warmup_lr", "augmentation.color_jitter", "mixed_precision"} <= set(fields)
    assert set(schema["knobs"]["honoured"]) <= set(fields) and not schema["knobs"]["refused"]
    audio = alice.http.get("/training/config-schema", params={"framework": "torchaudio"}).json()
    assert "augmentation.random_flip" in audio["knobs"]["refused"]
    assert "augmentation.random_flip" not in [f["name"] for f in audio["schema"]["fields"]]
    assert (
        alice.http.get("/training/config-schema", params={"framework": "nope"}).status_code == 400
    )


def test_bad_requests(alice, dataset):
    bad = alice.http.post(
        "/training/jobs",
        json={"config": {"framework": "caffe", "model_name": "x", "dataset_id": dataset["id"]}},
    )
    assert bad.status_code == 400 and bad.json()["field"] == "config.framework"
    missing = alice.http.post(
        "/training/jobs",
        json={"config": {"framework": "timm", "model_name": "resnet10t", "dataset_id": "nope"}},
    )
    assert missing.status_code == 404 and missing.json()["code"] == "DATASET_NOT_FOUND"
    assert alice.http.get("/training/jobs/999999").status_code == 404


def test_internal_callback(stack, alice, dataset):
    import httpx

    secret = (stack.data_dir / "internal-secret").read_text().strip()
    j = job(alice, dataset, epochs=5)
    url = stack.api("/internal/training/callback")
    body = {
        "job_id": j["id"],
        "event": "epoch_complete",
        "data": {"epoch": 1, "loss": 0.45, "accuracy": 0.85, "learning_rate": 0.0008},
    }
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"X-Internal-Auth": "wrong"}).status_code == 401
    ok = httpx.post(url, json=body, headers={"X-Internal-Auth": secret})
    assert ok.status_code == 200 and ok.json() == {"status": "received", "job_id": j["id"]}
    row = alice.http.get(f"/training/jobs/{j['id']}/metrics").json()[0]
    assert (row["epoch"], row["loss"], row["accuracy"]) == (1, 0.45, 0.85)
    assert alice.http.get(f"/training/jobs/{j['id']}").json()["current_epoch"] == 1
    done = httpx.post(
        url,
        json={**body, "event": "training_complete", "data": {}},
        headers={"X-Internal-Auth": secret},
    )
    assert (
        done.status_code == 409 and done.json()["code"] == "INVALID_STATUS"
    )  # a pending job cannot complete
    bad = httpx.post(url, json={**body, "event": "teleport"}, headers={"X-Internal-Auth": secret})
    assert bad.status_code == 400 and bad.json()["field"] == "event"
