"""Seed 003's plans: their limits, the operator's overrides, the minute and hour windows
(over HTTP into the ASGI app, with an in-memory counter), GPU hours and storage used,
the GPU-hour quota and what each project holds. No AWS: repositories are fakes."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import get_args

import httpx
import pytest

from functions.api.app import create_app
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.models import AudioFile, Dataset, Page, Principal, Project, TrainingJob, User
from shared.plans import (
    DEFAULT_PLANS,
    LIMIT_NAMES,
    PLAN_NAMES,
    Window,
    build_plans,
    month_of,
    request_limits,
    run_hours,
    tighter,
)
from shared.services.plans import PlanJobLimits, PlanService
from shared.settings import Settings, SettingsError, load_settings
from shared.wiring import build

NOW = datetime(2025, 10, 17, 10, 0, tzinfo=UTC)


# --- the plans ----------------------------------------------------------------------------


def test_the_seeds_plans():
    table = {
        n: (p.requests_per_minute, p.requests_per_hour, p.concurrent_workflows)
        for n, p in DEFAULT_PLANS.items()
    }
    assert table == {
        "free": (60, 1000, 1),
        "pro": (300, 10_000, 5),
        "enterprise": (1000, 50_000, 20),
    }
    pro = DEFAULT_PLANS["pro"]
    assert (pro.gpu_hours, pro.storage_gb) == (100, 50)  # the seed's profile example
    assert DEFAULT_PLANS["free"].gpu_hours < pro.gpu_hours < DEFAULT_PLANS["enterprise"].gpu_hours


def test_an_operator_changes_a_plans_limits_and_bad_changes_are_named():
    plans = build_plans({"free": {"requests_per_minute": 5, "gpu_hours": 0.5}})
    assert plans["free"].requests_per_minute == 5 and plans["free"].gpu_hours == 0.5
    assert plans["free"].requests_per_hour == 1000 and plans["pro"] == DEFAULT_PLANS["pro"]
    with pytest.raises(ValueError, match="unknown plan 'gold'"):
        build_plans({"gold": {}})
    with pytest.raises(ValueError, match="unknown limit 'gpus'"):
        build_plans({"pro": {"gpus": 1}})
    with pytest.raises(ValueError, match="whole number"):
        build_plans({"pro": {"concurrent_workflows": 1.5}})


def test_settings_read_plan_limits_as_json_and_name_what_is_wrong(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_PLAN_LIMITS", '{"free": {"requests_per_hour": 8}}')
    assert build_plans(load_settings().plan_limits)["free"].requests_per_hour == 8
    for bad in ('{"gold": {}}', '{"free": {"gpus": 1}}', '{"free": {"gpu_hours": -1}}', "free=1"):
        monkeypatch.setenv("CRUCIBLE_PLAN_LIMITS", bad)
        with pytest.raises(SettingsError, match="CRUCIBLE_PLAN_LIMITS"):
            load_settings()


def test_settings_name_the_same_plans_and_limits_as_the_domain():
    plans_type = Settings.model_fields["plan_limits"].annotation
    plan_key, limits_type = get_args(plans_type)
    limit_key, _ = get_args(limits_type)
    assert get_args(plan_key) == PLAN_NAMES and set(PLAN_NAMES) == set(DEFAULT_PLANS)
    assert get_args(limit_key) == LIMIT_NAMES


# --- request windows ------------------------------------------------------------------------


def test_a_plan_counts_a_minute_and_an_hour_and_the_operator_overrides_both():
    free = DEFAULT_PLANS["free"]
    assert request_limits(free).windows == (("minute", 60, 60), ("hour", 3600, 1000))
    assert request_limits(free).plan == "free"
    assert request_limits(free, 600).windows == (("minute", 60, 600),)  # no hourly window
    assert request_limits(free, 600).plan is None
    assert request_limits(free, 0).windows == ()  # CRUCIBLE_RATE_LIMIT_PER_MINUTE=0: off
    unlimited_hour = build_plans({"free": {"requests_per_hour": 0}})["free"]
    assert request_limits(unlimited_hour).windows == (("minute", 60, 60),)


def test_the_headers_describe_the_window_that_binds_first():
    minute, hour = Window("minute", 60, 10, 1060), Window("hour", 1000, 990, 3600)
    assert tighter([minute, hour]) is hour  # 10 left in the hour, 50 in the minute
    assert tighter([Window("minute", 60, 59, 1060), hour]).name == "minute"
    # As many left in each: waiting for the minute to close would not help.
    assert tighter([Window("minute", 60, 50, 1060), hour]) is hour
    assert hour.remaining == 10 and not hour.exceeded
    assert Window("hour", 5, 6, 0).exceeded and Window("hour", 5, 6, 0).remaining == 0


class Clocked:
    """The rate limiter's contract in memory, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 - 1_700_000_000 % 3600 + 5  # 5 s into an hour
        self.counts: dict[str, int] = {}

    def hit(self, key, *, limit, window_s, n=1, window=None):
        window = self.now // window_s if window is None else window
        k = f"{key}#{window}"
        self.counts[k] = self.counts.get(k, 0) + n
        return self.counts[k], (window + 1) * window_s

    def count(self, key, *, window_s):
        window = self.now // window_s
        return self.counts.get(f"{key}#{window}", 0), (window + 1) * window_s


