"""The leaderboard's jobs against DynamoDB in the emulator: the rolling submission window
and the concurrency cap are single conditional writes (no burst gets past them), a job
ends once and gives its slot back once, and the sweeper ends whatever overstays its
deadline, asking the runner to stop it."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.adapters.dynamodb.evaluations import (
    DynamoEvaluations,
    DynamoLeaderboards,
    DynamoSubmissions,
)
from shared.errors import RateLimited
from shared.models import Principal
from shared.services.evaluations import EvaluationLimits, EvaluationService
from shared.settings import ResourceClass

pytestmark = pytest.mark.integration


class Runner:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.terminated: list[str] = []

    def submit(self, job_id, *, job_type, queue, limits=None, owner=None):
        assert job_type == "evaluator" and limits is not None
        self.submitted.append(job_id)
        return f"run-{job_id}"

    def terminate(self, runner_job_id, reason):
        self.terminated.append(runner_job_id)


@pytest.fixture
def service(container):
    runner = Runner()
    svc = EvaluationService(
        DynamoSubmissions(container.table),
        DynamoEvaluations(container.table),
        DynamoLeaderboards(container.table),
        container.uploads,
        container.artifacts,
        runner,
        container.push,
        limits=EvaluationLimits(
            classes={"small": ResourceClass("small", 30, 512, 1)},
            grace_s=5,
            max_active=3,
            per_hour=4,
            max_bytes=1024 * 1024,
        ),
        mlflow_ui_url="http://127.0.0.1:5010/",
    )
    svc.test_runner = runner
    return svc


def user() -> Principal:
    return Principal(user_id=int(time.time_ns() % 10**12), role="user")


def files():
    return [
        ("main.py", io.BytesIO(b"print(1)"), 8),
        ("config.yaml", io.BytesIO(b"a: 1"), 4),
    ]


def test_a_burst_of_submissions_gets_exactly_the_window(service):
    me = user()
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda _: _try(lambda: service.submit(me, files(), "main.py", "config.yaml", None)),
                range(8),
            )
        )
    assert sum(1 for o in outcomes if not isinstance(o, Exception)) == 4
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(refused) == 4
    assert all(3500 < r.reset_at - time.time() <= 3601 for r in refused)


def test_the_concurrency_cap_holds_under_a_burst_and_slots_come_back_once(service):
    me = user()
    sid = service.submit(me, files(), "main.py", "config.yaml", None).id
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(
            pool.map(lambda _: _try(lambda: service.create_job(me, sid, None)), range(6))
        )
    created = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(created) == 3 and all(
        isinstance(o, RateLimited) for o in outcomes if o not in created
    )
    first = created[0]
    assert service.fail(first.id, "boom").status == "failed"
    assert service.fail(first.id, "again") is None  # ended once
    service.cancel(me, created[1].id)
    assert created[1].runner_job_id in service.test_runner.terminated
    # two slots came back (not three, though three ends were asked for)
    assert len([_try(lambda: service.create_job(me, sid, None)) for _ in range(3)]) == 3
    assert service.jobs.t.get(f"ACTIVE#{me.user_id}", "ACTIVE")["evaluations"] == 3


def test_the_sweeper_ends_what_overstays_and_stops_its_runner(service):
    me = user()
    sid = service.submit(me, files(), "main.py", "config.yaml", None).id
    job = service.create_job(me, sid, "small")
    assert job.id in [j.id for j in service.jobs.active()]
    assert service.sweep(now=time.time()) == []  # not yet
    assert job.id in service.sweep(now=job.deadline + 1)
    ended = service.jobs.get(job.id)
    assert ended.status == "failed" and "Timed out" in ended.error and "30 s" in ended.error
    assert f"run-{job.id}" in service.test_runner.terminated
    assert job.id not in [j.id for j in service.jobs.active()]
    assert service.sweep(now=job.deadline + 1) == [] or job.id not in service.sweep(
        now=job.deadline + 1
    )


def test_a_runner_that_ends_without_a_result_fails_the_job(service):
    me = user()
    sid = service.submit(me, files(), "main.py", "config.yaml", None).id
    job = service.create_job(me, sid, None)
    assert service.on_runner_state(job.id, "RUNNING", None).status == "running"
    ended = service.on_runner_state(job.id, "FAILED", "Job killed by signal 9")
    assert ended.status == "failed" and "signal 9" in ended.error
    # a late SUCCEEDED changes nothing
    assert service.on_runner_state(job.id, "SUCCEEDED", None).status == "failed"


def _try(fn):
    """What ``fn`` returns, or the exception it raised."""
    try:
        return fn()
    except Exception as exc:
        return exc


def test_a_completed_job_ranks_on_its_board(service):
    me, board = user(), f"b{time.time_ns()}"
    sid = service.submit(
        me, files(), "main.py", "config.yaml", f'{{"leaderboard": "{board}", "m": 1}}'
    ).id
    job = service.create_job(me, sid, None)
    assert service.begin(job.id)[0].status == "running"
    service.record_run(job.id, "run1", "7")
    done = service.complete(job.id, {"dataset": "d"}, {"auc": 0.5, "loss": 2.0})
    assert done.status == "completed" and done.leaderboard == board
    ranked = service.leaderboard(
        board, metric="auc", order="desc", filters={"dataset": "d"}, every_run=False, limit=10
    )
    assert [e["job_id"] for e in ranked["entries"]] == [job.id], ranked
    top = ranked["entries"][0]
    assert top["metadata"] == {"leaderboard": board, "m": 1}
    assert top["mlflow_ui_link"] == "http://127.0.0.1:5010/#/experiments/7/runs/run1"
    assert ranked["metrics"] == ["auc", "loss"]
    assert service.complete(job.id, {}, {"auc": 1.0}) is None  # once


def test_a_submission_that_cannot_be_stored_leaves_no_files(service, monkeypatch):
    me = user()

    def down(*args, **kwargs):
        raise RuntimeError("the table is unavailable")

    monkeypatch.setattr(service.submissions, "create", down)
    with pytest.raises(RuntimeError):
        service.submit(me, files(), "main.py", "config.yaml", None)
    assert list(service.uploads.keys(f"submissions/{me.user_id}/")) == []


def test_the_default_metric_is_the_one_most_runs_report(service):
    board = f"d{time.time_ns()}"
    for metrics in ({"auc": 0.9}, {"auc": 0.8, " odd": 1.0}, {"auc": 0.7}):
        me = user()
        sid = service.submit(
            me, files(), "main.py", "config.yaml", f'{{"leaderboard": "{board}"}}'
        ).id
        job = service.create_job(me, sid, None)
        service.begin(job.id)
        service.complete(job.id, {}, metrics)
    ranked = service.leaderboard(
        board, metric=None, order="desc", filters={}, every_run=False, limit=2
    )
    assert ranked["metric"] == "auc" and [e["score"] for e in ranked["entries"]] == [0.9, 0.8]
    assert ranked["metrics"] == [" odd", "auc"]  # what the rows shown report
