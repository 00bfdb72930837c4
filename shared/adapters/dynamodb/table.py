"""Crucible's single DynamoDB table: its schema, the item codec, and a thin helper over
the client that every aggregate's adapter stores its items through.

README.md ("Data model") lists every item kind and its keys. Every item carries
``type`` (its kind); both indexes project all attributes. Per-owner listings use GSI1
(``OWNER#<uid>#<ENTITY>``), everyone's use GSI2 (``ALL#<ENTITY>``). The local bootstrap
and the CDK app build the table from :data:`TABLE_SCHEMA`.

Every state change is a conditional write: creation never overwrites
(``attribute_not_exists``), uniqueness (e-mail, tag name) is a lock item written in the
same transaction, and updates require the item to exist (or the caller's condition).

Items that should disappear on their own (connections, subscriptions, events, event-id
locks, upload intents, rate windows) carry ``expires_at`` (epoch seconds), the table's
TTL attribute; TTL deletion lags, so readers treat an expired item as gone. The stream
(NEW_AND_OLD_IMAGES) carries event inserts to the push handler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

TABLE_SCHEMA: dict[str, Any] = {
    "partition_key": "PK",
    "sort_key": "SK",
    "ttl_attribute": "expires_at",
    "indexes": {"GSI1": ("GSI1PK", "GSI1SK"), "GSI2": ("GSI2PK", "GSI2SK")},
    "stream": "NEW_AND_OLD_IMAGES",
}

_ser = TypeSerializer()
_de = TypeDeserializer()


def json_values(value: Any) -> Any:
    """``value`` as JSON carries it (datetimes and other objects as their ``str``), with
    numbers as Decimals, the only number type DynamoDB takes."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in json_values(item).items() if v is not None}


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | set):
        return [_plain(x) for x in v]
    return v


def from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    """Turn a DynamoDB-JSON item (also a stream image) into plain Python values."""
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def pad_id(n: int) -> str:
    """A numeric id as a sort key that sorts like the number."""
    return f"{n:012d}"


@dataclass(frozen=True)
class Check:
    """A condition another item must meet for a transaction to go through."""

    key: dict[str, Any]
    condition: str
    names: dict[str, str]
    values: dict[str, Any]


def _is_conditional_failure(exc: ClientError) -> bool:
    code = exc.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False


def _set_clause(set_values: dict[str, Any], names: dict[str, str], values: dict[str, Any]) -> str:
    """``#s0 = :s0, ...`` for ``set_values``, adding its placeholders to ``names``/``values``."""
    parts = []
    for i, (k, v) in enumerate(set_values.items()):
        names[f"#s{i}"] = k
        values[f":s{i}"] = v
        parts.append(f"#s{i} = :s{i}")
    return ", ".join(parts)


