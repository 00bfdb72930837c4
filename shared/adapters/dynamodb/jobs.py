"""Training jobs, and what a running job reports (metric rows and log lines), kept in
the job's partition."""

from __future__ import annotations

from typing import Any

from shared.adapters.dynamodb.table import OwnedRepository, Table
from shared.models import Page, TrainingJob, utcnow


class DynamoJobs(OwnedRepository):
    """Training jobs. ``transition`` is the only way status changes: one conditional
    update that succeeds only from the states the caller allows."""

    entity = "job"

    def create(self, job: TrainingJob) -> TrainingJob:
        job = job.model_copy(update={"id": self.t.next_id("job")})
        self.t.put_new(self._item(job.id, job.owner_id, job.model_dump(mode="json")))
        return job

    def get(self, job_id: int) -> TrainingJob | None:
        item = self._get(job_id)
        return TrainingJob.model_validate(item) if item else None

    def list(self, *, owner_id: int | None, skip: int, limit: int) -> Page[TrainingJob]:
        total, rows = self._page(owner_id, skip, limit)
        return Page[TrainingJob](total=total, items=[TrainingJob.model_validate(r) for r in rows])

    def transition(
        self,
        job_id: int,
        to: str,
        allowed_from: frozenset[str],
        fields: dict[str, Any] | None = None,
    ) -> TrainingJob | None:
        values = {f":from{i}": s for i, s in enumerate(sorted(allowed_from))}
        item = self.t.update(
            *self._key(job_id),
            {"status": to, **(fields or {})},
            condition=f"#st IN ({', '.join(values)})",
            names={"#st": "status"},
            values=values,
        )
        return TrainingJob.model_validate(item) if item else None

    def update(self, job_id: int, fields: dict[str, Any]) -> TrainingJob | None:
        item = self.t.update(*self._key(job_id), fields)
        return TrainingJob.model_validate(item) if item else None


class DynamoJobRecords:
    """What a running job reports, kept under its item: one metric row per epoch
    (``JOB#<id>`` / ``METRIC#<epoch:06d>``) and log lines (``LOG#<time>#<n:06d>``)."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def put_metrics(self, job_id: int, epoch: int, row: dict[str, Any]) -> None:
        self.t.put(
            {
                "PK": f"JOB#{job_id}",
                "SK": f"METRIC#{epoch:06d}",
                "type": "job_metric",
                "job_id": job_id,
                "epoch": epoch,
                **row,
                "created_at": utcnow().isoformat(),
            }
        )

    def metrics(self, job_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.t.query(f"JOB#{job_id}", sk_prefix="METRIC#", limit=limit))

    def put_log(
        self, job_id: int, n: int, level: str, message: str, log_type: str = "stdout"
    ) -> None:
        now = utcnow().isoformat()
        self.t.put(
            {
                "PK": f"JOB#{job_id}",
                "SK": f"LOG#{now}#{n:06d}",
                "type": "job_log",
                "job_id": job_id,
                "level": level,
                "message": message[:4000],
                "log_type": log_type,
                "created_at": now,
            }
        )

    def logs(self, job_id: int, limit: int = 500) -> list[dict[str, Any]]:
        return list(self.t.query(f"JOB#{job_id}", sk_prefix="LOG#", limit=limit))
