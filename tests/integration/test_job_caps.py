"""Caps on a user's active training jobs, against the emulator: a slot is taken by a
conditional write in the same transaction that queues the job (so concurrent starts
cannot pass the cap), and given back in the same transaction that moves the job into a
terminal state (so replayed or late "Batch Job State Change" events give it back once)."""

import secrets
import threading

import pytest

from functions.events import batch_state
from shared.adapters.dynamodb.jobs import DynamoJobs
from shared.models import TrainingJob
from tests.integration.test_jobs import batch_event

pytestmark = pytest.mark.integration


def owner() -> int:
    return 10**9 + secrets.randbelow(10**9)  # a user of this test's own


def pending(container, owner_id: int, framework: str = "timm") -> TrainingJob:
    return DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=owner_id,
            framework=framework,
            model_name="resnet18",
            task_type="image_classification",
        )
    )


def all_at_once(calls):
    """Run the calls in threads released together; their results in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_starts_never_pass_the_cap(container):
    uid, repo = owner(), DynamoJobs(container.table)
    jobs = [pending(container, uid) for _ in range(6)]
    moved = all_at_once(
        [lambda j=j: container.jobs.advance(j.id, "queued", acquire={"jobs": 3}) for j in jobs]
    )
    started = [m for m in moved if m is not None]
    assert len(started) == 3 and all(m.status == "queued" for m in started)
    assert repo.active(uid)["jobs"] == 3
    refused = [j for j, m in zip(jobs, moved, strict=True) if m is None]
    assert all(repo.get(j.id).status == "pending" for j in refused)  # nothing written
    raw = container.table.get(f"JOB#{refused[0].id}", "JOB")
    assert "slots" not in raw and raw.get("started_at") is None
    # The counters have a partition of their own, never the user's (whose item holds the
    # role): what moves jobs is granted ACTIVE#, not USER# (dynamodb:LeadingKeys).
    counters = container.table.get(f"ACTIVE#{uid}", "ACTIVE")
    assert counters["type"] == "active_jobs" and counters["jobs"] == 3
    assert list(container.table.query(f"USER#{uid}")) == []


def test_a_slot_goes_back_once_however_often_the_end_is_replayed(container):
    uid, repo = owner(), DynamoJobs(container.table)
    first, second, third = (pending(container, uid) for _ in range(3))
    assert container.jobs.advance(first.id, "queued", acquire={"jobs": 1}) is not None
    assert container.jobs.advance(second.id, "queued", acquire={"jobs": 1}) is None
    for status in ("RUNNING", "SUCCEEDED", "SUCCEEDED", "FAILED", "RUNNING"):
        batch_state.handle(batch_event(first.id, status, batch_id=f"b-{first.id}"), container)
    assert repo.get(first.id).status == "completed"
    assert repo.active(uid)["jobs"] == 0  # given back once, never below zero
    # The freed slot is taken again; and only one, as before.
    assert container.jobs.advance(second.id, "queued", acquire={"jobs": 1}) is not None
    assert container.jobs.advance(third.id, "queued", acquire={"jobs": 1}) is None
    # A stop ends it: stopping keeps the slot, stopped gives it back.
    assert container.jobs.advance(second.id, "stopping").status == "stopping"
    assert repo.active(uid)["jobs"] == 1
    batch_state.handle(batch_event(second.id, "FAILED", batch_id=f"b-{second.id}"), container)
    batch_state.handle(batch_event(second.id, "FAILED", batch_id=f"b-{second.id}"), container)
    assert repo.get(second.id).status == "stopped" and repo.active(uid)["jobs"] == 0


def test_a_job_that_never_started_gives_nothing_back(container):
    uid, repo = owner(), DynamoJobs(container.table)
    running, idle = pending(container, uid), pending(container, uid)
    assert container.jobs.advance(running.id, "queued", acquire={"jobs": 3}) is not None
    assert container.jobs.advance(idle.id, "stopped").status == "stopped"
    assert container.jobs.advance(idle.id, "failed") is None
    assert repo.active(uid)["jobs"] == 1


def test_one_asr_run_at_a_time_is_atomic(container):
    uid, repo = owner(), DynamoJobs(container.table)

    def new_run():
        job = TrainingJob(
            id=0,
            owner_id=uid,
            framework="torchaudio",
            model_name="conformer",
            task_type="speech_recognition",
            status="queued",
        )
        return repo.create(job, acquire={"jobs": 3, "asr": 1})

    created = [j for j in all_at_once([new_run] * 4) if j is not None]
    assert len(created) == 1
    assert repo.active(uid) == {"jobs": 1, "asr": 1}
    assert repo.list(owner_id=uid, skip=0, limit=10).total == 1  # the refused left nothing
    # A speech job started otherwise counts as a run too (no cap of its own there).
    other = pending(container, uid, framework="torchaudio")
    assert container.jobs.advance(other.id, "queued", acquire={"jobs": 3, "asr": None})
    assert repo.active(uid) == {"jobs": 2, "asr": 2}
    assert new_run() is None
    for job in (created[0], other):
        batch_state.handle(batch_event(job.id, "SUCCEEDED", batch_id=f"b-{job.id}"), container)
    assert repo.active(uid) == {"jobs": 0, "asr": 0}
    assert new_run() is not None