class Users:
    """The user repository's part plans use."""

    def __init__(self, *users: User) -> None:
        self.users = {u.id: u for u in users}

    def get(self, user_id):
        return self.users.get(user_id)

    current = get

    def set_plan(self, user_id, plan):
        if user_id not in self.users:
            raise NotFound("User not found", code="USER_NOT_FOUND")
        self.users[user_id] = self.users[user_id].model_copy(update={"plan": plan})
        return self.users[user_id]


class Auth:
    """Bearer tokens that are user ids; the user as the plans' repository has it now."""

    def __init__(self, users) -> None:
        self.users = users

    def authenticate(self, token):
        return Principal(user_id=int(token), role="user")

    def identify(self, token, *, read=True):
        return self.authenticate(token), self.users.current(int(token))


class Jobs:
    def __init__(self, jobs=(), active=0) -> None:
        self.jobs, self._active = list(jobs), active

    def list(self, *, owner_id, skip, limit):
        mine = [j for j in self.jobs if owner_id is None or j.owner_id == owner_id]
        return Page[TrainingJob](total=len(mine), items=mine[skip : skip + limit])

    def active(self, owner_id):
        return {"jobs": self._active}


class Datasets:
    def __init__(self, datasets=()) -> None:
        self.datasets = list(datasets)

    def list(self, *, owner_id):
        return [d for d in self.datasets if owner_id is None or d.owner_id == owner_id]


class Recordings:
    def __init__(self, files=()) -> None:
        self.files = list(files)

    def list(self, *, owner_id, skip, limit):
        mine = [f for f in self.files if f.owner_id == owner_id]
        return Page[AudioFile](total=len(mine), items=mine[skip : skip + limit])


def service(users=None, jobs=None, datasets=None, recordings=None, changes=None, **kw):
    return PlanService(
        users or Users(),
        jobs or Jobs(),
        datasets or Datasets(),
        recordings or Recordings(),
        build_plans(changes),
        clock=lambda: NOW,
        **kw,
    )


def api(plans: PlanService, limiter: Clocked):
    settings = load_settings()
    container = build(settings)
    container.auth, container.plans, container.rate_limiter = Auth(plans.users), plans, limiter
    app = create_app(settings, container)

    def get(user_id: int, times: int = 1) -> list[httpx.Response]:
        async def calls():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                h = {"Authorization": f"Bearer {user_id}"}
                return [await http.get("/api/v1/user/profile", headers=h) for _ in range(times)]

        return asyncio.run(calls())

    return get


