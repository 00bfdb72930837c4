"""Training jobs, and what a running job reports (metric rows and log lines), kept in
the job's partition; and each user's counters of active jobs, in a partition of their
own (never the user's: what moves a job's counters is given no access to users)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.adapters.dynamodb.slots import (
    ATTEMPTS,
    SLOTS,
    active_key,
    give_back,
    take,
    transact,
)
from shared.adapters.dynamodb.table import (
    OwnedRepository,
    Table,
    _set_clause,
    _to_ddb,
    from_ddb,
)
from shared.models import TrainingJob, utcnow
from shared.ports import CursorPage

# Built once: pydantic rebuilds a generic model's class when no one keeps it.
_TrainingJobPage = CursorPage[TrainingJob]


class DynamoJobs(OwnedRepository):
    """Training jobs. ``transition`` is the only way status changes: one conditional
    update that succeeds only from the states the caller allows.

    Caps on active jobs are conditional writes too. A job that starts takes a slot in
    each of its owner's counters (``ACTIVE#<uid>`` / ``ACTIVE``) in the same
    transaction that moves it, which succeeds only while every capped counter is below
    its cap, and names the counters it took in its ``slots``. The transition into a
    terminal state gives them back in the same transaction and removes ``slots``, so the
    slots go back exactly once however often a Batch event is replayed."""

    entity = "job"

    def create(
        self, job: TrainingJob, *, acquire: Mapping[str, int | None] | None = None
    ) -> TrainingJob | None:
        """Store a new job under the next id. With ``acquire`` (counter -> cap, None for
        a counter without a cap) it is stored holding those slots, or not at all (None)
        when a counter is at its cap."""
        job = job.model_copy(update={"id": self.t.next_id("job")})
        body = job.model_dump(mode="json")
        if not acquire:
            self._create(job.id, job.owner_id, body)
            return job
        ops = self._create_ops(job.id, job.owner_id, {**body, SLOTS: sorted(acquire)})
        for _ in range(ATTEMPTS):
            counters = take(self.t, job.owner_id, acquire)
            outcome = transact(self.t, [*ops, counters], counters_from=len(ops))
            if outcome != "retry":
                return job if outcome == "ok" else None
        return None

    def get(self, job_id: int) -> TrainingJob | None:
        item = self._get(job_id)
        return TrainingJob.model_validate(item) if item else None

    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[TrainingJob]:
        total, rows, nxt = self._page(owner_id, skip, limit, cursor)
        items = [TrainingJob.model_validate(r) for r in rows]
        return _TrainingJobPage(total=total, items=items, next_cursor=nxt)

    def transition(
        self,
        job_id: int,
        to: str,
        allowed_from: frozenset[str],
        fields: dict[str, Any] | None = None,
        *,
        acquire: Mapping[str, int | None] | None = None,
        release: bool = False,
        remove: tuple[str, ...] = (),
    ) -> TrainingJob | None:
        """Move the job to ``to`` from one of ``allowed_from``, setting ``fields`` (and
        removing the attributes ``remove`` names); None when its status does not allow it,
        or (with ``acquire``: counter -> cap) when a counter is at its cap. ``acquire``
        takes slots in the owner's counters with the move; ``release`` gives back the
        slots the job holds, if it holds any."""
        values = {f":from{i}": s for i, s in enumerate(sorted(allowed_from))}
        in_allowed = f"#st IN ({', '.join(values)})"
        set_values = {"status": to, **(fields or {})}
        if not acquire and not release:
            item = self.t.update(
                *self._key(job_id),
                set_values,
                condition=in_allowed,
                names={"#st": "status"},
                values=values,
                remove=remove,
            )
            return TrainingJob.model_validate(item) if item else None
        for _ in range(ATTEMPTS):  # a lost race (the job changed meanwhile) decides again
            item = self._read(job_id)
            if item is None or item.get("status") not in allowed_from:
                return None
            held = list(item.get(SLOTS) or [])
            names, vals = {"#st": "status", "#sl": SLOTS}, dict(values)
            after = {**item, **json.loads(json.dumps(set_values, default=str))}
            for k in remove:
                after.pop(k, None)
            gone = [f"#rm{i}" for i in range(len(remove))]
            names.update(zip(gone, remove, strict=True))
            counters: list[dict[str, Any]] = []
            if acquire and not held:
                expr = "SET " + _set_clause({**set_values, SLOTS: sorted(acquire)}, names, vals)
                cond = f"{in_allowed} AND attribute_not_exists(#sl)"
                counters.append(take(self.t, int(item["owner_id"]), acquire))
            elif release and held:
                expr = "SET " + _set_clause(set_values, names, vals) + " REMOVE #sl"
                cond = f"{in_allowed} AND attribute_exists(#sl)"
                counters.append(give_back(self.t, int(item["owner_id"]), held))
                after.pop(SLOTS)
            else:  # nothing to take or give back: the job must still hold what it held
                expr = "SET " + _set_clause(set_values, names, vals)
                cond = f"{in_allowed} AND {'attribute_exists' if held else 'attribute_not_exists'}(#sl)"
            if gone:
                expr += (", " if " REMOVE " in expr else " REMOVE ") + ", ".join(gone)
            pk, sk = self._key(job_id)
            move = {
                "Update": {
                    "TableName": self.t.name,
                    "Key": _to_ddb({"PK": pk, "SK": sk}),
                    "UpdateExpression": expr,
                    "ConditionExpression": cond,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _to_ddb(vals),
                }
            }
            outcome = transact(self.t, [move, *counters])
            if outcome == "ok":
                return TrainingJob.model_validate(after)
            if outcome == "cap":
                return None
        return None

    def _read(self, job_id: int) -> dict[str, Any] | None:
        """The job item as last written (a strongly consistent read)."""
        pk, sk = self._key(job_id)
        out = self.t.client.get_item(
            TableName=self.t.name, Key=_to_ddb({"PK": pk, "SK": sk}), ConsistentRead=True
        )
        return from_ddb(out["Item"]) if "Item" in out else None

    def update(self, job_id: int, fields: dict[str, Any]) -> TrainingJob | None:
        item = self.t.update(*self._key(job_id), fields)
        return TrainingJob.model_validate(item) if item else None

    def set_runner(self, job_id: int, attempt: int, runner_job_id: str) -> TrainingJob | None:
        """Record the runner job of submission ``attempt``; None when the job has one
        already, has moved on to a later attempt (a racing submission won) or has ended
        (its runner job must not run on without the job's slot)."""
        item = self.t.update(
            *self._key(job_id),
            {"runner_job_id": runner_job_id},
            condition=(
                f"attribute_exists(PK) AND {_attempt_is(attempt)} AND "
                "attribute_not_exists(runner_job_id) AND #st IN (:q, :r, :s)"
            ),
            names={"#st": "status"},
            values={":a": attempt, ":q": "queued", ":r": "running", ":s": "stopping"},
        )
        return TrainingJob.model_validate(item) if item else None

    def claim_attempt(self, job_id: int, attempt: int, status: str) -> TrainingJob | None:
        """Take over submission from ``attempt`` (a job ``status`` without a runner job):
        the job moves to ``attempt + 1``, so a submission of ``attempt`` still under way
        can no longer record its runner job. None when the job is not as expected."""
        item = self.t.update(
            *self._key(job_id),
            {"attempt": attempt + 1},
            condition=f"#st = :st AND attribute_not_exists(runner_job_id) AND {_attempt_is(attempt)}",
            names={"#st": "status"},
            values={":st": status, ":a": attempt},
        )
        return TrainingJob.model_validate(item) if item else None

    def active(self, owner_id: int) -> dict[str, int]:
        """The owner's counters of active jobs (a counter never taken is absent)."""
        item = self.t.get(*active_key(owner_id)) or {}
        return {k: int(v) for k, v in item.items() if k not in ("PK", "SK", "type")}


def _attempt_is(attempt: int) -> str:
    """The condition that the job is at submission ``attempt`` (``:a``); a job stored
    before attempts were counted has none, which is attempt 0."""
    return "(attempt = :a OR attribute_not_exists(attempt))" if attempt == 0 else "attempt = :a"


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
