"""AWS Batch "Batch Job State Change" (via EventBridge): move the job's state forward
and tell its followers.

Batch jobs carry Crucible's job id as the ``job_id`` parameter (the contract the
job runners share, locally and on AWS). Each Batch status advances the job through
the forward-only state machine (shared/services/jobs.py) and becomes one ``status``
event on ``job:<id>``; replays collapse onto the same event id, and a status Batch
reports late or twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from functions.events.runtime import container, logger
from shared.events import ProgressEvent, event_id_for
from shared.wiring import Container

# Batch's statuses in the order a job moves through them.
BATCH_ORDER = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
TERMINAL = {"SUCCEEDED", "FAILED"}


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ev = EventBridgeEvent(event)
    detail = ev.detail
    batch_id, status = detail.get("jobId"), detail.get("status")
    job_id = (detail.get("parameters") or {}).get("job_id")
    if not batch_id or status not in BATCH_ORDER:
        logger.warning("ignoring Batch event without a known status: %s", detail)
        return {"status": "ignored"}
    if not job_id:
        logger.info("Batch job %s is not a Crucible job (no job_id parameter)", batch_id)
        return {"status": "ignored", "batch_job_id": batch_id}
    data: dict[str, Any] = {"batch_status": status, "batch_job_id": batch_id}
    if status in TERMINAL:
        data["status"] = "completed" if status == "SUCCEEDED" else "failed"
        data["message"] = (
            "Training finished successfully."
            if status == "SUCCEEDED"
            else detail.get("statusReason") or "Batch job failed"
        )
    also: list[str] = []
    if str(job_id).isdigit():
        seen, job = c.jobs.on_batch_state(int(job_id), status, detail.get("statusReason"))
        also = [f"user:{seen.owner_id}"] if seen else []
        if job is not None:
            data["job_status"] = job.status
            if job.status == "stopped":  # a stop was asked for: that is how it ended
                data.update(status="stopped", message="Training job stopped")
    published = c.push.publish(
        ProgressEvent(
            topic=f"job:{job_id}",
            kind="error" if data.get("status") == "failed" else "status",
            event_id=event_id_for("batch", batch_id, status),
            also=also,
            data=data,
        )
    )
    return {"status": "published" if published else "duplicate", "job_id": job_id}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
