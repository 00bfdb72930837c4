"""The trainer container's entrypoint on tiny real data, run as the local job runner
runs it (a subprocess reporting Batch state changes): it trains, its loss falls,
metrics, checkpoints, events and an MLflow run exist; SIGTERM stops it with a
checkpoint; a new job resumes from that checkpoint. A SIGTERM the user asked for (the
job is ``stopping``) exits 0; any other (a spot reclaim, a timeout) exits non-zero, so
Batch records the job FAILED, with its checkpoint saved, and Batch's retry resumes."""

import io
import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from shared.adapters.dynamodb.jobs import DynamoJobRecords, DynamoJobs
from shared.adapters.runners import LocalJobRunner
from shared.models import Principal, TrainingJob
from tests import datasets as make
from tests.conftest import ROOT, wait_for_job

pytestmark = pytest.mark.integration
OWNER = Principal(user_id=4242, role="user")


@pytest.fixture(scope="module")
def dataset(container):
    return container.datasets.upload(
        OWNER, [("shapes.zip", io.BytesIO(make.imagefolder(per_class=12)))], name="shapes"
    )


@pytest.fixture
def runner(container, tmp_path):
    env = {
        "PYTHONPATH": str(ROOT / "containers" / "gpu-trainer"),
        "CRUCIBLE_STAGE": container.settings.stage,
        "CRUCIBLE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "2",
    }
    return LocalJobRunner(
        container.bus,
        {"trainer": [sys.executable, "-m", "crucible_trainer"]},
        env=env,
        log_dir=tmp_path,
        queues=container.settings.names.job_queues,
        grace_s=60,  # a step under load can take seconds; the stop waits for its end
    )


def new_job(container, dataset, epochs, **cfg) -> TrainingJob:
    return DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=OWNER.user_id,
            framework="timm",
            model_name="resnet10t",
            task_type="image_classification",
            dataset_id=dataset.id,
            epochs=epochs,
            total_epochs=epochs,
            batch_size=8,
            learning_rate=3e-3,
            advanced_config={"image_size": 32, **cfg},
        )
    )


def wait_for_metrics(container, job_id: int) -> None:
    records = DynamoJobRecords(container.table)
    deadline = time.monotonic() + 120
    while not records.metrics(job_id):
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.2)


