"""Seed 003's workflows over HTTP and WebSocket against the local stack: one trained to
``training_complete`` with ``training_progress`` (eta, metrics so far) on
/ws/workflows/{id}; its detail, metric history and logs with their filters; one created
by the orchestrator and cancelled mid-run; listing with a status filter, sorting and
pages; bad configs refused with nothing stored; another user's workflows are 404."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest

pytest.importorskip("timm")

from tests import datasets as make
from tests.conftest import Client
from tests.e2e.live import follow

pytestmark = pytest.mark.e2e

SEED_STATUSES = {"pending", "training", "completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def owner(stack) -> Client:
    return Client(stack)


@pytest.fixture(scope="module")
def other(stack) -> Client:
    return Client(stack)


def upload(client: Client, name: str) -> str:
    r = client.http.post(
        "/datasets", data={"name": name}, files=[("files", ("s.zip", make.imagefolder(12)))]
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def dataset(owner) -> str:
    return upload(owner, "shapes")


def config(dataset_id: str, epochs: int) -> dict:
    return {
        "task_type": "classification",
        "model": "resnet10t",
        "dataset_id": dataset_id,
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": 8,
            "learning_rate": 0.003,
            "image_size": 32,
        },
    }


def wait_for(client: Client, workflow_id: str, statuses: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wf = client.http.get(f"/workflows/{workflow_id}").json()
        if wf["status"] in statuses:
            return wf
        time.sleep(0.3)
    raise AssertionError(wf)


@pytest.fixture(scope="module")
def trained(stack, owner, dataset) -> tuple[dict, list[dict]]:
    """A workflow trained to completion, followed live from just after its creation
    (its trainer takes seconds to start: nothing it reports is missed)."""
    r = owner.http.post(
        "/workflows",
        json={
            "name": "고양이 분류 모델",
            "description": "치즈, 나비 2종류 분류",
            "config": config(dataset, epochs=2),
        },
    )
    assert r.status_code == 201, r.text
    return r.json(), follow(stack, owner, r.json()["workflow_id"])


@pytest.fixture(scope="module")
def cancelled(stack, owner, dataset) -> tuple[dict, dict]:
    """A long workflow made by the orchestrator for ``owner``, cancelled once it trains."""
    secret = (stack.data_dir / "internal-secret").read_text().strip()
    url = stack.api("/internal/orchestrator/create-workflow")
    body = {
        "experiment_name": "long run",
        "user_id": owner.id,
        "training_config": {
            "model_name": "resnet10t",
            "model_source": "timm",
            "dataset": {"source": "uploaded", "dataset_id": dataset},
            "hyperparameters": {"epochs": 500, "batch_size": 8, "image_size": 32},
        },
    }
    r = httpx.post(url, json=body, headers={"X-Internal-Auth": secret})
    assert r.status_code == 201, r.text
    created = r.json()
    wid = created["workflow_id"]
    deadline = time.monotonic() + 180
    while not owner.http.get(f"/workflows/{wid}/metrics").json()["metrics"]:
        assert time.monotonic() < deadline, owner.http.get(f"/workflows/{wid}").json()
        time.sleep(0.3)
    running = owner.http.get(f"/workflows/{wid}").json()
    assert running["status"] == "training" and running["progress"]["current_epoch"] >= 1
    assert running["estimated_completion_at"] is not None
    assert running["started_at"] and running["completed_at"] is None
    answer = owner.http.delete(f"/workflows/{wid}")
    assert answer.status_code == 200, answer.text
    return created, answer.json()


def test_trains_to_complete_with_live_progress(owner, trained):
    created, seen = trained
    assert set(created) == {
        "workflow_id",
        "name",
        "status",
        "created_at",
        "estimated_duration_minutes",
        "queue_position",
    }
    assert created["name"] == "고양이 분류 모델" and created["status"] == "pending"
    assert created["estimated_duration_minutes"] >= 1 and created["queue_position"] == 0
    assert created["created_at"].endswith("Z")

    types = [m["type"] for m in seen]
    assert types[-1] == "training_complete", types
    assert {"training_progress", "checkpoint_saved"} <= set(types)
    assert all(m["workflow_id"] == created["workflow_id"] for m in seen)
    progress = [m["data"] for m in seen if m["type"] == "training_progress"]
    assert all(isinstance(p["eta_minutes"], int | float) for p in progress), progress
    assert all(p["eta_minutes"] >= 0 and "loss" in p["metrics"] for p in progress)
    # after the first epoch's validation, its metrics come with every step's loss
    assert any("accuracy" in p["metrics"] for p in progress if p["epoch"] == 2)
    # trained on the CPU: no GPU figures, rather than made-up ones
    assert not any({"gpu_utilization", "memory_usage_gb"} & set(p) for p in progress)


def test_detail_metrics_and_logs(owner, trained):
    wid = trained[0]["workflow_id"]
    wf = owner.http.get(f"/workflows/{wid}").json()
    assert wf["status"] == "completed" and wf["description"] == "치즈, 나비 2종류 분류"
    assert wf["progress"] == {"current_epoch": 2, "total_epochs": 2, "percentage": 100}
    assert {"loss", "accuracy", "val_loss"} <= set(wf["metrics"])
    res = wf["resources"]
    assert res["device"] in ("cpu", "cuda") and res["cpu_count"] >= 1
    assert ("gpu_type" in res) == (res["device"] == "cuda")
    assert wf["started_at"] and wf["completed_at"] and wf["estimated_completion_at"] is None
    assert wf["config"]["model"] == "resnet10t" and wf["config"]["hyperparameters"]["epochs"] == 2
    assert owner.http.get(f"/workflows/wf_{wid}").json()["workflow_id"] == wid  # the seed's form

    history = owner.http.get(f"/workflows/{wid}/metrics").json()
    assert history["workflow_id"] == wid
    rows = history["metrics"]
    assert [(m["epoch"], m["step"]) for m in rows] == [(1, 3), (2, 6)]  # 24 images, 8 a step
    assert {"timestamp", "loss", "accuracy", "val_loss"} <= set(rows[0])
    some = owner.http.get(f"/workflows/{wid}/metrics", params={"metric": "loss,accuracy"})
    assert [set(m) for m in some.json()["metrics"]] == [
        {"timestamp", "epoch", "step", "loss", "accuracy"}
    ] * 2
    since = owner.http.get(f"/workflows/{wid}/metrics", params={"start_time": rows[1]["timestamp"]})
    assert [m["epoch"] for m in since.json()["metrics"]] == [2]
    later = datetime.fromisoformat(rows[1]["timestamp"]) + timedelta(hours=1)
    none = owner.http.get(f"/workflows/{wid}/metrics", params={"start_time": later.isoformat()})
    assert none.json()["metrics"] == []
    assert (
        owner.http.get(f"/workflows/{wid}/metrics", params={"start_time": "yesterday"}).status_code
        == 422
    )

    logs = owner.http.get(f"/workflows/{wid}/logs").json()
    lines = logs["logs"]
    assert logs["total_lines"] == len(lines) >= 3
    assert any(line["message"].startswith("Starting timm resnet10t") for line in lines)
    assert any(line["message"].startswith("Resources: ") for line in lines)
    assert all(line["level"] and line["timestamp"] for line in lines)
    tail = owner.http.get(f"/workflows/{wid}/logs", params={"tail": 1}).json()
    assert tail["total_lines"] == logs["total_lines"] and tail["logs"] == lines[-1:]
    assert tail["logs"][0]["message"] == "Training completed"

    done = owner.http.delete(f"/workflows/{wid}")
    assert done.status_code == 409 and done.json()["code"] == "INVALID_STATUS"


def test_cancel_mid_run(owner, cancelled):
    created, answer = cancelled
    wid = created["workflow_id"]
    assert created["name"] == "long run" and created["status"] == "pending"
    assert answer["workflow_id"] == wid
    if answer["status"] == "cancelled":
        assert answer["cancelled_at"]
    else:  # the trainer is still saving its checkpoint
        assert answer["status"] == "training" and answer["cancel_requested"]
    wf = wait_for(owner, wid, {"cancelled", "failed", "completed"})
    assert wf["status"] == "cancelled" and wf["completed_at"]
    assert 1 <= wf["progress"]["current_epoch"] < 500
    again = owner.http.delete(f"/workflows/{wid}")  # already cancelled: the same answer
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert again.json()["cancelled_at"] == wf["completed_at"]


def test_list_filter_sort_and_pages(owner, dataset, trained, cancelled):
    # two pending ones: seed 002's jobs, never started, are workflows too
    pending = []
    for i in range(2):
        r = owner.http.post(
            "/training/jobs",
            json={
                "experiment_name": f"waiting {i}",
                "config": {"framework": "timm", "model_name": "resnet10t", "dataset_id": dataset},
            },
        )
        assert r.status_code == 201, r.text
        pending.append(str(r.json()["id"]))
    ids = [trained[0]["workflow_id"], cancelled[0]["workflow_id"], *pending]

    everything = owner.http.get("/workflows").json()
    assert everything["total"] == 4 and everything["page"] == 1 and everything["limit"] == 20
    assert not everything["has_next"]
    listed = everything["workflows"]
    assert [w["workflow_id"] for w in listed] == ids[::-1]  # newest first by default
    assert all(w["status"] in SEED_STATUSES for w in listed)
    assert set(listed[0]) >= {"workflow_id", "name", "status", "progress", "created_at"}
    oldest = owner.http.get("/workflows", params={"sort": "created_at"}).json()["workflows"]
    assert [w["workflow_id"] for w in oldest] == ids

    def filtered(status: str) -> list[str]:
        r = owner.http.get("/workflows", params={"status": status})
        assert r.status_code == 200, r.text
        return [w["workflow_id"] for w in r.json()["workflows"]]

    assert filtered("pending") == pending[::-1]
    assert filtered("completed") == ids[:1] and filtered("cancelled") == ids[1:2]
    assert filtered("training") == [] and filtered("failed") == []
    done = owner.http.get("/workflows", params={"status": "completed"}).json()["workflows"][0]
    assert done["progress"] == 100 and done["started_at"]

    first = owner.http.get("/workflows", params={"limit": 3, "page": 1}).json()
    second = owner.http.get("/workflows", params={"limit": 3, "page": 2}).json()
    assert first["total"] == second["total"] == 4
    assert (len(first["workflows"]), first["has_next"]) == (3, True)
    assert (len(second["workflows"]), second["has_next"]) == (1, False)
    assert [w["workflow_id"] for w in first["workflows"] + second["workflows"]] == ids[::-1]
    beyond = owner.http.get("/workflows", params={"limit": 3, "page": 3}).json()
    assert beyond["workflows"] == [] and beyond["total"] == 4
    for bad in ({"limit": 101}, {"limit": 0}, {"page": 0}, {"status": "running"}, {"sort": "id"}):
        assert owner.http.get("/workflows", params=bad).status_code == 422, bad


def test_bad_configs_store_nothing(stack, owner, other, dataset):
    before = owner.http.get("/workflows").json()["total"]

    def refused(cfg: dict, status: int, **expect: str) -> None:
        r = owner.http.post("/workflows", json={"name": "x", "config": cfg})
        assert r.status_code == status, r.text
        for key, value in expect.items():
            assert r.json()[key] == value, r.json()

    unknown = owner.http.post(
        "/workflows", json={"config": {**config(dataset, 1), "model": "resnet999"}}
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "config.model", unknown.text
    assert "resnet999" in unknown.json()["detail"]  # the catalogue's words, with near names
    refused(
        {**config(dataset, 1), "model": "yolov99", "framework": "ultralytics"},
        400,
        field="config.model",
    )
    # what the request says is checked before what it names
    refused({**config("no-such-dataset", 1), "model": "resnet999"}, 400, field="config.model")
    refused({**config(dataset, 1), "model": "https://example.com/x.pt"}, 400, field="config.model")
    refused({**config(dataset, 1), "task_type": "segmentation"}, 400, field="config.task_type")
    refused({**config(dataset, 1), "hyperparameters": {"epochs": 5000}}, 422)
    refused({**config(dataset, 1), "model": None}, 400, field="config.model")
    refused(config("no-such-dataset", 1), 404, code="DATASET_NOT_FOUND")
    theirs = upload(other, "theirs")
    refused(config(theirs, 1), 404, code="DATASET_NOT_FOUND", field="config.dataset_id")
    assert owner.http.get("/workflows").json()["total"] == before

    # the orchestrator: its secret, a user that exists, that user's own dataset
    url = stack.api("/internal/orchestrator/create-workflow")
    secret = (stack.data_dir / "internal-secret").read_text().strip()
    body = {"experiment_name": "x", "user_id": owner.id, "training_config": config(theirs, 1)}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"X-Internal-Auth": "wrong"}).status_code == 401
    r = httpx.post(url, json=body, headers={"X-Internal-Auth": secret})
    assert r.status_code == 404 and r.json()["code"] == "DATASET_NOT_FOUND"
    nobody = {**body, "user_id": 987654321}
    r = httpx.post(url, json=nobody, headers={"X-Internal-Auth": secret})
    assert r.status_code == 404 and r.json()["field"] == "user_id"
    assert owner.http.get("/workflows").json()["total"] == before


def test_another_users_workflow_is_not_found(owner, other, trained):
    wid = trained[0]["workflow_id"]
    for path in (f"/workflows/{wid}", f"/workflows/{wid}/metrics", f"/workflows/{wid}/logs"):
        r = other.http.get(path)
        assert r.status_code == 404 and r.json()["code"] == "WORKFLOW_NOT_FOUND", path
    assert other.http.delete(f"/workflows/{wid}").status_code == 404
    assert wid not in [w["workflow_id"] for w in other.http.get("/workflows").json()["workflows"]]
    for missing in ("999999999", "wf_999999999", "wf_789xyz", "abc"):
        assert owner.http.get(f"/workflows/{missing}").status_code == 404, missing
    assert owner.http.get(f"/workflows/{wid}").status_code == 200
