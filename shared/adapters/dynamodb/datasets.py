"""Datasets: string (uuid) ids, listed newest first per owner (GSI1) and for everyone
(GSI2).

A dataset in flight (``uploading`` or ``processing``) sits in GSI2's sparse
``ACTIVE#DATASET`` partition, sorted by the deadline of its current state; the write that
settles it (``finish``) moves it to ``ALL#DATASET`` in the same update. So the
reconciler's sweep reads only datasets in flight, oldest deadline first, and stops at the
first one not yet due: never the table, never the settled datasets.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb.table import Table, _is_conditional_failure, _to_ddb, from_ddb
from shared.models import Dataset, utcnow

ACTIVE = "ACTIVE#DATASET"  # GSI2: in flight, by deadline
ALL = "ALL#DATASET"  # GSI2: settled, by creation
IN_FLIGHT = ("uploading", "processing")


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
        order = f"{d.created_at.isoformat()}#{d.id}"
        in_flight = d.status in IN_FLIGHT and deadline is not None
        pk, sk = self._key(d.id)
        self.t.put_new(
            {
                "PK": pk,
                "SK": sk,
                "type": "dataset",
                **d.model_dump(mode="json"),
                "GSI1PK": f"OWNER#{d.owner_id}#DATASET",
                "GSI1SK": order,
                "GSI2PK": ACTIVE if in_flight else ALL,
                "GSI2SK": _due(deadline, d.id) if in_flight else order,
            }
        )

    def get(self, dataset_id: str) -> Dataset | None:
        item = self.t.get(*self._key(dataset_id))
        return Dataset.model_validate(item) if item else None

    def list(self, *, owner_id: int | None) -> list[Dataset]:
        if owner_id is not None:
            rows = list(self.t.query(f"OWNER#{owner_id}#DATASET", index="GSI1", forward=False))
        else:  # everyone's: the settled, and those in flight (few), newest first
            rows = [*self.t.query(ALL, index="GSI2"), *self.t.query(ACTIVE, index="GSI2")]
            rows.sort(key=lambda r: r["GSI1SK"], reverse=True)
        return [Dataset.model_validate(r) for r in rows]

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
        names = {"#st": "status", "#g": "GSI2PK", "#gs": "GSI2SK", "#order": "GSI1SK"}
        values: dict[str, Any] = {":all": ALL}
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
                UpdateExpression="SET " + ", ".join([*sets, "#g = :all", "#gs = #order"]),
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
