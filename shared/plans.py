"""Seed 003's plans: what each lets a user do, and the arithmetic of its limits.

| plan | requests / minute | requests / hour | concurrent workflows | GPU hours / month | storage |
|---|---|---|---|---|---|
| free | 60 | 1,000 | 1 | 10 | 5 GB |
| pro | 300 | 10,000 | 5 | 100 | 50 GB |
| enterprise | 1,000 | 50,000 | 20 | 1,000 | 500 GB |

The request and workflow figures are the seed's; it shows Pro's 100 GPU hours and 50 GB
and says nothing of the others, so Free's and Enterprise's are ours. GPU hours are counted
per calendar month (UTC) from the run times of a user's training jobs; storage counts the
bytes a user's stored datasets and recordings hold, in GB of 2**30 bytes.

An operator changes any figure with ``CRUCIBLE_PLAN_LIMITS`` (JSON, checked at start by
shared/settings.py), e.g. ``{"free": {"requests_per_minute": 5}}``. A request limit of 0
leaves that window unlimited; a concurrency or GPU-hour limit of 0 lets no job start.
Every user is on ``free`` until an administrator changes their plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Literal, get_args

PlanName = Literal["free", "pro", "enterprise"]
PLAN_NAMES: tuple[str, ...] = get_args(PlanName)
DEFAULT_PLAN: PlanName = "free"
GB = 1024**3


@dataclass(frozen=True)
class Plan:
    name: str
    requests_per_minute: int
    requests_per_hour: int
    concurrent_workflows: int
    gpu_hours: float  # a calendar month's (UTC)
    storage_gb: float

    def limits(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


LIMIT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Plan) if f.name != "name")
_WHOLE = frozenset({"requests_per_minute", "requests_per_hour", "concurrent_workflows"})

DEFAULT_PLANS: dict[str, Plan] = {
    "free": Plan("free", 60, 1_000, 1, 10, 5),
    "pro": Plan("pro", 300, 10_000, 5, 100, 50),
    "enterprise": Plan("enterprise", 1_000, 50_000, 20, 1_000, 500),
}


def build_plans(changes: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Plan]:
    """The plans with an operator's ``changes`` (plan -> limit -> value) applied. Raises
    ValueError naming an unknown plan or limit, or a negative or fractional count."""
    plans = dict(DEFAULT_PLANS)
    for name, limits in (changes or {}).items():
        if name not in plans:
            raise ValueError(f"unknown plan '{name}' (plans: {', '.join(PLAN_NAMES)})")
        update: dict[str, float] = {}
        for limit, value in limits.items():
            if limit not in LIMIT_NAMES:
                raise ValueError(f"unknown limit '{limit}' (limits: {', '.join(LIMIT_NAMES)})")
            if value < 0 or (limit in _WHOLE and value != int(value)):
                raise ValueError(f"{name}.{limit} must be a whole number >= 0, not {value}")
            update[limit] = int(value) if limit in _WHOLE else float(value)
        plans[name] = replace(plans[name], **update)
    return plans


# --- request windows ------------------------------------------------------------------

MINUTE, HOUR = 60, 3600


@dataclass(frozen=True)
class RequestLimits:
    """The request windows a user is counted in: (name, seconds, limit) each. ``plan`` is
    the plan they come from, None when the operator's override sets them."""

    plan: str | None
    windows: tuple[tuple[str, int, int], ...]


def request_limits(plan: Plan, override: int | None = None) -> RequestLimits:
    """A plan's per-minute and per-hour windows (a 0 limit: that window is not counted).
    ``override`` (``CRUCIBLE_RATE_LIMIT_PER_MINUTE`` set explicitly) replaces them for
    every plan: N a minute and no hourly window, or, with 0, no request limits at all."""
    if override is not None:
        return RequestLimits(None, (("minute", MINUTE, override),) if override else ())
    windows = (("minute", MINUTE, plan.requests_per_minute), ("hour", HOUR, plan.requests_per_hour))
    return RequestLimits(plan.name, tuple(w for w in windows if w[2] > 0))


@dataclass(frozen=True)
class Window:
    """One window's count after this request: ``used`` includes it; ``reset`` is when the
    window closes (epoch seconds)."""

    name: str
    limit: int
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit


def tighter(windows: Iterable[Window]) -> Window:
    """The window that binds first: the fewest requests remaining; of equals, the one that
    closes last (waiting for the sooner one to close would not help)."""
    return min(windows, key=lambda w: (w.remaining, -w.reset))


# --- GPU hours ------------------------------------------------------------------------


def month_of(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding ``now``: its first instant and the next month's."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def run_hours(
    runs: Iterable[tuple[datetime | None, datetime | None]], since: datetime, now: datetime
) -> float:
    """Hours of ``runs`` (started, ended: None while it runs) that fall between ``since``
    and ``now``. A run never started counts nothing."""
    seconds = 0.0
    for started, ended in runs:
        if started is None:
            continue
        begin, end = max(started, since), min(ended or now, now)
        seconds += max(0.0, (end - begin).total_seconds())
    return seconds / 3600