def test_past_the_minute_429_then_the_hour_window_and_a_better_plan(monkeypatch):
    monkeypatch.setattr("time.time", lambda: limiter.now)
    limiter = Clocked()
    users = Users(User(id=1, email="a@x.io"), User(id=2, email="b@x.io"))
    plans = service(users, changes={"free": {"requests_per_minute": 3, "requests_per_hour": 5}})
    get = api(plans, limiter)

    *ok, refused = get(1, 4)
    assert [r.headers["X-RateLimit-Remaining"] for r in ok] == ["2", "1", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in ok} == {"3"}  # the minute binds
    assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["Retry-After"] == "55"
    assert "3 requests per minute (the free plan's)" in refused.json()["detail"]

    limiter.now += 60  # the next minute: 3 counted in the hour, so the hour binds now
    first, second, refused = get(1, 3)
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "5",
        "1",
    )
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429 and "5 requests per hour" in refused.json()["detail"]
    assert int(refused.headers["X-RateLimit-Reset"]) == limiter.now - 65 + 3600
    assert int(refused.headers["Retry-After"]) == 3600 - 65
    assert get(2)[0].status_code == 200  # another user has windows of their own

    users.set_plan(1, "pro")  # an administrator's change: the next request sees it
    r = get(1)[0]
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "300"
    assert r.json()["plan"] == "pro" and r.json()["limits"]["requests_per_hour"] == 10_000


def test_the_operators_setting_replaces_every_plans_windows_or_turns_them_off():
    limiter = Clocked()
    users = Users(User(id=1, email="a@x.io"))
    strict = {"free": {"requests_per_minute": 1, "requests_per_hour": 1}}
    r = api(service(users, changes=strict, request_limit=600), limiter)(1, 3)
    assert [x.status_code for x in r] == [200] * 3 and r[0].headers["X-RateLimit-Limit"] == "600"
    assert not any(k.startswith("user-hour") for k in limiter.counts)  # no hourly window
    off = api(service(users, changes=strict, request_limit=0), Clocked())(1, 3)
    assert [x.status_code for x in off] == [200] * 3 and "X-RateLimit-Limit" not in off[0].headers


# --- usage, quotas, projects ------------------------------------------------------------------


def job(owner=1, started=None, completed=None, project=None, status="completed"):
    return TrainingJob(
        id=0, owner_id=owner, framework="timm", model_name="resnet18", task_type="image_classification",
        started_at=started, completed_at=completed, project_id=project, status=status,
    )  # fmt: skip


def test_months_and_run_hours():
    assert month_of(NOW) == (datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC))
    assert month_of(datetime(2025, 12, 31, 23, tzinfo=UTC))[1] == datetime(2026, 1, 1, tzinfo=UTC)
    start, _ = month_of(NOW)
    h = timedelta(hours=1)
    runs = [
        (NOW - 3 * h, NOW - 2 * h),  # 1 h
        (start - 5 * h, start + h),  # last month's part not counted: 1 h
        (NOW - 30 * 60 * timedelta(seconds=1), None),  # running: half an hour so far
        (None, NOW),  # never started
        (start - 9 * h, start - 8 * h),  # last month
    ]
    assert run_hours(runs, start, NOW) == pytest.approx(2.5)


def test_usage_counts_job_run_times_and_stored_bytes():
    h = timedelta(hours=1)
    jobs = Jobs(
        [job(started=NOW - 4 * h, completed=NOW - h), job(owner=2, started=NOW - 9 * h)], active=1
    )
    datasets = Datasets([
        Dataset(id="a", owner_id=1, name="a", key="k", status="ready", archive_bytes=3 * 2**30),
        Dataset(id="b", owner_id=1, name="b", key="k", status="failed", archive_bytes=2**30),
        Dataset(id="c", owner_id=2, name="c", key="k", status="ready", archive_bytes=2**30),
    ])  # fmt: skip
    wav = {
        "filename": "f",
        "original_filename": "f",
        "key": "k",
        "sample_rate": 16000,
        "duration": 1.0,
        "format": "wav",
        "content_type": "audio/wav",
    }
    recordings = Recordings([AudioFile(id=1, owner_id=1, file_size=2**29, **wav)])
    users = Users(User(id=1, email="a@x.io", plan="pro"), User(id=2, email="b@x.io"))
    plans = service(users, jobs, datasets, recordings)
    p = plans.profile(Principal(user_id=1, role="user"))
    assert p.plan == "pro" and p.usage.gpu_hours_used == pytest.approx(3)
    assert p.usage.storage_gb_used == pytest.approx(3.5) and p.usage.active_workflows == 1
    assert (p.limits.gpu_hours, p.limits.storage_gb, p.limits.concurrent_workflows) == (100, 50, 5)
    assert (p.limits.requests_per_minute, p.limits.requests_per_hour) == (300, 10_000)
    assert p.usage.period_start == datetime(2025, 10, 1, tzinfo=UTC)
    with pytest.raises(NotFound):  # another user's profile is not the caller's to read
        plans.profile(Principal(user_id=2, role="user"), 1)
    assert plans.profile(Principal(user_id=2, role="admin"), 1).user.id == 1
    overridden = service(users, jobs, datasets, recordings, request_limit=0, active_jobs=3)
    limits = overridden.profile(Principal(user_id=1, role="user")).limits
    assert (limits.requests_per_minute, limits.requests_per_hour, limits.concurrent_workflows) == (
        None,
        None,
        3,
    )


