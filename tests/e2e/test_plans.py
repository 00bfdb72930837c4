"""Seed 003's plans over HTTP, on a stack of their own whose plans are tiny: the minute and
hour windows with their headers and 429s, an administrator's upgrade lifting them, the
profile's usage, the projects' counts, and the concurrency and GPU-hour quotas refusing a
new job with a clear message."""

import json
import time

import pytest

from tests import datasets as make
from tests.conftest import Client, start_stack, stop_stack

pytestmark = pytest.mark.e2e

PER_MINUTE, PER_HOUR = 12, 20  # free, on this stack
PRO_GPU_HOURS = 0.0003  # about a second: one running job uses it up


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("plans") / "data",
        {
            # Not CRUCIBLE_RATE_LIMIT_PER_MINUTE nor CRUCIBLE_MAX_ACTIVE_JOBS: set, they would
            # replace every plan's figures.
            "CRUCIBLE_PLAN_LIMITS": json.dumps(
                {
                    "free": {"requests_per_minute": PER_MINUTE, "requests_per_hour": PER_HOUR},
                    "pro": {"gpu_hours": PRO_GPU_HOURS},
                }
            ),
            "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    yield s
    stop_stack(s)


@pytest.fixture(scope="module")
def admin(tiny):
    return Client(tiny, role="admin")


def limit_of(r) -> tuple[int, int, int]:
    h = r.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


def until_second(at: float, period: int) -> None:
    """Sleep until ``at`` seconds into the current ``period`` (or the next one's)."""
    into = time.time() % period
    time.sleep((at - into) % period)


def test_the_minute_then_the_hour_then_an_upgrade(tiny, admin):
    if time.time() % 3600 > 3600 - 150:  # the whole scenario within one hour of the clock
        until_second(1, 3600)
    if time.time() % 60 > 45:  # the first burst within one minute
        until_second(1, 60)
    alice = Client(tiny)

    # The minute binds first: its limit, counting down, then 429 with when to come back.
    answers = [alice.http.get("/tags/") for _ in range(PER_MINUTE + 1)]
    assert [r.status_code for r in answers] == [200] * PER_MINUTE + [429]
    assert [limit_of(r)[:2] for r in answers[:3]] == [
        (PER_MINUTE, PER_MINUTE - n) for n in (1, 2, 3)
    ]
    refused = answers[-1]
    body = refused.json()
    assert (
        body["code"] == "RATE_LIMIT_EXCEEDED" and "per minute (the free plan's)" in body["detail"]
    )
    limit, remaining, reset = limit_of(refused)
    assert (limit, remaining) == (PER_MINUTE, 0) and reset % 60 == 0 and reset > time.time()
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    # The next minute: the hour has PER_HOUR - PER_MINUTE left (the refused one was not
    # counted in it), fewer than the minute's, so it is the one the headers describe.
    until_second(1, 60)
    left = PER_HOUR - PER_MINUTE
    answers = [alice.http.get("/tags/") for _ in range(left + 1)]
    assert [r.status_code for r in answers] == [200] * left + [429]
    assert limit_of(answers[0])[:2] == (PER_HOUR, left - 1)
    refused = answers[-1]
    assert "20 requests per hour" in refused.json()["detail"]
    assert limit_of(refused)[2] % 3600 == 0 and int(refused.headers["Retry-After"]) > 60

    # An administrator moves alice to pro: her next request is in, under pro's limits.
    upgraded = admin.http.put(f"/users/{alice.id}/plan", json={"plan": "pro"})
    assert upgraded.status_code == 200, upgraded.text
    assert (
        upgraded.json()["plan"] == "pro"
        and upgraded.json()["limits"]["requests_per_hour"] == 10_000
    )
    r = alice.http.get("/tags/")
    assert r.status_code == 200 and limit_of(r)[0] == 300
    # Only an administrator sets plans, and only the platform's.
    assert alice.http.put(f"/users/{alice.id}/plan", json={"plan": "enterprise"}).status_code == 403
    bad = admin.http.put(f"/users/{alice.id}/plan", json={"plan": "gold"})
    assert (
        bad.status_code == 422
        and admin.http.put("/users/999999/plan", json={"plan": "pro"}).status_code == 404
    )


def images(client, **form) -> dict:
    r = client.http.post(
        "/datasets",
        data={"name": "shapes", **form},
        files=[("files", ("s.zip", make.imagefolder(3)))],
    )
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    return r.json()


def new_job(client, dataset, **top) -> int:
    r = client.http.post(
        "/training/jobs",
        json={
            **top,
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": dataset["id"],
                "epochs": 1000,
                "batch_size": 4,
                "advanced_config": {"image_size": 32},
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_one_workflow_at_a_time_on_free(tiny):
    carol = Client(tiny)  # free: one concurrent workflow
    data = images(carol)
    first, second = new_job(carol, data), new_job(carol, data)
    assert carol.http.post(f"/training/jobs/{first}/start").status_code == 200
    try:
        refused = carol.http.post(f"/training/jobs/{second}/start")
        assert refused.status_code == 409 and refused.json()["code"] == "ACTIVE_JOB_LIMIT"
        assert "at most 1 may be queued or running" in refused.json()["detail"]
        usage = carol.http.get("/user/profile").json()["usage"]
        assert (usage["active_workflows"], usage["concurrent_workflows_limit"]) == (1, 1)
    finally:
        carol.http.post(f"/training/stop/{first}")


def test_profile_usage_project_counts_and_the_gpu_hour_quota(tiny, admin):
    gina = Client(tiny)
    assert admin.http.put(f"/users/{gina.id}/plan", json={"plan": "pro"}).status_code == 200
    fresh = gina.http.get("/user/profile").json()
    assert fresh["plan"] == "pro" and fresh["user_id"] == gina.id and fresh["email"] == gina.email
    assert fresh["usage"]["gpu_hours_used"] == 0 and fresh["usage"]["storage_bytes_used"] == 0
    assert fresh["usage"]["gpu_hours_limit"] == PRO_GPU_HOURS
    assert fresh["usage"]["storage_gb_limit"] == 50 and fresh["limits"]["concurrent_workflows"] == 5

    project = gina.http.post("/projects", json={"name": "cats"}).json()["project_id"]
    inside, outside = images(gina, project_id=str(project)), images(gina)
    first = new_job(gina, inside, project_id=project)
    second = new_job(gina, outside, project_id=project)
    listed = gina.http.get("/projects").json()["projects"]
    assert [(p["workflow_count"], p["dataset_count"]) for p in listed] == [(2, 1)]
    assert gina.http.get(f"/projects/{project}").json()["workflow_count"] == 2

    # /datasets takes seed 003's page beside skip and limit.
    pages = [gina.http.get("/datasets", params={"page": n, "limit": 1}).json() for n in (1, 2, 3)]
    assert [len(p["datasets"]) for p in pages] == [1, 1, 0] and pages[1]["skip"] == 1
    assert {pages[0]["datasets"][0]["id"], pages[1]["datasets"][0]["id"]} == {
        inside["id"],
        outside["id"],
    }

    stored = gina.http.get("/user/profile").json()["usage"]
    assert stored["storage_bytes_used"] > 0 and stored["gpu_hours_used"] == 0

    # A running job uses the month's GPU hours: once they are gone, no new job starts.
    assert gina.http.post(f"/training/jobs/{first}/start").status_code == 200
    try:
        deadline = time.monotonic() + 60
        while gina.http.get(f"/training/jobs/{first}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        while (used := gina.http.get("/user/profile").json()["usage"])[
            "gpu_hours_used"
        ] < PRO_GPU_HOURS:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert used["active_workflows"] == 1
        refused = gina.http.post(f"/training/jobs/{second}/start")
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert body["code"] == "GPU_QUOTA_EXCEEDED"
        assert f"your pro plan allows {PRO_GPU_HOURS:g} GPU hours a month" in body["detail"]
        assert gina.http.get(f"/training/jobs/{second}").json()["status"] == "pending"  # unchanged
    finally:
        gina.http.post(f"/training/stop/{first}")
