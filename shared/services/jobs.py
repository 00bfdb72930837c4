"""The training-job lifecycle in one place: the forward-only state machine, how AWS Batch's
statuses map onto it, and what a job's followers are told when Batch reports a change.

pending -> queued -> running -> completed | failed | stopped (through stopping when a
stop is asked for; the statuses themselves are ``JobStatus`` in shared/models.py).
Statuses only move forward: each transition is one conditional write from the states
allowed to reach it, so a replayed or late event (a RUNNING after SUCCEEDED) changes
nothing, and neither does one of a runner job that is not the job's current one. The one
way back is asked for explicitly: seed 002's resume queues a stopped or failed job again
(``resume``), as a new attempt with a runner job of its own.

Caps on active jobs (``JobLimits``) ride on the same writes: the move to ``queued``
takes a slot in the owner's counters, only while each is below its cap, and the move
into a terminal state gives the slots back; both in one transaction with the status
change, so a slot is taken once and given back once, whatever is replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.events import ProgressEvent, event_id_for
from shared.models import TERMINAL_STATUSES, JobStatus, TrainingJob, utcnow
from shared.ports import JobRepository

ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    "queued": frozenset({"pending"}),
    "running": frozenset({"pending", "queued"}),
    "stopping": frozenset({"pending", "queued", "running"}),
    "completed": frozenset({"queued", "running"}),
    "failed": frozenset({"pending", "queued", "running"}),
    "stopped": frozenset({"pending", "queued", "running", "stopping"}),
}
# The one way back from an end: a stopped or failed job resumed (queued again) on request.
RESUMABLE_FROM: frozenset[JobStatus] = frozenset({"stopped", "failed"})

# AWS Batch's job statuses, in the order a job moves through them -> ours.
FROM_BATCH: dict[str, JobStatus] = {
    "SUBMITTED": "queued",
    "PENDING": "queued",
    "RUNNABLE": "queued",
    "STARTING": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
}

# What followers are told when a job ends (a failure says Batch's reason when it has one).
OUTCOME_MESSAGES: dict[JobStatus, str] = {
    "completed": "Training finished successfully.",
    "failed": "Batch job failed",
    "stopped": "Training job stopped",
}


# The counters of a user's active jobs: every job takes a slot in ``jobs``; speech
# recognition runs also one in ``asr`` (seed 000 allows one run at a time).
ALL_JOBS, ASR_RUNS = "jobs", "asr"


class JobLimits:
    """How many training jobs a user may have active (queued, running or stopping) at
    once: here one number for everyone; ``PlanJobLimits`` (shared/services/plans.py), what
    the platform is wired with, reads the user's plan (its concurrent workflows, and its
    GPU hours left this month)."""

    def __init__(self, max_active_jobs: int = 3) -> None:
        self.max_active_jobs = max_active_jobs

    def active_jobs(self, user_id: int) -> int:
        """The cap on ``user_id``'s active jobs, asked when one of theirs is about to start
        (before the conditional write that takes its slot) and to explain a refusal. A
        subclass may refuse the start itself by raising a domain error (a used-up quota)."""
        return self.max_active_jobs


@dataclass(frozen=True)
class JobBounds:
    """When the reconciler looks at an active job (settings ``training_*``)."""

    queued_deadline_s: int = 600  # queued without a runner job: submitted again, or failed
    check_interval_s: int = 300  # how often the runner is asked about an active job
    max_resubmits: int = 2


class JobStates:
    def __init__(self, jobs: JobRepository) -> None:
        self.jobs = jobs

    def advance(
        self,
        job_id: int,
        to: JobStatus,
        *,
        acquire: Mapping[str, int | None] | None = None,
        **fields: Any,
    ) -> TrainingJob | None:
        """Move a job to ``to`` if its current status allows it; None when it does not,
        or when ``acquire`` (counter -> cap, None: counted without a cap) finds a counter
        of the owner's at its cap. A terminal state gives back the slots the job holds."""
        if to in TERMINAL_STATUSES:
            fields.setdefault("completed_at", utcnow())
        return self.jobs.transition(
            job_id,
            to,
            ALLOWED_FROM[to],
            fields,
            acquire=acquire,
            release=to in TERMINAL_STATUSES,
        )

    def resume(
        self, job_id: int, *, acquire: Mapping[str, int | None], **fields: Any
    ) -> TrainingJob | None:
        """Queue a stopped or failed job again, as a new attempt of the same job (seed
        002's resume): its slots taken again, its old runner job, error and end cleared.
        The one way back from an end, asked for explicitly; None when it is not ended."""
        return self.jobs.transition(
            job_id,
            "queued",
            RESUMABLE_FROM,
            fields,
            acquire=acquire,
            remove=("runner_job_id", "error", "completed_at"),
        )

    def settle(self, job: TrainingJob, to: JobStatus, reason: str) -> ProgressEvent | None:
        """End a job the reconciler found overdue (``failed`` or ``stopped``) with
        ``reason``; the event its followers get, or None when it had moved on."""
        moved = self.advance(job.id, to, **({"error": reason} if to == "failed" else {}))
        if moved is None:
            return None
        return ProgressEvent(
            topic=f"job:{job.id}",
            kind="error" if to == "failed" else "status",
            event_id=event_id_for("settled", job.id, job.attempt, to),
            also=[f"user:{job.owner_id}"],
            data={
                "status": to,
                "job_status": to,
                "message": reason if to == "failed" else OUTCOME_MESSAGES["stopped"],
                "reason": reason,
            },
        )

    def on_batch_state(
        self,
        job_id: str,
        batch_job_id: str,
        batch_status: str,
        reason: str | None = None,
        *,
        attempt: str | None = None,
    ) -> ProgressEvent | None:
        """Apply a "Batch Job State Change" (``batch_status`` one of FROM_BATCH's) to the
        job, and return the ``status`` event its followers get on ``job:<id>``. A replay
        returns the same event id; a job id that is not a stored job's only gets the event.
        None when the change is of a runner job that is not the job's current one (an
        earlier attempt's, or a submission that lost a race): it changes nothing."""
        ours = FROM_BATCH[batch_status]
        data: dict[str, Any] = {"batch_status": batch_status, "batch_job_id": batch_job_id}
        if ours in TERMINAL_STATUSES and reason:
            data["batch_reason"] = reason  # the runner's own words (an exit code, a reclaim)
        if ours in TERMINAL_STATUSES:
            data["status"] = ours
            data["message"] = (
                OUTCOME_MESSAGES["completed"]
                if ours == "completed"
                else reason or OUTCOME_MESSAGES["failed"]
            )
        also: list[str] = []
        if job_id.isdigit():
            seen = self.jobs.get(int(job_id))
            if seen is not None and not is_current_runner(seen, batch_job_id, attempt):
                return None
            job = self._apply(seen, ours, reason) if seen else None
            if seen and seen.status in TERMINAL_STATUSES and ours not in TERMINAL_STATUSES:
                return None  # a late RUNNING of an ended job: followers heard the end last
            if seen and job is None and ours not in TERMINAL_STATUSES:
                # It did not move: perhaps it ended between the read and the write.
                now = self.jobs.get(int(job_id))
                if now is not None and now.status in TERMINAL_STATUSES:
                    return None
            also = [f"user:{seen.owner_id}"] if seen else []
            if job is not None:
                data["job_status"] = job.status
                if job.status == "stopped":  # a stop was asked for: that is how it ended
                    data.update(status="stopped", message=OUTCOME_MESSAGES["stopped"])
                elif job.status == "failed" and job.error:  # the trainer's reason, if it gave one
                    data["message"] = job.error
        return ProgressEvent(
            topic=f"job:{job_id}",
            kind="error" if data.get("status") == "failed" else "status",
            event_id=event_id_for("batch", batch_job_id, batch_status),
            also=also,
            data=data,
        )

    def _apply(self, job: TrainingJob, target: JobStatus, reason: str | None) -> TrainingJob | None:
        """Move the job towards ``target`` (a job asked to stop ends as ``stopped``);
        the job as it is now if it moved."""
        if job.status == "stopping" and target in ("completed", "failed"):
            target = "stopped"
        fields: dict[str, Any] = {}
        if target == "running":
            fields["started_at"] = utcnow()
        if target == "failed":
            fields["error"] = job.error or reason or "The job failed"  # the trainer's own first
        return self.advance(job.id, target, **fields)


def is_current_runner(job: TrainingJob, runner_job_id: str, attempt: str | None) -> bool:
    """Whether a runner job's state change is about the job's current submission: its
    recorded runner job, or before one is recorded, a runner job of its current attempt
    (a change that names no attempt, only while the job has had no numbered one)."""
    if job.runner_job_id:
        return runner_job_id == job.runner_job_id
    if attempt is None:  # a runner job submitted before submissions carried their attempt
        return job.attempt == 0
    return attempt == str(job.attempt)
