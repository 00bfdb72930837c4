"""Everything settles: the reconciler (shared/services/reconciler.py) against the emulator,
with real processes killed with SIGKILL at the worst moment.

The module runs on a stage of its own with short bounds (2 s deadlines, 1 s checks) and a
dispatcher of its own whose timer never fires: each test runs the reconciler itself,
waiting for a condition with a deadline, so nothing else settles what it watches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared.adapters.dynamodb.jobs import DynamoJobs
from shared.adapters.runners import LOST, LocalJobRunner
from shared.models import AudioFile, Principal, TrainingJob
from shared.services.training import SubmitFailed
from tests.audio.synth import cry, wav_bytes
from tests.conftest import ROOT, job_events_told

pytestmark = pytest.mark.integration

OWNER = Principal(user_id=1, role="user")
FAKE_TRAINER = r"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("checkpoint saved on SIGTERM", flush=True), sys.exit(0)))
print("trainer", sys.argv[sys.argv.index("--job-id") + 1], flush=True)
if os.environ.get("FAKE_MODE", "long") == "long":
    time.sleep(120)
"""
BOUNDS = {
    "analysis_deadline_s": 2,
    "training_queued_deadline_s": 2,
    "training_check_interval_s": 2,
    "reconcile_max_retries": 1,
    "max_active_jobs": 20,
}


def until(condition, what: str, timeout: float = 60, every: float = 0.1):
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if got := condition():
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stage(emulator):
    return f"r{uuid.uuid4().hex[:8]}"


def make_container(stage: str, tmp: Path, **overrides):
    from shared.adapters.push import LocalHub
    from shared.settings import load_settings
    from shared.wiring import build

    settings = load_settings(
        stage=stage, rate_limit_per_minute=0, data_dir=str(tmp), **{**BOUNDS, **overrides}
    )
    return build(settings, hub=LocalHub())


@pytest.fixture(scope="module")
def c(stage, tmp_path_factory):
    """The module's container, resources and dispatcher (its scheduler never fires)."""
    from functions.local.bootstrap import ensure_resources
    from functions.local.dispatcher import Dispatcher

    c = make_container(stage, tmp_path_factory.mktemp("reconciler"))
    c.resources = ensure_resources(c)
    d = Dispatcher(c, c.resources["queues"], poll_s=0.05, schedule_s=3600).start()
    yield c
    d.stop()


def fake_runner(c, log_dir: Path, bus=None, mode: str = "long") -> LocalJobRunner:
    os.environ["FAKE_MODE"] = mode
    return LocalJobRunner(
        bus or c.bus,
        {"trainer": [sys.executable, "-c", FAKE_TRAINER]},
        env={},
        log_dir=log_dir,
        grace_s=5,
        poll_s=0.2,
        queues=c.settings.names.job_queues,
    )


def with_runner(c, runner):
    """``c`` with ``runner`` as its job runner (the container builds it on first use)."""
    c.__dict__["job_runner"] = runner
    return c


def reconcile_until(c, condition, what: str, timeout: float = 60):
    def step():
        c.reconciler.run()
        return condition()

    return until(step, what, timeout, every=0.3)


# --- analyses ----------------------------------------------------------------------------
def stored_recording(c) -> AudioFile:
    """A recording stored outside ``audio/`` (no upload event starts an analysis of it)."""
    data = wav_bytes(cry(16_000, 4.0, [(0.5, 1.5, 450.0), (2.0, 3.2, 500.0)]), 16_000)
    file_id = c.audio.files.next_id()
    key = f"reconciler-tests/{file_id}.wav"
    c.uploads.put(key, data, content_type="audio/wav")
    f = AudioFile(
        id=file_id,
        owner_id=OWNER.user_id,
        filename=f"{file_id}.wav",
        original_filename="cry.wav",
        key=key,
        file_size=len(data),
        sample_rate=16_000,
        duration=4.0,
        format="wav",
        content_type="audio/wav",
    )
    assert c.audio.files.create(f)
    return f


# The analysis handler's own code path in a process of its own, its analysis made long
# (it reports its first progress, then hangs), so that it can be killed mid-run.
HANDLER = r"""
import sys, time
from functions.events import analysis
from shared.services.audio import AudioService
from shared.settings import load_settings
from shared.wiring import build

def long_analysis(self, f, progress):
    progress(5, "Decoding audio")
    time.sleep(600)

AudioService._analyse = long_analysis
c = build(load_settings(stage=sys.argv[1]))
analysis.handle(
    {"version": "0", "id": "x", "source": "crucible.api", "detail-type": "Analysis Requested",
     "account": "", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
     "detail": {"file_id": int(sys.argv[2]), "task_id": sys.argv[3]}},
    c,
)
"""


