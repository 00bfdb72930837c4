"""The training-job state machine: pending -> queued -> running -> completed | failed |
stopped (through stopping when a stop is asked for). Statuses only move forward:
each transition is one conditional write from the states allowed to reach it, so a
replayed or late event (a RUNNING after SUCCEEDED) changes nothing."""

from __future__ import annotations

from typing import Any

from shared.models import TrainingJob, utcnow
from shared.ports import JobRepository

ALLOWED_FROM: dict[str, frozenset[str]] = {
    "queued": frozenset({"pending"}),
    "running": frozenset({"pending", "queued"}),
    "stopping": frozenset({"pending", "queued", "running"}),
    "completed": frozenset({"queued", "running"}),
    "failed": frozenset({"pending", "queued", "running"}),
    "stopped": frozenset({"pending", "queued", "running", "stopping"}),
}
TERMINAL = frozenset({"completed", "failed", "stopped"})

# AWS Batch's job statuses -> ours.
FROM_BATCH = {
    "SUBMITTED": "queued", "PENDING": "queued", "RUNNABLE": "queued", "STARTING": "queued",
    "RUNNING": "running", "SUCCEEDED": "completed", "FAILED": "failed",
}  # fmt: skip


class JobStates:
    def __init__(self, jobs: JobRepository) -> None:
        self.jobs = jobs

    def advance(self, job_id: int, to: str, **fields: Any) -> TrainingJob | None:
        """Move a job to ``to`` if its current status allows it; None when it does not."""
        if to in TERMINAL:
            fields.setdefault("completed_at", utcnow())
        return self.jobs.transition(job_id, to, ALLOWED_FROM[to], fields)

    def on_batch_state(
        self, job_id: int, batch_status: str, reason: str | None = None
    ) -> tuple[TrainingJob | None, TrainingJob | None]:
        """Apply a "Batch Job State Change"; a job asked to stop ends as ``stopped``.
        Returns the job as it was read and, if it moved, as it is now."""
        target = FROM_BATCH.get(batch_status)
        job = self.jobs.get(job_id) if target else None
        if job is None:
            return None, None
        if job.status == "stopping" and target in ("completed", "failed"):
            target = "stopped"
        fields: dict[str, Any] = {}
        if target == "running":
            fields["started_at"] = utcnow()
        if target == "failed":
            fields["error"] = reason or "The job failed"
        return job, self.advance(job_id, target, **fields)
