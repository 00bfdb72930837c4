"""Each user's counters of active work (training jobs, ASR runs, evaluations), and the
transaction parts that take and give back a slot in them beside the write that moves
the work: taken only while a capped counter is below its cap, given back once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb.table import Table, _to_ddb

# On an item that holds slots: the names of the counters it holds them in while active.
SLOTS = "slots"
# How often a conditional write that lost a race is decided again before giving up.
ATTEMPTS = 8


def active_key(owner_id: int) -> tuple[str, str]:
    """The item counting a user's active work, one numeric attribute per counter: its own
    partition (``ACTIVE#<uid>``), so a role that moves jobs needs no grant on ``USER#``
    items (``dynamodb:LeadingKeys``)."""
    return f"ACTIVE#{owner_id}", "ACTIVE"


def take(t: Table, owner_id: int, acquire: Mapping[str, int | None]) -> dict[str, Any]:
    """Add one to each counter, on condition that each capped one is below its cap."""
    names = {"#type": "type"}
    vals: dict[str, Any] = {":one": 1, ":type": "active_jobs"}
    adds, conds = [], []
    for i, (counter, cap) in enumerate(sorted(acquire.items())):
        names[f"#c{i}"] = counter
        adds.append(f"#c{i} :one")
        if cap is not None:
            vals[f":cap{i}"] = cap
            conds.append(f"(attribute_not_exists(#c{i}) OR #c{i} < :cap{i})")
    pk, sk = active_key(owner_id)
    op: dict[str, Any] = {
        "TableName": t.name,
        "Key": _to_ddb({"PK": pk, "SK": sk}),
        "UpdateExpression": f"ADD {', '.join(adds)} SET #type = :type",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": _to_ddb(vals),
    }
    if conds:
        op["ConditionExpression"] = " AND ".join(conds)
    return {"Update": op}


def give_back(t: Table, owner_id: int, held: list[str]) -> dict[str, Any]:
    names = {f"#c{i}": counter for i, counter in enumerate(held)}
    pk, sk = active_key(owner_id)
    return {
        "Update": {
            "TableName": t.name,
            "Key": _to_ddb({"PK": pk, "SK": sk}),
            "UpdateExpression": "ADD " + ", ".join(f"{n} :minus" for n in names),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _to_ddb({":minus": -1}),
        }
    }


def transact(t: Table, ops: list[dict[str, Any]], *, counters_from: int = 1) -> str:
    """Write ``ops`` (the item's writes first, then from ``counters_from`` on its counters)
    in one transaction: "ok"; "cap" when a counter's condition failed; "retry" when the
    item's did, or another transaction on the same items got in the way."""
    try:
        t.client.transact_write_items(TransactItems=ops)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
        if any(code == "ConditionalCheckFailed" for code in reasons[counters_from:]):
            return "cap"
        return "retry"
    return "ok"
