"""Deadlines of things in flight (an analysis, a training job), which the reconciler
reads in the order they fall due (shared/services/reconciler.py).

One small item per deadline, ``DUE#<shard>`` / ``<at>#<kind>#<ref>``: the sort key
begins with the moment it falls due (epoch seconds, zero-padded, so text order is time
order), so the reconciler reads only what is overdue, with a bounded query per shard,
and never scans what has settled. A deadline is written before the thing it watches
goes in flight (a crash in between leaves a deadline for nothing, which the reconciler
drops); nothing deletes it when the thing settles (no extra write on the normal path):
the reconciler, finding it due and the thing settled, drops it. So each thing in flight
costs one put, one query hit and one delete, plus a put and a delete per check of a
long-running job. The shard is a hash of ``<kind>#<ref>`` over ``SHARDS`` partitions,
spreading writes; the reconciler queries each.
"""

from __future__ import annotations

import zlib
from typing import Any

from shared.adapters.dynamodb.table import Table, _to_ddb, from_ddb
from shared.ports import Deadline

# 32 partitions: each takes ~2 writes per analysis or job, so at one upload a user a
# minute the hottest stays under a partition's 1,000 writes/s to ~2M users
# (bench/scale.py); the reconciler's run costs one query per shard.
SHARDS = 32


def _sort_key(at: float, kind: str, ref: str) -> str:
    return f"{at:015.3f}#{kind}#{ref}"


class DynamoDeadlines:
    def __init__(self, table: Table, shards: int = SHARDS) -> None:
        self.t = table
        self.shards = shards

    def _pk(self, kind: str, ref: str) -> str:
        return f"DUE#{zlib.crc32(f'{kind}#{ref}'.encode()) % self.shards}"

    def put(self, kind: str, ref: str, at: float, **data: Any) -> Deadline:
        self.t.put(
            {
                "PK": self._pk(kind, ref),
                "SK": _sort_key(at, kind, ref),
                "type": "deadline",
                "kind": kind,
                "ref": ref,
                "at": at,
                "data": data,
            }
        )
        return Deadline(kind, ref, at, data)

    def due(self, now: float, *, limit: int) -> list[Deadline]:
        found: list[Deadline] = []
        upper = f"{now:015.3f}$"  # '$' sorts after '#': every deadline at or before now
        for shard in range(self.shards):
            out = self.t.client.query(
                TableName=self.t.name,
                KeyConditionExpression="PK = :pk AND SK <= :upper",
                ExpressionAttributeValues=_to_ddb({":pk": f"DUE#{shard}", ":upper": upper}),
                Limit=limit,
            )
            for raw in out.get("Items", []):
                item = from_ddb(raw)
                found.append(
                    Deadline(
                        item["kind"], str(item["ref"]), float(item["at"]), item.get("data") or {}
                    )
                )
        found.sort(key=lambda d: d.at)
        return found[:limit]

    def drop(self, deadline: Deadline) -> None:
        self.t.delete(
            self._pk(deadline.kind, deadline.ref),
            _sort_key(deadline.at, deadline.kind, deadline.ref),
        )
