"""What WebSocket push keeps in the table: connections and their topic subscriptions,
the event log the stream fans out, and who owns the resource a topic names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from shared.adapters.dynamodb.table import Check, Table, from_ddb
from shared.events import ProgressEvent
from shared.models import TERMINAL_STATUSES, Connection, Subscription


def _user_connections(user_id: int) -> str:
    """GSI1 partition of a user's connections (under ``CONN#``, as the WebSocket function's
    grants are; a connection id never holds ``#``)."""
    return f"CONN#USER#{user_id}"


class DynamoConnections:
    """``CONN#<id>`` items (found per user on GSI1, by when they opened) and ``TOPIC#<topic>`` /
    ``CONN#<id>`` subscriptions (found per connection on GSI1), all expiring ``ttl_s``
    after they are written."""

    def __init__(self, table: Table, ttl_s: int) -> None:
        self.t = table
        self.ttl_s = ttl_s

    def _expiry(self) -> int:
        return int(time.time()) + self.ttl_s

    def add(self, connection: Connection) -> None:
        self.t.put(
            {
                "PK": f"CONN#{connection.connection_id}",
                "SK": "CONN",
                "type": "connection",
                **connection.model_dump(mode="json"),
                "GSI1PK": _user_connections(connection.user_id),
                "GSI1SK": f"{connection.connected_at.isoformat()}#{connection.connection_id}",
                "expires_at": self._expiry(),
            }
        )

    def of_user(self, user_id: int, *, limit: int) -> list[Connection]:
        """Up to ``limit`` of a user's live connections, newest first (one bounded read:
        rows expired but not yet deleted by TTL are the oldest, read last)."""
        now = time.time()
        rows = self.t.query(_user_connections(user_id), index="GSI1", forward=False, limit=limit)
        return [Connection.model_validate(r) for r in rows if r.get("expires_at", 0) >= now]

    def get(self, connection_id: str) -> Connection | None:
        item = self.t.get(f"CONN#{connection_id}", "CONN")
        if not item or item.get("expires_at", 0) < time.time():
            return None  # TTL deletion lags; an expired row counts as gone
        return Connection.model_validate(item)

    def subscribe(self, subscription: Subscription) -> None:
        cid = subscription.connection_id
        self.t.put(
            {
                "PK": f"TOPIC#{subscription.topic}",
                "SK": f"CONN#{cid}",
                "type": "subscription",
                **subscription.model_dump(mode="json"),
                "GSI1PK": f"CONN#{cid}",
                "GSI1SK": f"TOPIC#{subscription.topic}",
                "expires_at": self._expiry(),
            }
        )

    def subscribers(self, topic: str) -> Iterator[Subscription]:
        """A topic's live subscriptions, read a page (at most 1 MB, some 4,000) at a time
        as the caller consumes them: a topic followed by many is never held at once."""
        now = time.time()
        for r in self.t.query(f"TOPIC#{topic}", sk_prefix="CONN#"):
            if r.get("expires_at", 0) >= now:
                yield Subscription.model_validate(r)

    def topics(self, connection_id: str, *, limit: int) -> list[str]:
        """Up to ``limit`` of the topics a connection follows (one bounded read)."""
        rows = self.t.query(f"CONN#{connection_id}", index="GSI1", limit=limit)
        return [r["topic"] for r in rows]

    def remove(self, connection_id: str) -> None:
        """Its subscriptions (at most MAX_TOPICS_PER_CONNECTION, shared/services/push.py),
        then the connection."""
        for sub in self.t.query(f"CONN#{connection_id}", index="GSI1"):
            self.t.delete(sub["PK"], sub["SK"])
        self.t.delete(f"CONN#{connection_id}", "CONN")