def kill_mid_run(c, stage: str, f: AudioFile, task_id: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANDLER, stage, str(f.id), task_id],
        cwd=ROOT,
        env={**os.environ, "CRUCIBLE_ANALYSIS_DEADLINE_S": str(c.settings.analysis_deadline_s)},
    )
    try:
        until(
            lambda: (item := c.table.get(f"FILE#{f.id}", "FILE")) and item.get("run_started"),
            "the handler to claim the run",
        )
        until(lambda: c.audio.files.get(f.id).progress >= 5, "the run's first progress")
    finally:
        proc.send_signal(signal.SIGKILL)  # the worst moment: claimed, mid-way, never finished
        proc.wait(10)
    assert c.audio.files.get(f.id).status == "processing"


def test_an_analysis_whose_worker_is_killed_is_retried_then_completes(c, stage):
    f = stored_recording(c)
    queued = c.audio.first_analysis(f)
    kill_mid_run(c, stage, f, queued.task_id)
    # A redelivered event of the same task is skipped (the run is claimed): only the
    # reconciler gets it going again, as a new task, which the dispatcher runs.
    assert c.audio.run(f.id, queued.task_id) == "skipped"
    retried = reconcile_until(
        c, lambda: (now := c.audio.files.get(f.id)).task_id != queued.task_id and now, "a retry"
    )
    assert retried.status == "processing"  # its message may already be the new run's
    done = until(lambda: (now := c.audio.files.get(f.id)).status == "completed" and now, "done")
    assert done.result_id and not done.error
    topic = f"file:{f.id}"

    def told():  # the run stores the file completed, then tells it: wait for the telling
        events = [(e.kind, e.data["message"]) for e in c.push.events.recent(topic, limit=50)]
        return any(k == "status" and "completed" in m for k, m in events) and events

    kinds = until(told, "the completed status told")
    assert any("Retrying the analysis (attempt 2 of 2)" in m for _, m in kinds)
    assert kinds[-1][0] == "status" and "completed" in kinds[-1][1]


def test_an_analysis_killed_past_its_retries_fails_with_the_reason_pushed(c, stage, tmp_path):
    strict = make_container(stage, tmp_path, reconcile_max_retries=0)
    f = stored_recording(strict)
    queued = strict.audio.first_analysis(f)
    kill_mid_run(strict, stage, f, queued.task_id)
    failed = reconcile_until(
        strict, lambda: (now := strict.audio.files.get(f.id)).status == "failed" and now, "failed"
    )
    assert "did not finish within 2 s, 1 time(s)" in failed.error
    last = strict.push.events.recent(f"file:{f.id}", limit=50)[-1]
    assert last.kind == "error" and failed.error in last.data["message"]
    assert last.data["status"] == "failed"


# --- training jobs -----------------------------------------------------------------------
def new_job(c, **fields) -> TrainingJob:
    return DynamoJobs(c.table).create(
        TrainingJob(
            id=0,
            owner_id=OWNER.user_id,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
            **fields,
        )
    )


def job_of(c, job_id: int) -> TrainingJob:
    return c.job_repository.get(job_id)


def wait_status(c, job_id: int, statuses: set[str], timeout: float = 60) -> TrainingJob:
    return until(
        lambda: (j := job_of(c, job_id)).status in statuses and j, f"job {job_id} in {statuses}"
    )


def queued(c, job: TrainingJob) -> TrainingJob:
    """The job queued as ``start`` queues it (submission 1), not yet submitted."""
    return c.jobs.advance(job.id, "queued", attempt=job.attempt + 1)


def trainer_pid(runner_pid: int) -> int:
    """The trainer: the child of the runner's wrapper shell."""
    children = Path(f"/proc/{runner_pid}/task/{runner_pid}/children")
    return int(until(lambda: children.read_text().split(), "the trainer process")[0])


def test_a_trainer_killed_with_sigkill_fails_the_job_with_its_exit(c, tmp_path):
    job = queued(c, new_job(c))
    run = fake_runner(c, tmp_path)
    submitted = with_runner(c, run) and c.training._submit(job)
    wait_status(c, job.id, {"running"})
    os.kill(trainer_pid(run._procs[submitted.runner_job_id].pid), signal.SIGKILL)
    failed = wait_status(c, job.id, {"failed"})
    assert "exit code 137" in failed.error
    events = job_events_told(c, job.id, lambda e: e.kind == "error")
    last = events[-1]  # the final state is the last thing followers hear
    assert last.kind == "error" and "exit code 137" in last.data["message"], [
        (e.kind, e.timestamp.isoformat(), e.data) for e in events
    ]


