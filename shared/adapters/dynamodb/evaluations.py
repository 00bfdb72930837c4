"""Seed 004's submissions, evaluation jobs and leaderboards.

* A submission is ``SUBMISSION#<id>`` / ``SUBMISSION``, listed under its owner (GSI1). Each
  user's rolling window of recent submissions is one item, ``SUBMITS#<uid>`` / ``WINDOW``
  (the times, and a version every write bumps): a new submission and the window that
  admits it are written in one transaction, so no burst gets past the limit.
* A job is ``EVALUATION#<id>`` / ``EVALUATION``, listed under its owner (GSI1, newest
  first). While it has not ended it holds a slot of its owner's ``evaluations`` counter
  (shared/adapters/dynamodb/slots.py) and sits in the sparse ``ACTIVE#EVALUATION``
  partition of GSI2, which the sweeper reads; the move into an end state gives the slot
  back and leaves that partition in one transaction.
* A leaderboard is ``BOARD#<name>``, one ``ENTRY#<job id>`` per completed job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from shared.adapters.dynamodb.slots import ATTEMPTS, SLOTS, give_back, take, transact
from shared.adapters.dynamodb.table import Table, _set_clause, _to_ddb, from_ddb
from shared.errors import Conflict
from shared.models import EVALUATION_TERMINAL, Evaluation, Submission, utcnow

COUNTER = "evaluations"
ACTIVE = "ACTIVE#EVALUATION"


class DynamoSubmissions:
    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _key(submission_id: str) -> tuple[str, str]:
        return f"SUBMISSION#{submission_id}", "SUBMISSION"

    @staticmethod
    def _window_key(owner_id: int) -> tuple[str, str]:
        return f"SUBMITS#{owner_id}", "WINDOW"

    def get(self, submission_id: str) -> Submission | None:
        item = self.t.get(*self._key(submission_id))
        return Submission.model_validate(item) if item else None

    def _window(self, owner_id: int) -> dict[str, Any] | None:
        pk, sk = self._window_key(owner_id)
        out = self.t.client.get_item(
            TableName=self.t.name, Key=_to_ddb({"PK": pk, "SK": sk}), ConsistentRead=True
        )
        return from_ddb(out["Item"]) if "Item" in out else None

    def recent(self, owner_id: int, *, window_s: int) -> list[float]:
        since = time.time() - window_s
        item = self._window(owner_id) or {}
        return sorted(float(t) for t in item.get("times", []) if float(t) > since)

    def create(self, submission: Submission, *, per_window: int, window_s: int) -> float | None:
        pk, sk = self._key(submission.id)
        item = {
            "PK": pk,
            "SK": sk,
            "type": "submission",
            **submission.model_dump(mode="json"),
            "GSI1PK": f"OWNER#{submission.owner_id}#SUBMISSION",
            "GSI1SK": f"{submission.created_at.isoformat()}#{submission.id}",
        }
        wpk, wsk = self._window_key(submission.owner_id)
        for _ in range(ATTEMPTS):
            window = self._window(submission.owner_id)
            now = time.time()
            times = sorted(
                float(t) for t in (window or {}).get("times", []) if float(t) > now - window_s
            )
            if len(times) >= per_window:
                return times[len(times) - per_window] + window_s
            version = int((window or {}).get("v", 0))
            names = {"#t": "times", "#v": "v", "#type": "type", "#x": "expires_at"}
            vals = {
                ":t": [*times, now],
                ":v": version + 1,
                ":old": version,
                ":type": "submission_window",
                ":x": int(now + window_s) + 60,
            }
            cond = "attribute_not_exists(PK)" if window is None else "#v = :old"
            if window is None:
                vals.pop(":old")
            ops = [
                {
                    "Put": {
                        "TableName": self.t.name,
                        "Item": _to_ddb(item),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.t.name,
                        "Key": _to_ddb({"PK": wpk, "SK": wsk}),
                        "UpdateExpression": "SET #t = :t, #v = :v, #type = :type, #x = :x",
                        "ConditionExpression": cond,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": _to_ddb(vals),
                    }
                },
            ]
            if transact(self.t, ops) == "ok":
                return None
        raise Conflict(
            "Too many of your submissions arrived at once; send this one again",
            code="SUBMISSION_BUSY",
        )


class DynamoEvaluations:
    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _key(job_id: str) -> tuple[str, str]:
        return f"EVALUATION#{job_id}", "EVALUATION"

    def _item(self, job: Evaluation) -> dict[str, Any]:
        pk, sk = self._key(job.id)
        return {
            "PK": pk,
            "SK": sk,
            "type": "evaluation",
            **job.model_dump(mode="json"),
            "GSI1PK": f"OWNER#{job.owner_id}#EVALUATION",
            "GSI1SK": f"{job.created_at.isoformat()}#{job.id}",
            "GSI2PK": ACTIVE,
            "GSI2SK": f"{job.deadline:014.3f}#{job.id}",
            SLOTS: [COUNTER],
        }

    def create(self, job: Evaluation, *, cap: int) -> bool:
        put = {
            "Put": {
                "TableName": self.t.name,
                "Item": _to_ddb(self._item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        for _ in range(ATTEMPTS):
            outcome = transact(self.t, [put, take(self.t, job.owner_id, {COUNTER: cap})])
            if outcome != "retry":
                return outcome == "ok"
        return False

    def get(self, job_id: str) -> Evaluation | None:
        item = self.t.get(*self._key(job_id))
        return Evaluation.model_validate(item) if item else None

    def list(self, owner_id: int, *, limit: int) -> list[Evaluation]:
        rows = self.t.query(
            f"OWNER#{owner_id}#EVALUATION", index="GSI1", forward=False, limit=limit
        )
        return [Evaluation.model_validate(r) for r in rows]

    def active(self) -> list[Evaluation]:
        return [Evaluation.model_validate(r) for r in self.t.query(ACTIVE, index="GSI2")]

    def update(self, job_id: str, fields: Mapping[str, Any]) -> Evaluation | None:
        values = {f":e{i}": s for i, s in enumerate(sorted(EVALUATION_TERMINAL))}
        item = self.t.update(
            *self._key(job_id),
            {**fields, "updated_at": utcnow()},
            condition=f"attribute_exists(PK) AND NOT (#st IN ({', '.join(values)}))",
            names={"#st": "status"},
            values=values,
        )
        return Evaluation.model_validate(item) if item else None

    def transition(
        self,
        job_id: str,
        to: str,
        allowed_from: frozenset[str],
        fields: Mapping[str, Any] | None = None,
    ) -> Evaluation | None:
        set_values = {"status": to, "updated_at": utcnow(), **(fields or {})}
        values = {f":from{i}": s for i, s in enumerate(sorted(allowed_from))}
        names = {"#st": "status"}
        in_allowed = f"#st IN ({', '.join(values)})"
        if to not in EVALUATION_TERMINAL:
            item = self.t.update(
                *self._key(job_id), set_values, condition=in_allowed, names=names, values=values
            )
            return Evaluation.model_validate(item) if item else None
        # The end: give the slot back and leave the active partition, in one write.
        for _ in range(ATTEMPTS):
            item = self.t.get(*self._key(job_id))
            if item is None or item.get("status") not in allowed_from:
                return None
            names = {"#st": "status", "#sl": SLOTS, "#g": "GSI2PK", "#gs": "GSI2SK"}
            vals = dict(values)
            expr = "SET " + _set_clause(set_values, names, vals) + " REMOVE #sl, #g, #gs"
            pk, sk = self._key(job_id)
            move = {
                "Update": {
                    "TableName": self.t.name,
                    "Key": _to_ddb({"PK": pk, "SK": sk}),
                    "UpdateExpression": expr,
                    "ConditionExpression": f"{in_allowed} AND attribute_exists(#sl)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _to_ddb(vals),
                }
            }
            ops = [move, give_back(self.t, int(item["owner_id"]), list(item.get(SLOTS) or []))]
            if transact(self.t, ops) == "ok":
                after = {**item, **json.loads(json.dumps(set_values, default=str))}
                return Evaluation.model_validate(after)
        return None


class DynamoLeaderboards:
    def __init__(self, table: Table) -> None:
        self.t = table

    def put(self, board: str, entry: Mapping[str, Any]) -> None:
        self.t.put(
            {
                "PK": f"BOARD#{board}",
                "SK": f"ENTRY#{entry['job_id']}",
                "type": "leaderboard_entry",
                **entry,
            }
        )

    def entries(self, board: str) -> list[dict[str, Any]]:
        rows = self.t.query(f"BOARD#{board}", sk_prefix="ENTRY#")
        return [{k: v for k, v in r.items() if k not in ("PK", "SK", "type")} for r in rows]
