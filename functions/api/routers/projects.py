"""Seed 003's projects: list, create, get — each owned by its creator, with how many
workflows and datasets it holds."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import Cursor, ErrorOut, Limit, Skip
from functions.api.routers.projects_schemas import ProjectIn, ProjectListOut, ProjectOut

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("", response_model=ProjectListOut, responses={400: {"model": ErrorOut}})
def list_projects(
    principal: CurrentUser,
    c: Services,
    skip: Skip = 0,
    limit: Limit = 100,
    all_users: bool = False,
    cursor: Cursor = None,
) -> ProjectListOut:
    """The caller's projects; admins may pass ``all_users=true`` for everyone's."""
    page = c.projects.list(principal, skip=skip, limit=limit, everyone=all_users, cursor=cursor)
    counts = c.plans.project_counts(page.items)
    return ProjectListOut(
        projects=[ProjectOut.of(p, counts[p.id]) for p in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
    )


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectIn, principal: CurrentUser, c: Services) -> ProjectOut:
    return ProjectOut.of(c.projects.create(principal, body.name, body.description))


@router.get("/{project_id}", response_model=ProjectOut, responses={404: {"model": ErrorOut}})
def get_project(project_id: int, principal: CurrentUser, c: Services) -> ProjectOut:
    project = c.projects.get(principal, project_id)
    return ProjectOut.of(project, c.plans.project_counts([project])[project.id])