class Table:
    """Thin helper over the low-level client: typed items in, plain dicts out."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The item as last written (a strongly consistent read: state machines read
        what they are about to decide on, and a client reads what it just created)."""
        out = self.client.get_item(
            TableName=self.name, Key=_to_ddb({"PK": pk, "SK": sk}), ConsistentRead=True
        )
        return from_ddb(out["Item"]) if "Item" in out else None

    def put_new(self, item: dict[str, Any]) -> bool:
        """Put an item that must not exist yet; False when it already does."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_to_ddb(item),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def put(self, item: dict[str, Any]) -> None:
        self.client.put_item(TableName=self.name, Item=_to_ddb(item))

    def transact_new(self, *items: dict[str, Any], check: Check | None = None) -> bool:
        """Create several items atomically, none of which may exist; False on a clash, or
        when ``check`` does not hold of its item."""
        puts: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": _to_ddb(it),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            for it in items
        ]
        if check is not None:
            puts.append(
                {
                    "ConditionCheck": {
                        "TableName": self.name,
                        "Key": _to_ddb(check.key),
                        "ConditionExpression": check.condition,
                        "ExpressionAttributeNames": check.names,
                        "ExpressionAttributeValues": _to_ddb(check.values),
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=puts)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def update(
        self,
        pk: str,
        sk: str,
        set_values: dict[str, Any],
        *,
        condition: str = "attribute_exists(PK)",
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        """Conditionally set (and remove) attributes; returns the new item, or None if the
        condition failed."""
        names = dict(names or {})
        vals = dict(values or {})
        expr = "SET " + _set_clause(set_values, names, vals)
        if remove:
            for i, k in enumerate(remove):
                names[f"#r{i}"] = k
            expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        try:
            out = self.client.update_item(
                TableName=self.name,
                Key=_to_ddb({"PK": pk, "SK": sk}),
                UpdateExpression=expr,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_ddb(vals),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return from_ddb(out["Attributes"])

    def increment(self, pk: str, sk: str, set_values: dict[str, Any] | None = None) -> int:
        """Add one to the item's counter ``n`` (creating the item at 1), setting
        ``set_values`` alongside; returns the new count."""
        names: dict[str, str] = {}
        vals: dict[str, Any] = {":one": 1}
        expr = "ADD n :one"
        if set_values:
            expr += " SET " + _set_clause(set_values, names, vals)
        out = self.client.update_item(
            TableName=self.name,
            Key=_to_ddb({"PK": pk, "SK": sk}),
            UpdateExpression=expr,
            ExpressionAttributeValues=_to_ddb(vals),
            **({"ExpressionAttributeNames": names} if names else {}),
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["n"]["N"])

    def next_id(self, entity: str) -> int:
        """The next id of an entity with numeric ids, from its ``COUNTER`` item."""
        return self.increment("COUNTER", entity)

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.name, Key=_to_ddb({"PK": pk, "SK": sk}))

    def transact_delete(self, *keys: tuple[str, str]) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self.name, "Key": _to_ddb({"PK": pk, "SK": sk})}}
                for pk, sk in keys
            ]
        )

    def query(
        self,
        pk: str,
        *,
        index: str | None = None,
        sk_prefix: str | None = None,
        forward: bool = True,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """All items under one partition key (following pagination), optionally by SK prefix."""
        pk_attr, sk_attr = TABLE_SCHEMA["indexes"][index] if index else ("PK", "SK")
        expr = "#pk = :pk"
        names = {"#pk": pk_attr}
        vals: dict[str, Any] = {":pk": pk}
        if sk_prefix is not None:
            expr += " AND begins_with(#sk, :sk)"
            names["#sk"] = sk_attr
            vals[":sk"] = sk_prefix
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": expr,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _to_ddb(vals),
            "ScanIndexForward": forward,
        }
        if index:
            kwargs["IndexName"] = index
        if limit:
            kwargs["Limit"] = limit
        seen = 0
        while True:
            out = self.client.query(**kwargs)
            for raw in out.get("Items", []):
                yield from_ddb(raw)
                seen += 1
                if limit and seen >= limit:
                    return
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def page(self, pk: str, *, index: str, skip: int, limit: int) -> tuple[int, list[dict]]:
        """Offset pagination (the seeds' ``skip``/``limit``) over one index partition.

        Reads the whole partition to count it; fine for the per-owner collections it
        serves (users, projects, tags), not for unbounded logs.
        """
        rows = list(self.query(pk, index=index))
        return len(rows), rows[skip : skip + limit]


class OwnedRepository:
    """Shared shape of owner-scoped entities with numeric ids (``<ENTITY>#<id>`` /
    ``<ENTITY>``), listed per owner (GSI1) or for everyone (GSI2) in id order."""

    entity: str

    def __init__(self, table: Table) -> None:
        self.t = table

    def _key(self, rid: int) -> tuple[str, str]:
        return f"{self.entity.upper()}#{rid}", self.entity.upper()

    def _item(self, rid: int, owner_id: int, body: dict[str, Any]) -> dict[str, Any]:
        pk, sk = self._key(rid)
        return {
            "PK": pk,
            "SK": sk,
            "type": self.entity,
            **body,
            "GSI1PK": f"OWNER#{owner_id}#{self.entity.upper()}",
            "GSI1SK": pad_id(rid),
            "GSI2PK": f"ALL#{self.entity.upper()}",
            "GSI2SK": pad_id(rid),
        }

    def _get(self, rid: int) -> dict[str, Any] | None:
        return self.t.get(*self._key(rid))

    def _page(self, owner_id: int | None, skip: int, limit: int) -> tuple[int, list[dict]]:
        if owner_id is None:
            return self.t.page(f"ALL#{self.entity.upper()}", index="GSI2", skip=skip, limit=limit)
        return self.t.page(
            f"OWNER#{owner_id}#{self.entity.upper()}", index="GSI1", skip=skip, limit=limit
        )