class DroppingBus:
    """A bus that loses the runner's final state changes (as a dead-lettered event is)."""

    def __init__(self, bus) -> None:
        self.bus, self.dropped = bus, []

    def put_event(self, detail_type, detail, *, source="crucible.api") -> None:
        if detail.get("status") in ("SUCCEEDED", "FAILED"):
            self.dropped.append(detail)
            return
        self.bus.put_event(detail_type, detail, source=source)


def test_a_lost_end_event_is_noticed_by_asking_the_runner(c, tmp_path):
    job = queued(c, new_job(c))
    bus = DroppingBus(c.bus)
    run = fake_runner(c, tmp_path, bus=bus)
    submitted = with_runner(c, run) and c.training._submit(job)
    wait_status(c, job.id, {"running"})
    os.kill(trainer_pid(run._procs[submitted.runner_job_id].pid), signal.SIGKILL)
    until(lambda: bus.dropped, "the runner's (lost) end event")
    assert job_of(c, job.id).status == "running"  # nobody heard
    failed = reconcile_until(c, lambda: (j := job_of(c, job.id)).status == "failed" and j, "fail")
    assert "exit code 137" in failed.error
    last = c.push.events.recent(f"job:{job.id}", limit=20)[-1]
    assert last.kind == "error" and last.data["status"] == "failed"


def test_a_job_left_queued_without_a_runner_job_is_resubmitted(c, tmp_path):
    job = queued(c, new_job(c))
    c.training._watch(job, 0)  # what _submit writes first; then its caller died
    run = fake_runner(c, tmp_path, mode="ok")
    with_runner(c, run)
    resubmitted = reconcile_until(c, lambda: (j := job_of(c, job.id)).runner_job_id and j, "run")
    assert resubmitted.attempt == job.attempt + 1
    assert wait_status(c, job.id, {"completed"}).runner_job_id == resubmitted.runner_job_id
    # The submission that died cannot record a runner job any more: it stops its own.
    late = run.submit(str(job.id), job_type="trainer", queue="gpu", attempt=job.attempt)
    assert c.job_repository.set_runner(job.id, job.attempt, late) is None


def test_an_earlier_attempts_deadline_is_dropped_not_renewed(c):
    """Each submission watches its own attempt: a stop-resume loop leaves no chains."""
    from shared.ports import Deadline

    job = queued(c, new_job(c))
    stale = Deadline("training", str(job.id), time.time(), {"attempt": job.attempt - 1})
    assert c.training.reconcile(stale, time.time()) == "settled"
    now = job_of(c, job.id)
    assert (now.status, now.attempt, now.runner_job_id) == ("queued", job.attempt, None)


def test_a_job_left_queued_past_its_retries_fails_with_the_reason(c, stage, tmp_path):
    strict = make_container(stage, tmp_path, reconcile_max_retries=0)
    job = queued(strict, new_job(strict))
    strict.training._watch(job, 0)
    failed = reconcile_until(
        strict, lambda: (j := job_of(strict, job.id)).status == "failed" and j, "failed"
    )
    assert "was not submitted within 2 s" in failed.error
    last = strict.push.events.recent(f"job:{job.id}", limit=20)[-1]
    assert last.kind == "error" and failed.error == last.data["message"]
    assert strict.jobs.jobs.active(OWNER.user_id).get("jobs", 0) >= 0  # slots given back


def test_a_stop_racing_the_submission_terminates_the_runner_job(c, tmp_path):
    job = queued(c, new_job(c))
    run = fake_runner(c, tmp_path)
    with_runner(c, run)
    stopping = c.training.stop(OWNER, job.id)  # before the submission recorded its runner job
    assert stopping.status == "stopping"  # not stopped: a process may be about to run
    submitted = c.training._submit(job)  # the submission under way records it, then stops it
    rid = submitted.runner_job_id
    stopped = wait_status(c, job.id, {"stopped"})
    # Its process ended before the job became stopped (SIGTERM may come before the
    # trainer's handler is set: then it ends FAILED, by the signal).
    assert run.describe([rid])[rid].status in ("SUCCEEDED", "FAILED")
    assert stopped.runner_job_id == rid