def batch_outcome(container, job_id: int) -> tuple[str, str]:
    """How the job's runner said it ended: SUCCEEDED (exit 0) or FAILED, and the runner's
    reason (the event follows the status change, so it may take a moment)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for e in reversed(container.push.events.recent(f"job:{job_id}", limit=200)):
            if e.data.get("batch_status") in ("SUCCEEDED", "FAILED"):
                return e.data["batch_status"], e.data.get("batch_reason", "")
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} has no final Batch state")


def test_trains_reports_and_checkpoints(container, dispatcher, dataset, runner, tmp_path):
    job = new_job(container, dataset, epochs=4)
    rid = runner.submit(str(job.id), job_type="trainer", queue="gpu")
    done = wait_for_job(container, job.id, {"completed", "failed"})
    log = (tmp_path / f"{rid}.log").read_text()
    assert done.status == "completed", log[-3000:]
    assert done.mlflow_run_id and done.current_epoch == 4
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.params["model_name"] == "resnet10t"
    knobs = {k: run.data.params[k] for k in ("optimizer.type", "scheduler.type", "mixed_precision")}
    assert knobs == {
        "optimizer.type": "adamw",
        "scheduler.type": "cosine",
        "mixed_precision": "False",
    }
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [
        1,
        2,
        3,
        4,
    ]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "checkpoints.json",
        "validation.json",
    }
    assert run.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())
    rows = DynamoJobRecords(container.table).metrics(job.id)
    losses = [r["loss"] for r in rows]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and losses[-1] < losses[0]
    assert 0 <= rows[-1]["accuracy"] <= 1 and rows[-1]["val_loss"] > 0
    assert container.artifacts.exists(f"jobs/{job.id}/checkpoints/last.pt")
    assert container.artifacts.exists(f"jobs/{job.id}/checkpoints/best.pt")
    kinds = [e.kind for e in container.push.events.recent(f"job:{job.id}", limit=200)]
    assert {"progress", "validation", "checkpoint", "log", "status"} <= set(kinds)
    validation = [
        e
        for e in container.push.events.recent(f"job:{job.id}", limit=200)
        if e.kind == "validation"
    ][-1]
    # The event and the row carry a reference to the per-class metrics and the matrix.
    ref = validation.data["details"]
    assert validation.data["classes"] == 2 and rows[-1]["details"] == ref
    assert "confusion_matrix" not in validation.data and "per_class" not in rows[-1]
    details = json.loads(container.artifacts.get(ref["key"]))
    assert len(details["confusion_matrix"]) == 2 and set(details["per_class"]) == {
        "circle",
        "square",
    }


def test_sigterm_stops_with_a_checkpoint_and_a_new_job_resumes(
    container, dispatcher, dataset, runner
):
    job = new_job(container, dataset, epochs=200)
    rid = runner.submit(str(job.id), job_type="trainer", queue="gpu")
    wait_for_job(container, job.id, {"running"})
    records = DynamoJobRecords(container.table)
    wait_for_metrics(container, job.id)
    container.jobs.advance(job.id, "stopping")
    runner.terminate(rid, "Stopped by user")
    stopped = wait_for_job(container, job.id, {"stopped", "failed"})
    assert stopped.status == "stopped"
    assert batch_outcome(container, job.id)[0] == "SUCCEEDED"  # a stop asked for: exit 0
    key = f"jobs/{job.id}/checkpoints/last.pt"
    assert container.artifacts.exists(key)
    last_epoch = max(r["epoch"] for r in records.metrics(job.id))

    resumed = new_job(container, dataset, epochs=last_epoch + 1, resume_from=key)
    runner.submit(str(resumed.id), job_type="trainer", queue="gpu")
    assert wait_for_job(container, resumed.id, {"completed", "failed"}).status == "completed"
    assert [r["epoch"] for r in records.metrics(resumed.id)] == [last_epoch + 1]


def test_sigterm_without_a_stop_request_fails_the_job_with_its_checkpoint(
    container, dispatcher, dataset, runner
):
    job = new_job(container, dataset, epochs=200)
    rid = runner.submit(str(job.id), job_type="trainer", queue="gpu")
    wait_for_job(container, job.id, {"running"})
    wait_for_metrics(container, job.id)
    runner.terminate(rid, "Host EC2 (instance i-0123) terminated.")  # a spot reclaim: no stop
    ended = wait_for_job(container, job.id, {"completed", "failed", "stopped"})
    assert ended.status == "failed"
    status, reason = batch_outcome(container, job.id)
    assert status == "FAILED" and "exit code 143" in reason
    assert container.artifacts.exists(f"jobs/{job.id}/checkpoints/last.pt")
    errors = [
        e.data["message"]
        for e in container.push.events.recent(f"job:{job.id}", limit=200)
        if e.kind == "error"
    ]
    assert any(m.startswith("Interrupted without a stop request") for m in errors), errors

    # Batch's retry of the job (its next attempt) goes on from that checkpoint.
    records = DynamoJobRecords(container.table)
    done = max(r["epoch"] for r in records.metrics(job.id))
    DynamoJobs(container.table).update(job.id, {"total_epochs": done + 1})
    retry = subprocess.run(
        [sys.executable, "-m", "crucible_trainer", "--job-id", str(job.id)],
        env={**os.environ, **runner.env, "AWS_BATCH_JOB_ATTEMPT": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    logs = [r["message"] for r in records.logs(job.id)]
    assert f"Attempt 2: resuming from jobs/{job.id}/checkpoints/last.pt" in logs
    assert [r["epoch"] for r in records.metrics(job.id)] == list(range(1, done + 2))
