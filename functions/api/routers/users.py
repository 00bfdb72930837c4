"""Seed 001's user management: researchers and admins list users; admins grant roles and
(seed 003) set plans."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import Admin, CurrentUser, Researcher, Services
from functions.api.routers.common import Cursor, ErrorOut, Limit, Skip
from functions.api.routers.profile_schemas import PlanIn, ProfileOut
from functions.api.routers.users_schemas import RoleIn, UserListOut, UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/", response_model=UserListOut, responses={400: {"model": ErrorOut}, 403: {"model": ErrorOut}}
)
def list_users(
    principal: Researcher,
    c: Services,
    skip: Skip = 0,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> UserListOut:
    page = c.auth.list_users(principal, skip=skip, limit=limit, cursor=cursor)
    return UserListOut(
        total=page.total, users=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/{user_id}", response_model=UserOut, responses={404: {"model": ErrorOut}})
def get_user(user_id: int, principal: CurrentUser, c: Services) -> UserOut:
    return UserOut.of(c.auth.get_user(principal, user_id))


@router.put(
    "/{user_id}/role",
    response_model=UserOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def set_role(user_id: int, body: RoleIn, admin: Admin, c: Services) -> UserOut:
    """Grant or take back a role. It applies to the user's existing tokens within seconds,
    and a socket following something the new role may not read is closed."""
    return UserOut.of(c.auth.set_role(admin, user_id, body.role))


@router.put(
    "/{user_id}/plan",
    response_model=ProfileOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def set_plan(user_id: int, body: PlanIn, admin: Admin, c: Services) -> ProfileOut:
    """Move a user to another plan (free, pro, enterprise); the user's profile as it is
    now. Its request limits and job caps apply to their next request (within seconds in
    other processes); jobs already running are left alone."""
    c.plans.set_plan(admin, user_id, body.plan)
    return ProfileOut.of(c.plans.profile(admin, user_id))
