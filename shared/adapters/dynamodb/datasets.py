"""Datasets: string (uuid) ids, listed newest first per owner (GSI1) and for everyone
(GSI2, over the shards of ``ALL#DATASET``) through an index row written once with the
dataset (:func:`~shared.adapters.dynamodb.table.index_row`), which carries the dataset's
project and format for the listing's filters.

A dataset in flight (``uploading`` or ``processing``) sits in GSI2's sparse
``ACTIVE#DATASET`` partition, sorted by the deadline of its current state; the write that
settles it (``finish``) takes it out in the same update. So the reconciler's sweep reads
only datasets in flight, oldest deadline first, and stops at the first one not yet due:
never the table, never the settled datasets.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb.table import (
    Listing,
    Table,
    _is_conditional_failure,
    _to_ddb,
    from_ddb,
    index_row,
)
from shared.models import Dataset, utcnow
from shared.ports import CursorPage

# Built once: pydantic rebuilds a generic model's class when no one keeps it.
_DatasetPage = CursorPage[Dataset]

ACTIVE = "ACTIVE#DATASET"  # GSI2, on the dataset item: in flight, by deadline
ALL = Listing("GSI2", "ALL#DATASET", sharded=True, newest_first=True)  # everyone's
IN_FLIGHT = ("uploading", "processing")


def _mine(owner_id: int) -> Listing:
    return Listing("GSI1", f"OWNER#{owner_id}#DATASET", newest_first=True)


def _due(deadline: float, dataset_id: str) -> str:
    """The GSI2 sort key of a dataset in flight: fixed width, so text order is time order."""
    return f"{deadline:014.3f}#{dataset_id}"


class DynamoDatasets:
    """``DATASET#<id>`` items. ``finish`` records an ingestion once: only from
    uploading/processing."""

    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _key(dataset_id: str) -> tuple[str, str]:
        return f"DATASET#{dataset_id}", "DATASET"

    def create(self, d: Dataset, *, deadline: float | None = None) -> None:
        pk, sk = self._key(d.id)
        item = {"PK": pk, "SK": sk, "type": "dataset", **d.model_dump(mode="json")}
        if d.status in IN_FLIGHT and deadline is not None:
            item |= {"GSI2PK": ACTIVE, "GSI2SK": _due(deadline, d.id)}
        mine = _mine(d.owner_id)
        order = f"{d.created_at.isoformat()}#{d.id}"
        row = index_row(pk, "dataset", order, mine=mine, everyone=ALL, key=d.id)
        row |= {"project_id": d.project_id, "format": d.format}  # what listings filter by
        self.t.transact(self.t.listed_ops(item, row, [mine, ALL]))

    def get(self, dataset_id: str) -> Dataset | None:
        item = self.t.get(*self._key(dataset_id))
        return Dataset.model_validate(item) if item else None

    def list(self, *, owner_id: int) -> list[Dataset]:
        found: list[Dataset] = []
        cursor = None
        while True:
            page = self.page(owner_id=owner_id, skip=0, limit=1000, cursor=cursor)
            found += page.items
            if (cursor := page.next_cursor) is None:
                return found

    def page(
        self,
        *,
        owner_id: int | None,
        skip: int,
        limit: int,
        cursor: str | None = None,
        project_id: int | None = None,
        fmt: str | None = None,
    ) -> CursorPage[Dataset]:
        listing = ALL if owner_id is None else _mine(owner_id)
        where = {"project_id": project_id, "format": fmt}
        where = {k: v for k, v in where.items() if v is not None}
        if where:
            rows, nxt = self.t.page(listing, limit=limit, skip=skip, cursor=cursor, where=where)
            rows = self.t.fetch([(r["PK"], "DATASET") for r in rows])
            total = self.t.count(listing, where)
        else:
            total, rows, nxt = self.t.listed(
                listing, "DATASET", limit=limit, skip=skip, cursor=cursor
            )
        items = [Dataset.model_validate(r) for r in rows]
        return _DatasetPage(total=total, items=items, next_cursor=nxt)

    def start(self, dataset_id: str, deadline: float) -> Dataset | None:
        """``uploading`` -> ``processing`` (an ingest began), due by ``deadline``; None
        if it was not uploading (a retried ingest keeps its first deadline)."""
        item = self.t.update(
            *self._key(dataset_id),
            {"status": "processing", "GSI2SK": _due(deadline, dataset_id), "updated_at": utcnow()},
            condition="#st = :up AND #g = :active",
            names={"#st": "status", "#g": "GSI2PK"},
            values={":up": "uploading", ":active": ACTIVE},
        )
        return Dataset.model_validate(item) if item else None

    def finish(
        self, dataset_id: str, fields: dict[str, Any], *, only_from: tuple[str, ...] = IN_FLIGHT
    ) -> Dataset | None:
        """Settle a dataset in flight (only from a status of ``only_from``), leaving the
        active partition in the same write; None if it was not in such a status."""
        names = {"#st": "status", "#g": "GSI2PK", "#gs": "GSI2SK"}
        values: dict[str, Any] = {}
        sets = []
        for i, (k, v) in enumerate({**fields, "updated_at": utcnow()}.items()):
            names[f"#s{i}"], values[f":s{i}"] = k, v
            sets.append(f"#s{i} = :s{i}")
        allowed = {f":from{i}": s for i, s in enumerate(only_from)}
        values.update(allowed)
        try:
            out = self.t.client.update_item(
                TableName=self.t.name,
                Key=_to_ddb(dict(zip(("PK", "SK"), self._key(dataset_id), strict=True))),
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE #g, #gs",
                ConditionExpression=f"#st IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_ddb(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return Dataset.model_validate(from_ddb(out["Attributes"]))

    def overdue(self, now: float, *, limit: int) -> list[Dataset]:
        """Datasets in flight whose deadline passed by ``now``, oldest deadline first, at
        most ``limit`` (a query of the active partition that stops at the first not due)."""
        due = []
        for row in self.t.query(ACTIVE, index="GSI2", limit=limit):
            if float(row["GSI2SK"].split("#", 1)[0]) > now:
                break
            due.append(Dataset.model_validate(row))
        return due
