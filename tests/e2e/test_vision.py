"""ultralytics YOLO over HTTP against the local stack: detection on a YOLO dataset and on
a COCO one (converted for training), classification on an imagefolder one, each trained
to completion from its model YAML; metrics, validation results and predictions."""

import time

import pytest

pytest.importorskip("ultralytics")

from tests import datasets as make
from tests.e2e.live import assert_both_formats, wait_for_status, watch

pytestmark = pytest.mark.e2e

# Tiny runs that still learn: no warm-up, no mosaic, an optimizer step per batch.
FAST = {"image_size": 64, "warmup_epochs": 0, "mosaic": 0.0, "nbs": 4}


def upload(client, name, archive):
    r = client.http.post(
        "/datasets", data={"name": name}, files=[("files", (f"{name}.zip", archive))]
    )
    assert r.status_code == 201, r.text
    return r.json()


def create(client, dataset, task, epochs, **cfg):
    r = client.http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "ultralytics",
                "model_name": "yolov8n",
                "task_type": task,
                "dataset_id": dataset["id"],
                "epochs": epochs,
                "batch_size": 4,
                "learning_rate": 0.002,
                "advanced_config": {**FAST, **cfg},
            }
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def logs(client, job):
    return client.http.get(f"/training/jobs/{job['id']}/logs").json()[-5:]


def train(client, dataset, task, epochs, **cfg):
    job = create(client, dataset, task, epochs, **cfg)
    assert client.http.post(f"/training/jobs/{job['id']}/start").status_code == 200
    job = wait_for_status(client, job["id"])
    assert job["status"] == "completed", (job, logs(client, job))
    return job


def test_detection_on_a_yolo_dataset(stack, alice):
    ds = upload(alice, "boxes", make.yolo(16))
    assert ds["format"] == "yolo"
    job = create(alice, ds, "object_detection", epochs=8)
    start = lambda: alice.http.post(f"/training/jobs/{job['id']}/start").raise_for_status()  # noqa: E731
    assert_both_formats(*watch(stack, alice, job["id"], start), job["id"])
    job = wait_for_status(alice, job["id"])
    assert job["status"] == "completed"
    assert job["primary_metric"] == "mAP50-95"
    metrics = alice.http.get(f"/training/jobs/{job['id']}/metrics").json()
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    result = alice.http.get(f"/validation/results/{job['id']}").json()["results"][-1]
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(result["metrics"])
    assert "accuracy" not in result["metrics"] and result["overall_loss"] > 0
    assert result["primary_metric_name"] == "mAP50-95"
    assert set(result["per_class_metrics"]) <= {"circle", "square"}
    r = alice.http.post(
        "/test-inference",
        data={"training_job_id": job["id"], "confidence_threshold": 0.0, "top_k": 3},
        files={"file": ("x.png", make.png("circle", seed=7))},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task_type"] == "object_detection" and out["model_name"] == "yolov8n"
    assert len(out["predictions"]) <= 3
    for p in out["predictions"]:
        assert p["label"] in ("circle", "square") and len(p["bbox"]) == 4


def test_detection_on_a_coco_dataset(alice):
    ds = upload(alice, "coco-boxes", make.coco(8))
    assert ds["format"] == "coco"
    # seed 002's knobs, as ultralytics' own arguments (what they map to is unit-tested)
    knobs = {
        "optimizer": {"type": "sgd", "momentum": 0.9},
        "scheduler": {"type": "cosine", "eta_min": 0.0002},
        "augmentation": {"enabled": False},
        "mixed_precision": True,
    }
    job = train(alice, ds, "object_detection", epochs=2, **knobs)
    logs = alice.http.get(f"/training/jobs/{job['id']}/logs").json()
    assert any("Starting ultralytics yolov8n" in row["message"] for row in logs)
    said = ("trains in float32 on the CPU", "Mixed precision: amp=")  # a CPU's, or a GPU's
    assert any(s in row["message"] for row in logs for s in said), logs
    assert len(alice.http.get(f"/training/jobs/{job['id']}/metrics").json()) == 2


def test_classification_and_wrong_dataset(alice):
    shapes = upload(alice, "shapes-cls", make.imagefolder(8))
    job = train(alice, shapes, "image_classification", epochs=3, image_size=32)
    assert job["primary_metric"] == "accuracy"
    result = alice.http.get(f"/validation/results/{job['id']}").json()["results"][-1]
    assert result["metrics"]["top1"] == result["metrics"]["accuracy"]
    assert sum(map(sum, result["confusion_matrix"])) == 4  # the val split: 2 classes x 2
    images = alice.http.get(f"/validation/images/{result['id']}").json()
    assert images["total"] == 4 and {i["image_path"].split("/")[0] for i in images["images"]} == {
        "circle",
        "square",
    }
    correct = alice.http.get(
        f"/validation/images/{result['id']}", params={"is_correct": True}
    ).json()
    assert correct["total"] == round(result["metrics"]["accuracy"] * 4)
    r = alice.http.post(
        "/test-inference",
        data={"training_job_id": job["id"], "confidence_threshold": 0.0},
        files={"file": ("s.png", make.png("square", seed=5))},
    )
    assert r.status_code == 200 and r.json()["task_type"] == "image_classification"
    assert sorted(p["label"] for p in r.json()["predictions"]) == ["circle", "square"]

    wrong = alice.http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "ultralytics",
                "model_name": "yolov8n",
                "task_type": "object_detection",
                "dataset_id": shapes["id"],
            }
        },
    )
    assert wrong.status_code == 400 and wrong.json()["field"] == "config.dataset_id"
    unknown = alice.http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "ultralytics",
                "model_name": "yolov99",
                "task_type": "object_detection",
                "dataset_id": shapes["id"],
            }
        },
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "config.model_name"


def test_detection_stops_and_resumes(alice):
    ds = upload(alice, "boxes-resume", make.yolo(8))
    long = create(alice, ds, "object_detection", epochs=200)
    alice.http.post(f"/training/jobs/{long['id']}/start")
    deadline = time.monotonic() + 180
    while not alice.http.get(f"/training/jobs/{long['id']}/metrics").json():
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert alice.http.post(f"/training/stop/{long['id']}").status_code == 200
    stopped = wait_for_status(alice, long["id"])
    assert stopped["status"] == "stopped", (stopped, logs(alice, long))
    last = stopped["current_epoch"]
    assert 1 <= last < 200

    resumed = create(alice, ds, "object_detection", epochs=last + 2)
    r = alice.http.post(
        f"/training/jobs/{resumed['id']}/start",
        params={"checkpoint_path": f"jobs/{long['id']}/checkpoints/last.pt"},
    )
    assert r.status_code == 200
    done = wait_for_status(alice, resumed["id"])
    assert done["status"] == "completed", logs(alice, resumed)
    epochs = [m["epoch"] for m in alice.http.get(f"/training/jobs/{resumed['id']}/metrics").json()]
    assert epochs == [last + 1, last + 2]
