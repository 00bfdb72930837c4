"""Seed 003's plans at work: which plan a user is on, the request windows and job caps it
gives them, what they have used (GPU hours, storage), the profile that shows both, and
what each project holds.

Usage is computed from what the table records, never by listing buckets: GPU hours are
the run times of the user's training jobs this calendar month (UTC), from ``started_at``
to ``completed_at`` (or now, while one runs), whatever hardware ran them; storage is the
bytes of their stored datasets (the kept archive) and recordings. Checkpoints and other
artifacts a job writes are not counted.

An operator's settings, when set explicitly, replace every plan's own figures:
``CRUCIBLE_RATE_LIMIT_PER_MINUTE`` (N a minute and no hourly window; 0: no request
limits at all) and ``CRUCIBLE_MAX_ACTIVE_JOBS`` (the concurrent-workflow cap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.errors import Forbidden, InvalidInput, NotFound
from shared.models import Principal, Project, TrainingJob, User, utcnow
from shared.plans import (
    DEFAULT_PLAN,
    GB,
    Plan,
    RequestLimits,
    month_of,
    request_limits,
    run_hours,
)
from shared.ports import AudioFileRepository, DatasetRepository, JobRepository
from shared.services.jobs import ALL_JOBS, JobLimits

EVERY = 1_000_000  # "all of them" for the per-owner listings, which read whole partitions


class PlanUsers(Protocol):
    """What plans need of the user repository (``DynamoUsers``)."""

    def get(self, user_id: int) -> User | None: ...
    def current(self, user_id: int) -> User | None: ...
    def set_plan(self, user_id: int, plan: str) -> User: ...


@dataclass(frozen=True)
class Limits:
    """A user's limits as they apply: the plan's, with the operator's overrides. None
    for a request window that is not counted."""

    requests_per_minute: int | None
    requests_per_hour: int | None
    concurrent_workflows: int
    gpu_hours: float
    storage_gb: float


@dataclass(frozen=True)
class Usage:
    gpu_hours_used: float
    storage_bytes: int
    active_workflows: int
    period_start: datetime  # the month GPU hours are counted in (UTC)
    period_end: datetime

    @property
    def storage_gb_used(self) -> float:
        return self.storage_bytes / GB


@dataclass(frozen=True)
class Profile:
    user: User
    plan: str
    limits: Limits
    usage: Usage


class PlanService:
    def __init__(
        self,
        users: PlanUsers,
        jobs: JobRepository,
        datasets: DatasetRepository,
        recordings: AudioFileRepository,
        plans: Mapping[str, Plan],
        *,
        request_limit: int | None = None,
        active_jobs: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.users = users
        self.jobs = jobs
        self.datasets = datasets
        self.recordings = recordings
        self.plans = dict(plans)
        self.request_limit = request_limit  # the operator's override, if set
        self.active_jobs = active_jobs  # likewise
        self.clock = clock

    # --- which plan, which limits ---------------------------------------------------
    def plan_of(self, user_id: int, user: User | None = None) -> Plan:
        """The user's plan as stored now (read at most a few seconds ago); a plan name the
        platform no longer has counts as the default plan."""
        user = user or self.users.current(user_id)
        name = user.plan if user else DEFAULT_PLAN
        return self.plans.get(name) or self.plans[DEFAULT_PLAN]

    def request_limits(self, user_id: int, user: User | None = None) -> RequestLimits:
        """The windows ``user_id``'s requests are counted in: no read with an override, nor
        when the caller passes the user as it just found it."""
        if self.request_limit is not None:
            return request_limits(self.plans[DEFAULT_PLAN], self.request_limit)
        return request_limits(self.plan_of(user_id, user))

    def limits(self, plan: Plan) -> Limits:
        windows = {
            name: limit for name, _, limit in request_limits(plan, self.request_limit).windows
        }
        return Limits(
            requests_per_minute=windows.get("minute"),
            requests_per_hour=windows.get("hour"),
            concurrent_workflows=self.concurrent_workflows(plan),
            gpu_hours=plan.gpu_hours,
            storage_gb=plan.storage_gb,
        )

    def concurrent_workflows(self, plan: Plan) -> int:
        return self.active_jobs if self.active_jobs is not None else plan.concurrent_workflows

    def set_plan(self, actor: Principal, user_id: int, plan: str) -> User:
        if not actor.at_least("admin"):
            raise Forbidden("Only an admin can change plans")
        if plan not in self.plans:
            raise InvalidInput(
                f"Unknown plan '{plan}'; plans: {', '.join(self.plans)}",
                field="plan",
                code="UNKNOWN_PLAN",
            )
        return self.users.set_plan(user_id, plan)

    # --- usage ------------------------------------------------------------------------
    def _jobs_of(self, user_id: int) -> list[TrainingJob]:
        return self.jobs.list(owner_id=user_id, skip=0, limit=EVERY).items

    def gpu_hours_used(self, user_id: int, now: datetime | None = None) -> float:
        now = now or self.clock()
        start, _ = month_of(now)
        return run_hours(
            (
                run
                for j in self._jobs_of(user_id)
                for run in [*j.earlier_runs, (j.started_at, j.completed_at)]
            ),
            start,
            now,
        )

    def storage_bytes(self, user_id: int) -> int:
        """Bytes the user's stored objects hold, as their items record them: each ready
        dataset's kept archive, and every recording."""
        datasets = sum(
            d.archive_bytes or d.total_size_bytes
            for d in self.datasets.list(owner_id=user_id)
            if d.status == "ready"
        )
        recordings = sum(
            f.file_size for f in self.recordings.list(owner_id=user_id, skip=0, limit=EVERY).items
        )
        return datasets + recordings

    def usage(self, user_id: int) -> Usage:
        now = self.clock()
        start, end = month_of(now)
        return Usage(
            gpu_hours_used=self.gpu_hours_used(user_id, now),
            storage_bytes=self.storage_bytes(user_id),
            active_workflows=self.jobs.active(user_id).get(ALL_JOBS, 0),
            period_start=start,
            period_end=end,
        )

    def profile(self, actor: Principal, user_id: int | None = None) -> Profile:
        """``user_id``'s (by default the caller's) plan, limits and usage; another user's
        only for an admin (404 otherwise, as every resource of someone else's)."""
        user_id = actor.user_id if user_id is None else user_id
        user = self.users.get(user_id)
        if user is None or not actor.can_read(user_id):
            raise NotFound("User not found", code="USER_NOT_FOUND")
        plan = self.plan_of(user_id, user)
        return Profile(user, plan.name, self.limits(plan), self.usage(user_id))

    def check_gpu_hours(self, user_id: int) -> None:
        """Refuse a new job once the user's GPU hours for this month are used up. Jobs
        already running are not stopped when they pass it."""
        plan = self.plan_of(user_id)
        now = self.clock()
        used = self.gpu_hours_used(user_id, now)
        if used >= plan.gpu_hours:
            _, end = month_of(now)
            raise Forbidden(
                f"GPU hour quota exceeded: your {plan.name} plan allows {plan.gpu_hours:g} GPU "
                f"hours a month and {used:.2f} are used in {now:%B %Y}; no new training job "
                f"can start before {end:%Y-%m-%d} 00:00 UTC unless an administrator changes "
                "your plan",
                code="GPU_QUOTA_EXCEEDED",
            )

    # --- what each project holds --------------------------------------------------------
    def project_counts(self, projects: Iterable[Project]) -> dict[int, tuple[int, int]]:
        """``{project id: (workflows, datasets)}``: its owner's training jobs and datasets
        that name it, whatever their status."""
        projects = list(projects)
        counts = {p.id: [0, 0] for p in projects}
        for owner in {p.owner_id for p in projects}:
            for job in self._jobs_of(owner):
                if job.project_id in counts:
                    counts[job.project_id][0] += 1
            for d in self.datasets.list(owner_id=owner):
                if d.project_id in counts:
                    counts[d.project_id][1] += 1
        return {pid: (w, d) for pid, (w, d) in counts.items()}


class PlanJobLimits(JobLimits):
    """Job caps from the user's plan: as many active jobs as its concurrent workflows (or
    the operator's ``CRUCIBLE_MAX_ACTIVE_JOBS``), and none once its GPU hours for the
    month are used up (403 ``GPU_QUOTA_EXCEEDED``, before anything is written)."""

    def __init__(self, plans: PlanService) -> None:
        super().__init__(plans.concurrent_workflows(plans.plans[DEFAULT_PLAN]))  # a new user's
        self.plans = plans

    def active_jobs(self, user_id: int) -> int:
        self.plans.check_gpu_hours(user_id)
        return self.plans.concurrent_workflows(self.plans.plan_of(user_id))