def test_a_resumed_job_keeps_counting_the_runs_before_its_resume():
    """Resuming clears a job's end and restarts its clock: the earlier run still counts."""
    h = timedelta(hours=1)
    resumed = job(started=NOW - h, status="running").model_copy(
        update={"earlier_runs": [(NOW - 9 * h, NOW - 4 * h), (NOW - 3 * h, NOW - 2 * h)]}
    )
    users = Users(User(id=1, email="a@x.io"))
    plans = service(users, Jobs([resumed]), Datasets([]), Recordings([]))
    assert plans.gpu_hours_used(1, NOW) == pytest.approx(5 + 1 + 1)


def test_job_caps_come_from_the_plan_and_used_up_gpu_hours_refuse_a_start():
    h = timedelta(hours=1)
    users = Users(User(id=1, email="a@x.io"), User(id=2, email="b@x.io", plan="enterprise"))
    jobs = Jobs([job(started=NOW - 11 * h, completed=NOW - h)])  # 10 h: free's whole month
    limits = PlanJobLimits(service(users, jobs))
    assert limits.active_jobs(2) == 20
    with pytest.raises(Forbidden) as refused:
        limits.active_jobs(1)
    assert refused.value.code == "GPU_QUOTA_EXCEEDED" and refused.value.http_status == 403
    assert "free plan allows 10 GPU hours a month and 10.00 are used" in refused.value.detail
    assert "2025-11-01" in refused.value.detail
    roomy = PlanJobLimits(service(users, jobs, changes={"free": {"gpu_hours": 11}}))
    assert roomy.active_jobs(1) == 1
    assert (
        PlanJobLimits(
            service(users, jobs, changes={"free": {"gpu_hours": 11}}, active_jobs=3)
        ).active_jobs(1)
        == 3
    )


def test_only_an_admin_sets_a_known_plan():
    users = Users(User(id=1, email="a@x.io"))
    plans = service(users)
    admin = Principal(user_id=9, role="admin")
    with pytest.raises(Forbidden):
        plans.set_plan(Principal(user_id=1, role="researcher"), 1, "enterprise")
    with pytest.raises(InvalidInput) as bad:
        plans.set_plan(admin, 1, "gold")
    assert bad.value.code == "UNKNOWN_PLAN" and bad.value.field == "plan"
    with pytest.raises(NotFound):
        plans.set_plan(admin, 7, "pro")
    assert plans.set_plan(admin, 1, "pro").plan == "pro" and plans.plan_of(1).name == "pro"
    users.users[1] = users.users[1].model_copy(update={"plan": "retired"})
    assert plans.plan_of(1).name == "free"  # a plan the platform no longer has: the default


def test_projects_count_their_owners_workflows_and_datasets():
    jobs = Jobs(
        [
            job(project=1),
            job(project=1, status="running"),
            job(project=2),
            job(),
            job(owner=2, project=3),
        ]
    )
    datasets = Datasets([
        Dataset(id="a", owner_id=1, name="a", key="k", project_id=1),
        Dataset(id="b", owner_id=1, name="b", key="k"),
        Dataset(id="c", owner_id=2, name="c", key="k", project_id=3),
    ])  # fmt: skip
    projects = [Project(id=i, owner_id=o, name=str(i)) for i, o in ((1, 1), (2, 1), (3, 2), (4, 2))]
    counts = service(jobs=jobs, datasets=datasets).project_counts(projects)
    assert counts == {1: (2, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0)}
