"""Crucible's single DynamoDB table: its schema, the item codec, and a thin helper over
the client that every aggregate's adapter stores its items through.

README.md ("Data model") lists every item kind and its keys. Every item carries
``type`` (its kind); both indexes project all attributes. The local bootstrap and the CDK
app build the table from :data:`TABLE_SCHEMA`.

Nothing is hot: ids come in per-process blocks from sharded counters (``next_id``); a
listed item is listed through an index row written once beside it (:func:`index_row`),
per owner on GSI1 (``OWNER#<uid>#<ENTITY>``) and for everyone on GSI2, over
``LIST_SHARDS`` partitions (``ALL#<ENTITY>#<n>``) merged when read; each listing
partition's size is a count item moved in the same transaction. A page (:meth:`Table.page`)
costs the page: keys-only index rows from a cursor or walked to an offset, then the items.

Every state change is a conditional write: creation never overwrites
(``attribute_not_exists``), uniqueness (e-mail, tag name) is a lock item written in the
same transaction, and updates require the item to exist (or the caller's condition).

Items that should disappear on their own (connections, subscriptions, events, event-id
locks, upload intents, rate windows) carry ``expires_at`` (epoch seconds), the table's
TTL attribute; TTL deletion lags, so readers treat an expired item as gone. The stream
(NEW_AND_OLD_IMAGES) carries event inserts to the push handler.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
import random
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared.errors import InvalidInput

TABLE_SCHEMA: dict[str, Any] = {
    "partition_key": "PK",
    "sort_key": "SK",
    "ttl_attribute": "expires_at",
    "indexes": {"GSI1": ("GSI1PK", "GSI1SK"), "GSI2": ("GSI2PK", "GSI2SK")},
    "stream": "NEW_AND_OLD_IMAGES",
}

# Ids: each process takes blocks of ID_BLOCK ids from one of ID_SHARDS counter items.
ID_BLOCK = 100
ID_SHARDS = 16
# Everyone's listings (and their counts) are spread over this many index partitions.
LIST_SHARDS = 16
# The deepest offset (``skip``) a listing serves; deeper pages are read by cursor.
MAX_SKIP = 10_000
# The sort key of an entity's index row (the item its listings are built from).
INDEX_ROW = "LIST"


class IdBlocks:
    """The blocks of ids one process holds, per table and entity: ``[next, end)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blocks: dict[tuple[str, str], tuple[int, int]] = {}


