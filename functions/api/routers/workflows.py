"""Seed 003's workflow routes: a workflow is a training job in seed 003's words
(shared/services/workflows.py); and the orchestrator's internal create-workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from functions.api.deps import CurrentUser, InternalCaller, Services
from functions.api.routers.common import ErrorOut
from functions.api.routers.workflows_schemas import (
    LogsOut,
    MetricsOut,
    OrchestratorWorkflowIn,
    WorkflowCancelOut,
    WorkflowCreatedOut,
    WorkflowIn,
    WorkflowListOut,
    WorkflowOut,
)

router = APIRouter(prefix="/workflows", tags=["workflows"])
_errors = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}
Status = Literal["pending", "training", "completed", "failed", "cancelled"]


@router.post("", status_code=201, response_model=WorkflowCreatedOut, responses=_errors)
def create_workflow(body: WorkflowIn, principal: CurrentUser, c: Services) -> dict:
    """Create a workflow and start it: ``config.model`` from GET /models, trained on
    ``config.dataset_id`` (one of your ready datasets) with ``config.hyperparameters``.
    Refused, with nothing stored, for an unknown model, a dataset that is not yours, or
    when your plan allows no more workflows now (409)."""
    return c.workflows.create(
        principal,
        body.config.model_dump(exclude_none=True),
        name=body.name,
        description=body.description,
        project_id=body.project_id,
    )


@router.get("", response_model=WorkflowListOut, responses=_errors)
def list_workflows(
    principal: CurrentUser,
    c: Services,
    status: Status | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[
        str,
        Query(
            pattern=r"^-?(created_at|started_at|name)$",
            description="created_at, started_at or name; a leading '-' sorts descending",
        ),
    ] = "-created_at",
) -> dict:
    return c.workflows.list(principal, status=status, page=page, limit=limit, sort=sort)


@router.get("/{workflow_id}", response_model=WorkflowOut, responses=_errors)
def get_workflow(workflow_id: str, principal: CurrentUser, c: Services) -> dict:
    return c.workflows.get(principal, workflow_id)


@router.get("/{workflow_id}/metrics", response_model=MetricsOut, responses=_errors)
def workflow_metrics(
    workflow_id: str,
    principal: CurrentUser,
    c: Services,
    metric: Annotated[
        str | None, Query(max_length=1000, description="comma-separated names: loss,accuracy")
    ] = None,
    start_time: Annotated[
        datetime | None, Query(description="only entries from this time on (ISO 8601)")
    ] = None,
) -> dict:
    names = [m.strip() for m in (metric or "").split(",") if m.strip()] or None
    return c.workflows.metrics(principal, workflow_id, names=names, since=start_time)


@router.get("/{workflow_id}/logs", response_model=LogsOut, responses=_errors)
def workflow_logs(
    workflow_id: str,
    principal: CurrentUser,
    c: Services,
    tail: Annotated[int, Query(ge=1, le=10_000, description="the last this many lines")] = 100,
) -> dict:
    return c.workflows.logs(principal, workflow_id, tail=tail)


@router.delete("/{workflow_id}", response_model=WorkflowCancelOut, responses=_errors)
def cancel_workflow(workflow_id: str, principal: CurrentUser, c: Services) -> dict:
    """Cancel a pending or training workflow: its trainer saves a checkpoint and stops.
    Answers ``cancelled`` once it has (within a few seconds, usually); until then
    ``cancel_requested`` and its current status. A completed or failed one: 409."""
    return c.workflows.cancel(principal, workflow_id)


internal = APIRouter(prefix="/internal", tags=["internal"])


@internal.post(
    "/orchestrator/create-workflow",
    status_code=201,
    response_model=WorkflowCreatedOut,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}, **_errors},
)
def orchestrator_create_workflow(
    body: OrchestratorWorkflowIn, c: Services, _: InternalCaller
) -> dict:
    """For services inside Crucible (``X-Internal-Auth``): create and start a workflow for
    ``user_id`` from a ``training_config``, exactly as that user's POST /workflows would
    (their dataset, their plan's limits)."""
    return c.workflows.create_for(
        body.user_id,
        body.training_config.model_dump(exclude_none=True),
        name=body.experiment_name,
        description=body.description,
        project_id=body.project_id,
    )
