"""Seed 003's ``/user/profile``: who the caller is, their plan, its limits and their usage."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import CurrentUser, Services
from functions.api.routers.profile_schemas import ProfileOut

router = APIRouter(prefix="/user", tags=["users"])


@router.get("/profile", response_model=ProfileOut)
def profile(principal: CurrentUser, c: Services) -> ProfileOut:
    """GPU hours used this month (UTC) from the caller's training jobs' run times, and
    storage used by their stored datasets and recordings, against their plan's limits."""
    return ProfileOut.of(c.plans.profile(principal))