_PROCESS_IDS = IdBlocks()  # every Table of the process draws on the same blocks

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

    def __init__(self, client: Any, name: str, *, ids: IdBlocks | None = None) -> None:
        self.client = client
        self.name = name
        self.ids = ids or _PROCESS_IDS

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

    def increment(
        self, pk: str, sk: str, set_values: dict[str, Any] | None = None, *, by: int = 1
    ) -> int:
        """Add ``by`` to the item's counter ``n`` (creating the item at ``by``), setting
        ``set_values`` alongside; returns the new count."""
        names: dict[str, str] = {}
        vals: dict[str, Any] = {":one": by}
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
        """A new id of an entity with numeric ids: unique and positive, neither dense nor
        ordered across processes. Each process takes a block of ``ID_BLOCK`` ids at a
        time with one ``ADD`` on one of ``ID_SHARDS`` counter items chosen at random (the
        n-th block of shard s is block ``(n - 1) * ID_SHARDS + s``), so no single item
        sees every allocation; a block a process never finishes only leaves a gap."""
        key = (self.name, entity)
        with self.ids.lock:
            nxt, end = self.ids.blocks.get(key, (0, 0))
            if nxt >= end:
                shard = random.randrange(ID_SHARDS)  # noqa: S311 (spreads load; no secret)
                n = self.increment(f"COUNTER#{entity}#{shard}", "COUNTER")
                block = (n - 1) * ID_SHARDS + shard
                nxt, end = block * ID_BLOCK + 1, (block + 1) * ID_BLOCK + 1
            self.ids.blocks[key] = (nxt + 1, end)
            return nxt

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.name, Key=_to_ddb({"PK": pk, "SK": sk}))

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

    # --- transactions ---------------------------------------------------------------
    def put_op(self, item: dict[str, Any]) -> dict[str, Any]:
        """A transaction's put of an item that must not exist yet."""
        return {
            "Put": {
                "TableName": self.name,
                "Item": _to_ddb(item),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def add_op(self, pk: str, sk: str, by: int) -> dict[str, Any]:
        """A transaction's ``ADD n :by`` on a counter item (created at ``by``)."""
        return {
            "Update": {
                "TableName": self.name,
                "Key": _to_ddb({"PK": pk, "SK": sk}),
                "UpdateExpression": "ADD n :by",
                "ExpressionAttributeValues": _to_ddb({":by": by}),
            }
        }

    def transact(self, ops: list[dict[str, Any]]) -> bool:
        """Run a transaction; False when one of its conditions does not hold."""
        try:
            self.client.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    # --- listings -------------------------------------------------------------------
    def listed_ops(
        self, item: dict[str, Any], row: dict[str, Any], listings: list[Listing]
    ) -> list[dict[str, Any]]:
        """The writes that create ``item`` with its index ``row`` (see :func:`index_row`),
        counted in each listing the row is in: one transaction, so a count never drifts
        from its rows."""
        counts = [self.add_op(*_count_key(lst.partition(row)), 1) for lst in listings]
        return [self.put_op(item), self.put_op(row), *counts]

    def delete_listed(self, pk: str, sk: str, *also: tuple[str, str]) -> None:
        """Delete an item (and the items keyed ``also``, e.g. its locks), its index row and
        its place in its listings' counts. The row's delete is conditional, so a repeated
        delete counts down once."""
        doomed = [(pk, sk), *also]
        deletes = [
            {"Delete": {"TableName": self.name, "Key": _to_ddb({"PK": p, "SK": s})}}
            for p, s in doomed
        ]
        row = self.get(pk, INDEX_ROW)
        if row is not None:
            ops: list[dict[str, Any]] = [
                *deletes,
                {
                    "Delete": {
                        "TableName": self.name,
                        "Key": _to_ddb({"PK": pk, "SK": INDEX_ROW}),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
            ops += [
                self.add_op(*_count_key(row[attr]), -1)
                for attr in ("GSI1PK", "GSI2PK")
                if attr in row
            ]
            if self.transact(ops):
                return
        self.transact(deletes)  # no row (gone already): nothing left to count down

    def count(self, listing: Listing, where: Mapping[str, Any] | None = None) -> int:
        """How many items ``listing`` holds: its count items (one per partition), summed.
        With ``where`` (attribute -> value the index rows must have), its matching rows,
        counted by the index (keys-only rows, never the items): a cost that grows with
        the listing, so only for listings that stay small (one owner's)."""
        if not where:
            keys = [_count_key(p) for p in listing.partitions()]
            return sum(int(item.get("n", 0)) for item in self.fetch(keys))
        total = 0
        for partition in listing.partitions():
            kwargs = self._query_args(listing, partition, None, where, count=True)
            while True:
                out = self.client.query(**kwargs)
                total += out["Count"]
                if "LastEvaluatedKey" not in out:
                    break
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return total

    def listed(
        self, listing: Listing, sk: str, *, limit: int, skip: int = 0, cursor: str | None = None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """(total, items, next cursor) of one page of ``listing``, whose items' sort key is
        ``sk``: one index query (``page``), then one ``BatchGetItem`` that reads the page's
        items and the listing's count items together."""
        rows, nxt = self.page(listing, limit=limit, skip=skip, cursor=cursor)
        counts = [_count_key(p) for p in listing.partitions()]
        found = self.fetch([(r["PK"], sk) for r in rows] + counts)
        total = sum(int(i.get("n", 0)) for i in found if i["SK"] == "COUNT")
        return total, [i for i in found if i["SK"] != "COUNT"], nxt

    def fetch(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The items under ``keys`` (strongly consistent reads, 100 a call), in the order of
        ``keys``; those that do not exist are left out."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            wanted = [_to_ddb({"PK": pk, "SK": sk}) for pk, sk in keys[start : start + 100]]
            request: dict[str, Any] = {self.name: {"Keys": wanted, "ConsistentRead": True}}
            for attempt in itertools.count():
                out = self.client.batch_get_item(RequestItems=request)
                for raw in out.get("Responses", {}).get(self.name, []):
                    item = from_ddb(raw)
                    found[(item["PK"], item["SK"])] = item
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))  # throttled: back off, then the rest
        return [found[k] for k in keys if k in found]

    def page(
        self,
        listing: Listing,
        *,
        limit: int,
        skip: int = 0,
        cursor: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``listing``'s index rows (keys only) and the cursor of the next page
        (None on the last one); with ``where``, only the rows with those attribute values.

        A page goes on from ``cursor``, or else from offset ``skip``, which is walked in
        keys-only pages: the cost grows with the offset, never with the listing, and an
        offset past ``MAX_SKIP`` is refused (the cursor reads further). A sharded listing
        merges its partitions in sort-key order, each read lazily in small pages."""
        after = self._after(listing, cursor, where) if cursor else None
        if after is None and skip > MAX_SKIP:
            raise InvalidInput(
                f"skip may be at most {MAX_SKIP}; page further with the cursor of the "
                "previous page (next_cursor)",
                field="skip",
                code="SKIP_TOO_DEEP",
            )
        offset = 0 if after is not None else skip
        want = offset + limit + 1  # one past the page: is there a next one?
        parts = listing.partitions()
        size = want if len(parts) == 1 else max(10, -(-2 * want // len(parts)))
        streams = [self._rows(listing, p, after, min(size, 1000), where) for p in parts]
        sk_attr = TABLE_SCHEMA["indexes"][listing.index][1]
        merged = (
            streams[0]
            if len(streams) == 1
            else heapq.merge(*streams, key=lambda r: r[sk_attr], reverse=listing.newest_first)
        )
        rows = list(itertools.islice(merged, offset, want))
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, _cursor(listing, rows[-1][sk_attr], where)

    def _query_args(
        self,
        listing: Listing,
        partition: str,
        after: str | None,
        where: Mapping[str, Any] | None,
        *,
        count: bool = False,
    ) -> dict[str, Any]:
        """A query of one partition's index rows (keys only; with ``count``, only how
        many), after sort key ``after``, of those with the attribute values of ``where``."""
        pk_attr, sk_attr = TABLE_SCHEMA["indexes"][listing.index]
        names = {"#pk": pk_attr}
        vals: dict[str, Any] = {":pk": partition}
        expr = "#pk = :pk"
        if after is not None:
            expr += f" AND #sk {'<' if listing.newest_first else '>'} :after"
            vals[":after"] = after
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": listing.index,
            "KeyConditionExpression": expr,
            "ScanIndexForward": not listing.newest_first,
        }
        if count:
            kwargs["Select"] = "COUNT"
        else:
            kwargs["ProjectionExpression"] = "#k0, #k1, #sk"
            names |= {"#k0": "PK", "#k1": "SK"}
        if after is not None or not count:
            names["#sk"] = sk_attr
        if where:
            tests = []
            for i, (attr, value) in enumerate(sorted(where.items())):
                names[f"#w{i}"], vals[f":w{i}"] = attr, value
                tests.append(f"#w{i} = :w{i}")
            kwargs["FilterExpression"] = " AND ".join(tests)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = _to_ddb(vals)
        return kwargs

    def _rows(
        self,
        listing: Listing,
        partition: str,
        after: str | None,
        size: int,
        where: Mapping[str, Any] | None,
    ) -> Iterator[dict[str, Any]]:
        """One partition's index rows (their keys only) in order, after sort key ``after``,
        read ``size`` at a time as the reader gets to them."""
        kwargs = {**self._query_args(listing, partition, after, where), "Limit": size}
        while True:
            out = self.client.query(**kwargs)
            for raw in out.get("Items", []):
                yield from_ddb(raw)
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    @staticmethod
    def _after(listing: Listing, cursor: str, where: Mapping[str, Any] | None) -> str:
        """The sort key a cursor of ``listing`` goes on after; a 400 for anything else (a
        cursor can only move within the listing it came from: the query stays on that
        listing's partitions whatever the cursor says)."""
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, binascii.Error):
            data = None
        after = data.get("a") if isinstance(data, dict) else None
        if (
            data is None
            or data.get("l") != _listing_id(listing, where)
            or not isinstance(after, str)
            # a sort key as the listing writes them (DynamoDB refuses an empty one)
            or not after
            or len(after) > 256
            or not after.isprintable()
        ):
            raise InvalidInput(
                "cursor is not one this listing gave out; pass next_cursor as returned, "
                "with the same filters",
                field="cursor",
                code="INVALID_CURSOR",
            )
        return after


def _listing_id(listing: Listing, where: Mapping[str, Any] | None) -> str:
    """What a cursor is good for: one listing, with one filter."""
    return listing.base + (json.dumps(sorted(where.items()), default=str) if where else "")


def _cursor(listing: Listing, after: str, where: Mapping[str, Any] | None) -> str:
    """An opaque, URL-safe cursor: the listing it belongs to and the sort key it follows."""
    data = {"l": _listing_id(listing, where), "a": after}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _count_key(partition: str) -> tuple[str, str]:
    """The item counting the rows of one listing partition (``n``)."""
    return f"COUNT#{partition}", "COUNT"


@dataclass(frozen=True)
class Listing:
    """Where a listing's index rows live: one partition ``base`` of ``index`` (GSI1 for
    an owner's, GSI2 for everyone's), or with ``sharded`` the ``LIST_SHARDS`` partitions
    ``<base>#<n>``, each row in the one its key picks (:func:`shard_of`)."""

    index: str
    base: str
    sharded: bool = False
    newest_first: bool = False

    def partitions(self) -> list[str]:
        if not self.sharded:
            return [self.base]
        return [f"{self.base}#{n}" for n in range(LIST_SHARDS)]

    def partition(self, row: dict[str, Any]) -> str:
        """The partition ``row`` sits in (what :func:`index_row` wrote)."""
        return row[TABLE_SCHEMA["indexes"][self.index][0]]


def shard_of(key: int | str) -> int:
    """The shard of an id (numeric ids spread by value, string ids by their CRC-32)."""
    n = key if isinstance(key, int) else zlib.crc32(key.encode())
    return n % LIST_SHARDS


def index_row(
    pk: str, kind: str, order: str, *, mine: Listing | None, everyone: Listing | None, key: Any
) -> dict[str, Any]:
    """The index row of item ``pk``: written once with it (``<pk>`` / ``LIST``), deleted
    with it, never updated, so the indexes copy an item's listing once, whatever how often
    the item itself changes. ``order`` sorts it in its listings: ``mine`` (GSI1) and
    ``everyone`` (GSI2, in the shard of ``key``)."""
    row: dict[str, Any] = {"PK": pk, "SK": INDEX_ROW, "type": f"{kind}_listing"}
    if mine is not None:
        row |= {"GSI1PK": mine.base, "GSI1SK": order}
    if everyone is not None:
        part = f"{everyone.base}#{shard_of(key)}" if everyone.sharded else everyone.base
        row |= {"GSI2PK": part, "GSI2SK": order}
    return row


class OwnedRepository:
    """Shared shape of owner-scoped entities with numeric ids (``<ENTITY>#<id>`` /
    ``<ENTITY>``), listed per owner (GSI1 ``OWNER#<uid>#<ENTITY>``) or for everyone
    (GSI2 ``ALL#<ENTITY>#<shard>``) in id order, through an index row written once at
    creation: the item itself carries no index keys, so its updates are copied nowhere."""

    entity: str

    def __init__(self, table: Table) -> None:
        self.t = table

    def _key(self, rid: int) -> tuple[str, str]:
        return f"{self.entity.upper()}#{rid}", self.entity.upper()

    def _mine(self, owner_id: int) -> Listing:
        return Listing("GSI1", f"OWNER#{owner_id}#{self.entity.upper()}")

    def _everyone(self) -> Listing:
        return Listing("GSI2", f"ALL#{self.entity.upper()}", sharded=True)

    def _create_ops(self, rid: int, owner_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The writes that store a new entity: the item, its index row, its counts."""
        pk, sk = self._key(rid)
        item = {"PK": pk, "SK": sk, "type": self.entity, **body}
        mine, everyone = self._mine(owner_id), self._everyone()
        row = index_row(pk, self.entity, pad_id(rid), mine=mine, everyone=everyone, key=rid)
        return self.t.listed_ops(item, row, [mine, everyone])

    def _create(self, rid: int, owner_id: int, body: dict[str, Any]) -> bool:
        return self.t.transact(self._create_ops(rid, owner_id, body))

    def _delete(self, rid: int, *also: tuple[str, str]) -> None:
        self.t.delete_listed(*self._key(rid), *also)

    def _get(self, rid: int) -> dict[str, Any] | None:
        return self.t.get(*self._key(rid))

    def _page(
        self, owner_id: int | None, skip: int, limit: int, cursor: str | None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """(total, items, next cursor) of one owner's listing, or everyone's."""
        listing = self._everyone() if owner_id is None else self._mine(owner_id)
        return self.t.listed(listing, self._key(0)[1], limit=limit, skip=skip, cursor=cursor)
