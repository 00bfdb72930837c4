"""Training jobs' forward-only state machine, driven by "Batch Job State Change" events
from a real local job runner (subprocesses) through EventBridge and the dispatcher."""

import json
import os
import signal
import sys
import uuid

import pytest

from functions.events import batch_state
from shared.adapters.dynamodb.jobs import DynamoJobs
from shared.adapters.runners import LocalJobRunner
from shared.models import TrainingJob
from tests.conftest import job_events_told, wait_for_job

pytestmark = pytest.mark.integration

FAKE_JOB = r"""
import os, signal, sys, time
mode = os.environ.get("FAKE_MODE", "ok")
signal.signal(signal.SIGTERM, lambda *_: (print("checkpoint saved on SIGTERM", flush=True), sys.exit(0)))
print("job", sys.argv[sys.argv.index("--job-id") + 1], "env", os.environ["CRUCIBLE_JOB_ID"], flush=True)
if mode == "crash":
    sys.exit(3)
if mode == "long":
    time.sleep(60)
"""


def new_job(container) -> TrainingJob:
    return DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=1,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
        )
    )


def batch_event(job_id, status, batch_id="b-1", reason=None):
    detail = {"jobId": batch_id, "status": status, "parameters": {"job_id": str(job_id)}}
    if reason:
        detail["statusReason"] = reason
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "detail": detail,
    }


def test_states_only_move_forward(container):
    job = new_job(container)
    for status in ("SUBMITTED", "RUNNABLE", "RUNNING", "RUNNING", "SUCCEEDED"):
        batch_state.handle(batch_event(job.id, status), container)
    done = container.jobs.jobs.get(job.id)
    assert done.status == "completed" and done.started_at and done.completed_at
    for late in ("RUNNABLE", "RUNNING", "FAILED"):  # replayed or out of order: nothing moves
        batch_state.handle(batch_event(job.id, late, batch_id="b-late"), container)
    assert container.jobs.jobs.get(job.id).status == "completed"


def test_a_job_asked_to_stop_ends_stopped_and_a_crash_fails(container):
    job = new_job(container)
    batch_state.handle(batch_event(job.id, "RUNNING"), container)
    assert container.jobs.advance(job.id, "stopping").status == "stopping"
    assert container.jobs.advance(job.id, "running") is None  # never back
    batch_state.handle(batch_event(job.id, "FAILED", reason="Terminated by user"), container)
    assert container.jobs.jobs.get(job.id).status == "stopped"

    other = new_job(container)
    batch_state.handle(batch_event(other.id, "RUNNING", batch_id="b-2"), container)
    batch_state.handle(
        batch_event(other.id, "FAILED", batch_id="b-2", reason="exit code 137"), container
    )
    failed = container.jobs.jobs.get(other.id)
    assert failed.status == "failed" and failed.error == "exit code 137"


@pytest.fixture
def runner(container, tmp_path, monkeypatch):
    def make(mode):
        monkeypatch.setenv("FAKE_MODE", mode)
        return LocalJobRunner(
            container.bus,
            {"trainer": [sys.executable, "-c", FAKE_JOB]},
            env={},
            log_dir=tmp_path,
            queues=container.settings.names.job_queues,
            grace_s=5,
        )

    return make


@pytest.mark.parametrize(("mode", "final"), [("ok", "completed"), ("crash", "failed")])
def test_local_runner_reports_like_batch(container, dispatcher, runner, tmp_path, mode, final):
    job = new_job(container)
    run = runner(mode)
    runner_id = run.submit(str(job.id), job_type="trainer", queue="gpu")
    done = wait_for_job(container, job.id, {final})
    assert done.started_at is not None
    log = (tmp_path / f"{runner_id}.log").read_text()
    assert f"job {job.id} env {job.id}" in log
    if mode == "crash":
        assert "exit code 3" in done.error


def test_local_runner_stops_with_sigterm(container, dispatcher, runner, tmp_path):
    job = new_job(container)
    run = runner("long")
    runner_id = run.submit(str(job.id), job_type="trainer", queue="gpu")
    wait_for_job(container, job.id, {"running"})
    container.jobs.advance(job.id, "stopping")
    run.terminate(runner_id, "Stopped by user")
    assert wait_for_job(container, job.id, {"stopped"}).status == "stopped"
    assert "checkpoint saved on SIGTERM" in (tmp_path / f"{runner_id}.log").read_text()
    events = job_events_told(container, job.id, lambda e: e.data.get("batch_status") == "SUCCEEDED")
    assert [e.data["batch_status"] for e in events][-1] == "SUCCEEDED", [e.data for e in events]
    assert json.dumps(events[-1].data).count("stopped") >= 1


def test_a_killed_job_fails_and_the_error_is_pushed(container, dispatcher, runner):
    job = new_job(container)
    run = runner("long")
    rid = run.submit(str(job.id), job_type="trainer", queue="gpu")
    wait_for_job(container, job.id, {"running"})
    os.killpg(run._procs[rid].pid, signal.SIGKILL)  # an OOM kill or a lost host, not a stop
    failed = wait_for_job(container, job.id, {"failed"})
    assert "signal 9" in failed.error
    events = job_events_told(container, job.id, lambda e: e.kind == "error")
    last = events[-1]  # the final state is the last thing followers hear
    assert (
        last.kind == "error"
        and last.data["status"] == "failed"
        and "signal 9" in last.data["message"]
    ), [(e.kind, e.data) for e in events]
    assert [e.kind for e in events].count("error") == 1
