"""Seed 003's user profile (its plan, limits and usage), and an administrator's plan change."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from shared.plans import PlanName
from shared.services.plans import Limits, Profile


class LimitsOut(BaseModel):
    """The limits as they apply now: the plan's, or the operator's where it overrides
    them. None: that request window is not counted."""

    requests_per_minute: int | None
    requests_per_hour: int | None
    concurrent_workflows: int
    gpu_hours: float = Field(description="a calendar month's (UTC)")
    storage_gb: float

    @classmethod
    def of(cls, limits: Limits) -> LimitsOut:
        return cls(**asdict(limits))


class UsageOut(BaseModel):
    gpu_hours_used: float = Field(description="training jobs' run time this month (UTC)")
    gpu_hours_limit: float
    storage_gb_used: float = Field(description="stored datasets and recordings, GB of 2**30 bytes")
    storage_gb_limit: float
    storage_bytes_used: int
    active_workflows: int
    concurrent_workflows_limit: int
    period_start: datetime = Field(description="the month GPU hours are counted in")
    period_end: datetime


class ProfileOut(BaseModel):
    user_id: int
    email: str
    name: str | None
    role: str
    plan: str
    created_at: datetime
    usage: UsageOut
    limits: LimitsOut

    @classmethod
    def of(cls, p: Profile) -> ProfileOut:
        u = p.usage
        return cls(
            user_id=p.user.id,
            email=p.user.email,
            name=p.user.full_name,
            role=p.user.role,
            plan=p.plan,
            created_at=p.user.created_at,
            usage=UsageOut(
                gpu_hours_used=round(u.gpu_hours_used, 6),
                gpu_hours_limit=p.limits.gpu_hours,
                storage_gb_used=round(u.storage_gb_used, 6),
                storage_gb_limit=p.limits.storage_gb,
                storage_bytes_used=u.storage_bytes,
                active_workflows=u.active_workflows,
                concurrent_workflows_limit=p.limits.concurrent_workflows,
                period_start=u.period_start,
                period_end=u.period_end,
            ),
            limits=LimitsOut.of(p.limits),
        )


class PlanIn(BaseModel):
    plan: PlanName