def test_a_submission_that_fails_fails_the_job_which_can_start_again(c, tmp_path):
    class Refusing:
        def submit(self, *args, **kwargs):
            raise ConnectionError("the runner is unreachable")

    job = new_job(c)
    with_runner(c, Refusing())
    c.datasets  # noqa: B018 - start() reads nothing of it for a job without a dataset
    with pytest.raises(SubmitFailed, match="could not be submitted"):
        c.training.start(OWNER, job.id)
    failed = job_of(c, job.id)
    assert failed.status == "failed" and "ConnectionError" in failed.error
    assert c.push.events.recent(f"job:{job.id}", limit=5)[-1].kind == "error"
    with_runner(c, fake_runner(c, tmp_path, mode="ok"))
    again = c.training.start(OWNER, job.id)  # never ran: it may simply start again
    assert again.status in ("queued", "running") and again.attempt == 2
    assert wait_status(c, job.id, {"completed"}).error is None


def test_events_of_a_runner_job_that_is_not_the_current_one_change_nothing(c):
    from functions.events import batch_state

    job = queued(c, new_job(c))
    c.job_repository.set_runner(job.id, job.attempt, "b-current")

    def event(batch_id, status, attempt):
        detail = {"jobId": batch_id, "status": status}
        detail["parameters"] = {"job_id": str(job.id), "attempt": str(attempt)}
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Batch Job State Change",
            "source": "aws.batch",
            "detail": detail,
        }

    out = batch_state.handle(event("b-old", "FAILED", job.attempt - 1), c)
    assert out["status"] == "ignored" and job_of(c, job.id).status == "queued"
    batch_state.handle(event("b-current", "RUNNING", job.attempt), c)
    assert job_of(c, job.id).status == "running"


def test_resume_continues_the_same_job_from_its_checkpoint(c, tmp_path):
    from shared import keys
    from shared.errors import Conflict, InvalidState

    job = new_job(c)
    with pytest.raises(InvalidState, match="Only a stopped or failed job can be resumed"):
        c.training.start(OWNER, job.id, resume=True)
    with_runner(c, fake_runner(c, tmp_path))
    c.training.start(OWNER, job.id)
    wait_status(c, job.id, {"running"})
    first = c.training.stop(OWNER, job.id)
    wait_status(c, job.id, {"stopped"})
    with pytest.raises(Conflict, match="no checkpoint to resume from") as refused:
        c.training.start(OWNER, job.id, resume=True)
    assert refused.value.code == "NO_CHECKPOINT"
    c.artifacts.put(keys.last_checkpoint(job.id), b"a checkpoint")  # what the trainer saves
    resumed = c.training.start(OWNER, job.id, resume=True)
    assert resumed.id == job.id and resumed.attempt == first.attempt + 1
    assert resumed.advanced_config["resume_from"] == keys.last_checkpoint(job.id)
    assert resumed.runner_job_id and resumed.runner_job_id != first.runner_job_id
    # the run that ended before the resume stays GPU time (the plan's quota counts it)
    assert [run[0] for run in resumed.earlier_runs] == [first.started_at]
    assert resumed.earlier_runs[0][1] <= resumed.started_at and resumed.completed_at is None
    assert wait_status(c, job.id, {"running"}).error is None
    c.training.stop(OWNER, job.id)
    wait_status(c, job.id, {"stopped"})


# --- the local runner after a restart of the local stack ---------------------------------
STACK = r"""
import json, sys, time
from pathlib import Path
from shared.adapters.runners import LocalJobRunner
from shared.settings import load_settings
from shared.wiring import build

c = build(load_settings(stage=sys.argv[1]))
run = LocalJobRunner(c.bus, {"trainer": [sys.executable, "-c", sys.argv[3]]}, env={},
                     log_dir=Path(sys.argv[2]), grace_s=5, queues=c.settings.names.job_queues)
ids = [run.submit(j, job_type="trainer", queue="gpu", attempt=1) for j in sys.argv[4:]]
print(json.dumps(ids), flush=True)
time.sleep(600)
"""


def test_a_restarted_runner_adopts_live_processes_and_fails_dead_ones(c, stage, tmp_path):
    live, dead = (queued(c, new_job(c)) for _ in range(2))
    stack = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STACK,
            stage,
            str(tmp_path),
            FAKE_TRAINER,
            str(live.id),
            str(dead.id),
        ],
        cwd=ROOT,
        env={**os.environ, "FAKE_MODE": "long"},
        stdout=subprocess.PIPE,
    )
    live_rid, dead_rid = json.loads(stack.stdout.readline())
    for job, rid in ((live, live_rid), (dead, dead_rid)):
        c.job_repository.set_runner(job.id, job.attempt, rid)
        wait_status(c, job.id, {"running"})
    stack.send_signal(signal.SIGKILL)  # the local stack dies; its jobs' processes do not
    stack.wait(10)
    dead_pid = json.loads((tmp_path / f"{dead_rid}.json").read_text())["pid"]
    os.killpg(dead_pid, signal.SIGKILL)  # and one of them dies while it is down
    until(lambda: not Path(f"/proc/{dead_pid}").exists(), "the dead job's process to go")

    again = fake_runner(c, tmp_path)  # the stack starts again over the same folder
    failed = wait_status(c, dead.id, {"failed"})
    assert failed.error == LOST
    assert again.describe([live_rid, dead_rid, "local-unknown"]) == {
        live_rid: ("RUNNING", None),
        dead_rid: ("FAILED", LOST),
    }
    assert job_of(c, live.id).status == "running"  # alive, and adopted
    c.jobs.advance(live.id, "stopping")
    again.terminate(live_rid, "Stopped by user")  # a process it did not start
    assert wait_status(c, live.id, {"stopped"}).status == "stopped"
    assert "checkpoint saved on SIGTERM" in (tmp_path / f"{live_rid}.log").read_text()
    # A third start finds nothing left to do: every end was published.
    third = fake_runner(c, tmp_path)
    assert not third._adopted and third.describe([live_rid])[live_rid].status == "SUCCEEDED"


