"""Datasets: string (uuid) ids, listed newest first per owner (GSI1) and for everyone
(GSI2)."""

from __future__ import annotations

from typing import Any

from shared.adapters.dynamodb.table import Table
from shared.models import Dataset, utcnow


class DynamoDatasets:
    """``DATASET#<id>`` items. ``finish`` records an ingestion once: only from
    uploading/processing."""

    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _key(dataset_id: str) -> tuple[str, str]:
        return f"DATASET#{dataset_id}", "DATASET"

    def create(self, d: Dataset) -> None:
        order = f"{d.created_at.isoformat()}#{d.id}"
        pk, sk = self._key(d.id)
        self.t.put_new(
            {
                "PK": pk,
                "SK": sk,
                "type": "dataset",
                **d.model_dump(mode="json"),
                "GSI1PK": f"OWNER#{d.owner_id}#DATASET",
                "GSI1SK": order,
                "GSI2PK": "ALL#DATASET",
                "GSI2SK": order,
            }
        )

    def get(self, dataset_id: str) -> Dataset | None:
        item = self.t.get(*self._key(dataset_id))
        return Dataset.model_validate(item) if item else None

    def list(self, *, owner_id: int | None) -> list[Dataset]:
        pk, index = (
            (f"OWNER#{owner_id}#DATASET", "GSI1")
            if owner_id is not None
            else ("ALL#DATASET", "GSI2")
        )
        return [Dataset.model_validate(r) for r in self.t.query(pk, index=index, forward=False)]

    def finish(self, dataset_id: str, fields: dict[str, Any]) -> Dataset | None:
        item = self.t.update(
            *self._key(dataset_id),
            {**fields, "updated_at": utcnow()},
            condition="#st IN (:up, :proc)",
            names={"#st": "status"},
            values={":up": "uploading", ":proc": "processing"},
        )
        return Dataset.model_validate(item) if item else None
