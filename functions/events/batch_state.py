"""AWS Batch "Batch Job State Change" (via EventBridge): move the job's state forward
and tell its followers.

Batch jobs carry Crucible's job id as the ``job_id`` parameter and their kind as
``job_type`` (the contract the job runners share, locally and on AWS). An evaluator's
changes go to the leaderboard's jobs (shared/services/evaluations.py), which publish
their own events; a trainer's as follows. Each Batch status advances the job through
the forward-only state machine (shared/services/jobs.py) and becomes one ``status``
event on ``job:<id>``; replays collapse onto the same event id, and a status Batch
reports late or twice changes nothing, nor does one of a runner job that is not the job's
current one (an earlier attempt's, or a submission that lost a race). Events with an unknown status, or from Batch
jobs that are not Crucible's, are ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from functions.events.runtime import container
from functions.observability import logger
from shared.services.jobs import FROM_BATCH
from shared.wiring import Container


class BatchJobDetail(BaseModel):
    """The part of Batch's job description this handler reads."""

    batch_job_id: str = Field("", alias="jobId")
    status: str = ""
    status_reason: str | None = Field(None, alias="statusReason")
    parameters: dict[str, str] = Field(default_factory=dict)


class BatchJobStateChange(EventBridgeModel):
    """A "Batch Job State Change" event. Only what the handler reads is required, so
    trimmed replays of recorded events parse too."""

    account: str = ""
    time: datetime | None = None
    region: str = ""
    resources: list[str] = Field(default_factory=list)
    detail: BatchJobDetail


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    change = BatchJobStateChange.model_validate(event).detail
    if not change.batch_job_id or change.status not in FROM_BATCH:
        logger.warning("ignoring Batch event without a known status: %s", event.get("detail"))
        return {"status": "ignored"}
    job_id = change.parameters.get("job_id")
    if not job_id:
        logger.info("Batch job %s is not a Crucible job (no job_id parameter)", change.batch_job_id)
        return {"status": "ignored", "batch_job_id": change.batch_job_id}
    if change.parameters.get("job_type") == "evaluator":  # a leaderboard job (seed 004)
        job = c.evaluations.on_runner_state(job_id, change.status, change.status_reason)
        return {"status": job.status if job else "unknown", "job_id": job_id}
    update = c.jobs.on_batch_state(
        job_id,
        change.batch_job_id,
        change.status,
        change.status_reason,
        attempt=change.parameters.get("attempt"),
    )
    if update is None:  # an earlier attempt's runner job, or one that lost a race
        logger.info(
            "ignoring %s of runner job %s: not job %s's current one",
            change.status,
            change.batch_job_id,
            job_id,
        )
        return {"status": "ignored", "job_id": job_id, "batch_job_id": change.batch_job_id}
    # News that is not the end is stored only while the job has not ended, in the same
    # write: a runner state computed alongside the job's end (a concurrent or late
    # delivery) is never told after it, so followers hear the end last.
    open_job = int(job_id) if "status" not in update.data and job_id.isdigit() else None
    published = c.push.publish(update, while_job_open=open_job)
    return {"status": "published" if published else "duplicate", "job_id": job_id}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