# --- the dead-letter queue -----------------------------------------------------------------
def test_dead_letters_are_replayed_to_their_handlers(c):
    from functions.events.reconciler import replay_dead_letters

    sqs = c.client("sqs")
    dlq = sqs.get_queue_url(QueueName=c.settings.names.events_dlq)["QueueUrl"]
    ran, ended = (queued(c, new_job(c)) for _ in range(2))
    for job in (ran, ended):
        c.job_repository.set_runner(job.id, job.attempt, f"b-{job.id}")
    gpu_queue = c.settings.names.gpu_queue

    def change(job, status):
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Batch Job State Change",
            "source": "aws.batch",
            "detail": {
                "jobId": f"b-{job.id}",
                "jobQueue": f"arn:aws:batch:eu-west-1:123456789012:job-queue/{gpu_queue}",
                "status": status,
                "parameters": {"job_id": str(job.id), "job_type": "trainer"},
            },
        }

    letters = [
        change(ran, "RUNNING"),  # an EventBridge target's dead letter: the event itself
        {
            "requestContext": {"condition": "RetriesExhausted"},
            "requestPayload": change(ended, "SUCCEEDED"),
        },
        {"source": "aws.scheduler", "detail-type": "Scheduled Event"},  # the next tick's job
    ]
    for body in letters:
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(body))
    assert replay_dead_letters(c) == {"replayed": 2, "dropped": 1, "failed": 0}
    assert job_of(c, ran.id).status == "running" and job_of(c, ended.id).status == "completed"
    assert replay_dead_letters(c) == {"replayed": 0, "dropped": 0, "failed": 0}  # emptied


# --- seed 003's batches ------------------------------------------------------------------
class Unsent:
    def put_event(self, detail_type, detail, *, source="crucible.api") -> None:
        pass


class FailingPuts:
    """The artifacts store as the batch handler sees it while S3 refuses its writes."""

    def __init__(self, store) -> None:
        self.store = store

    def put(self, key, body, *, content_type=None):
        raise ConnectionError("S3 is unreachable")

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_batch_whose_handler_keeps_failing_ends_failed_past_its_deadline(c, stage, tmp_path):
    import base64

    from functions.events import batch_inference
    from shared import keys

    job = new_job(c)  # a workflow is a training job
    c.artifacts.put(keys.last_checkpoint(job.id), b"a checkpoint")
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
    quiet = make_container(stage, tmp_path)
    quiet.__dict__["bus"] = Unsent()  # its event goes to the handler below only
    batch = quiet.inference.submit_batch(OWNER, str(job.id), [{"image_base64": png}], {})
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": "crucible.api",
        "detail-type": "Batch Inference Requested",
        "detail": {"workflow_id": job.id, "batch_id": batch["job_id"]},
    }
    broken = make_container(stage, tmp_path)
    broken.__dict__["artifacts"] = FailingPuts(c.artifacts)
    with pytest.raises(ConnectionError):  # every delivery fails the same way
        batch_inference.handle(event, broken)
    # An hour later (the record says so), the reconciler ends it, with the reason.
    key = keys.batch_request(job.id, batch["job_id"])
    record = json.loads(c.artifacts.get(key))
    record["created_at"] = "2000-01-01T00:00:00Z"
    c.artifacts.put(key, json.dumps(record).encode())
    report = c.reconciler.run(now=time.time() + 3700)
    assert f"batch:{job.id}/{batch['job_id']}" in report["failed"]
    seen = c.inference.batch_status(OWNER, str(job.id), batch["job_id"])
    assert seen["status"] == "failed" and "did not finish within 60 minutes" in seen["error"]
