"""The trainer container's entrypoint on tiny real data, run as the local job runner
runs it (a subprocess reporting Batch state changes): it trains, its loss falls,
metrics, checkpoints, events and an MLflow run exist; SIGTERM stops it with a
checkpoint; a new job resumes from that checkpoint."""

import io
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
        grace_s=20,
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
    assert len(validation.data["confusion_matrix"]) == 2 and set(validation.data["per_class"]) == {
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
    deadline = time.monotonic() + 120
    while not records.metrics(job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    container.jobs.advance(job.id, "stopping")
    runner.terminate(rid, "Stopped by user")
    stopped = wait_for_job(container, job.id, {"stopped", "failed"})
    assert stopped.status == "stopped"
    key = f"jobs/{job.id}/checkpoints/last.pt"
    assert container.artifacts.exists(key)
    last_epoch = max(r["epoch"] for r in records.metrics(job.id))

    resumed = new_job(container, dataset, epochs=last_epoch + 1, resume_from=key)
    runner.submit(str(resumed.id), job_type="trainer", queue="gpu")
    assert wait_for_job(container, resumed.id, {"completed", "failed"}).status == "completed"
    assert [r["epoch"] for r in records.metrics(resumed.id)] == [last_epoch + 1]