class DynamoEventLog:
    """Events under ``EVENTS#<topic>`` in time order; an ``EVENT#<id>`` lock written in the
    same transaction stores each event id once."""

    def __init__(self, table: Table, ttl_s: int) -> None:
        self.t = table
        self.ttl_s = ttl_s

    def append(self, event: ProgressEvent, *, while_job_open: int | None = None) -> bool:
        expires = int(time.time()) + self.ttl_s
        lock = {
            "PK": f"EVENT#{event.event_id}",
            "SK": "EVENT",
            "type": "event_id",
            "expires_at": expires,
        }
        item = {
            "PK": f"EVENTS#{event.topic}",
            "SK": f"{event.timestamp.isoformat()}#{event.event_id}",
            "type": "event",
            **event.model_dump(mode="json"),
            "expires_at": expires,
        }
        check = None
        if while_job_open is not None:  # its item, as DynamoJobs keeps it
            ended = {f":e{i}": s for i, s in enumerate(sorted(TERMINAL_STATUSES))}
            check = Check(
                key={"PK": f"JOB#{while_job_open}", "SK": "JOB"},
                condition=f"attribute_exists(PK) AND NOT (#status IN ({', '.join(ended)}))",
                names={"#status": "status"},
                values=ended,
            )
        return self.t.transact_new(lock, item, check=check)

    def claim(self, event_id: str, part: int) -> set[str] | None:
        """Take part ``part`` of an event's followers (``SENT#<event id>`` / ``PART#<n>``)
        with one conditional write: None when another run has it (sent, or sending);
        else the connections of the part an earlier run already served (empty the first
        time). A part is taken once, or again after ``release``."""
        item = self.t.update(
            f"SENT#{event_id}",
            f"PART#{part:03d}",
            {"type": "delivery", "open": False, "expires_at": int(time.time()) + self.ttl_s},
            condition="attribute_not_exists(PK) OR #open = :yes",
            names={"#open": "open"},
            values={":yes": True},
        )
        return None if item is None else set(item.get("sent") or ())

    def release(self, event_id: str, part: int, sent: set[str]) -> None:
        """Give a part back, unfinished: the next run that claims it serves all but
        ``sent`` (every connection of the part served so far; some 10,000 ids fit in an
        item's 400 KB, so 32 parts hold an event's 300,000 followers)."""
        self.t.update(
            f"SENT#{event_id}",
            f"PART#{part:03d}",
            {"open": True, "sent": sorted(sent)},
            condition="#open = :no",
            names={"#open": "open"},
            values={":no": False},
        )

    def recent(self, topic: str, *, limit: int) -> list[ProgressEvent]:
        rows = list(self.t.query(f"EVENTS#{topic}", forward=False, limit=limit))
        return [ProgressEvent.model_validate(r) for r in reversed(rows)]

    @staticmethod
    def inserted(record: dict[str, Any]) -> ProgressEvent | None:
        """The ProgressEvent a DynamoDB stream record inserted, if it inserted one (the stream
        carries every item change; only inserts of ``type = event`` items are events)."""
        if record.get("eventName") != "INSERT":
            return None
        image = (record.get("dynamodb") or {}).get("NewImage")
        if not image or image.get("type", {}).get("S") != "event":
            return None
        return ProgressEvent.model_validate(from_ddb(image))


class DynamoOwners:
    """Resolves a topic's resource (``job:5``) to its owner from the item's ``owner_id``.

    A resource's owner never changes, so an owner found is remembered for ``remember_s``
    (every delivery asks, per event); a resource not found is asked again each time."""

    # Other items a topic kind may name: a presigned upload's intent stands for its file
    # before it exists; a ``job`` is a training job (numeric id) or a leaderboard job.
    _ALSO = {"file": ("UPLOAD",), "job": ("EVALUATION",)}

    _MAX_REMEMBERED = 10_000

    def __init__(self, table: Table, remember_s: float = 60.0) -> None:
        self.t = table
        self.remember_s = remember_s
        self._known: dict[tuple[str, str], tuple[float, int]] = {}

    def owner_of(self, kind: str, resource_id: str) -> int | None:
        hit = self._known.get((kind, resource_id))
        if hit is not None and time.monotonic() - hit[0] < self.remember_s:
            return hit[1]
        for entity in (kind.upper(), *self._ALSO.get(kind, ())):
            item = self.t.get(f"{entity}#{resource_id}", entity)
            if item and "owner_id" in item:
                if len(self._known) >= self._MAX_REMEMBERED:
                    self._known.clear()
                self._known[(kind, resource_id)] = (time.monotonic(), int(item["owner_id"]))
                return int(item["owner_id"])
        return None
