"""The job state machine's answer to runner events racing each other, with a repository
that does exactly what the race does (no emulator: the interleaving is the point)."""

from shared.models import TrainingJob
from shared.services.jobs import JobStates


class RacingJobs:
    """``get`` first answers the job as the RUNNING event's handler read it (queued); the
    SUCCEEDED event's handler then ends it before RUNNING's transition is tried."""

    def __init__(self) -> None:
        self.job = TrainingJob(
            id=7,
            owner_id=1,
            framework="timm",
            model_name="m",
            task_type="classification",
            status="queued",
            runner_job_id="r-1",
        )
        self.reads = 0

    def get(self, job_id):
        self.reads += 1
        job = self.job
        if self.reads == 1:
            self.job = job.model_copy(update={"status": "completed"})  # the other handler won
        return job

    def transition(self, job_id, to, allowed_from, fields, **kwargs):
        if self.job.status not in allowed_from:
            return None
        self.job = self.job.model_copy(update={"status": to, **fields})
        return self.job


def test_a_running_that_loses_the_race_to_the_end_is_not_told_after_it():
    jobs = RacingJobs()
    event = JobStates(jobs).on_batch_state("7", "r-1", "RUNNING")
    assert jobs.job.status == "completed"
    assert event is None  # followers heard "completed" last


def test_a_running_that_moves_the_job_is_told():
    jobs = RacingJobs()
    jobs.reads = 1  # no race: the job is still queued when RUNNING is applied
    event = JobStates(jobs).on_batch_state("7", "r-1", "RUNNING")
    assert jobs.job.status == "running"
    assert event is not None and event.data["job_status"] == "running"
