"""WebSocket push: connections, topic subscriptions, publishing and fan-out.

The same service runs behind API Gateway's WebSocket API (functions/events/
websocket.py) and behind the local dev server's ``/ws`` endpoints; only the
notifier differs.
"""

from __future__ import annotations

import logging

from shared.errors import InvalidInput, NotFound
from shared.events import FORMATS, TOPIC_RE, ProgressEvent, render
from shared.models import Connection, Principal, Subscription
from shared.ports import ConnectionRegistry, EventLog, Notifier, OwnerLookup

log = logging.getLogger(__name__)

# Roles that may follow other people's resources of a kind (researchers read
# everyone's audio analyses, seed 001); everything else: owner or admin.
_PRIVILEGED_READERS = {"file": "researcher"}


class PushService:
    def __init__(
        self,
        registry: ConnectionRegistry,
        events: EventLog,
        notifier: Notifier,
        owners: OwnerLookup,
    ) -> None:
        self.registry = registry
        self.events = events
        self.notifier = notifier
        self.owners = owners

    def connect(
        self,
        principal: Principal,
        connection_id: str,
        *,
        topic: str | None = None,
        fmt: str = "crucible",
    ) -> Connection:
        """Register a connection, subscribed to ``topic`` if given, else to its user's topic
        (everything about the user's own work). More topics: ``subscribe``."""
        fmt = self._format(fmt)
        if topic:
            self.authorize(principal, topic)
        conn = Connection(
            connection_id=connection_id, user_id=principal.user_id, role=principal.role
        )
        self.registry.add(conn)
        self.registry.subscribe(
            Subscription(
                connection_id=connection_id,
                topic=topic or f"user:{principal.user_id}",
                user_id=principal.user_id,
                format=fmt,
            )
        )
        return conn

    def subscribe(self, connection_id: str, topic: str, fmt: str = "crucible") -> Subscription:
        conn = self.registry.get(connection_id)
        if conn is None:
            raise NotFound("Unknown connection", code="CONNECTION_NOT_FOUND")
        self.authorize(Principal(user_id=conn.user_id, role=conn.role), topic)
        sub = Subscription(
            connection_id=connection_id, topic=topic, user_id=conn.user_id, format=self._format(fmt)
        )
        self.registry.subscribe(sub)
        return sub

    def disconnect(self, connection_id: str) -> None:
        self.registry.remove(connection_id)

    def authorize(self, principal: Principal, topic: str) -> None:
        """Only what a user may read can be followed; unknown and foreign look the same."""
        if not TOPIC_RE.match(topic):
            raise InvalidInput("topic must look like 'job:<id>' or 'file:<id>'", field="topic")
        kind, rid = topic.split(":", 1)
        if kind == "user":
            owner = int(rid) if rid.isdigit() else None
        else:
            owner = self.owners.owner_of(kind, rid)
        privileged = _PRIVILEGED_READERS.get(kind, "admin")
        if owner is None or not principal.can_read(owner, privileged=privileged):
            raise NotFound(f"Nothing to follow at '{topic}'", field="topic", code="TOPIC_NOT_FOUND")

    def publish(self, event: ProgressEvent) -> bool:
        """Store an event (the stream delivers it); False when it was already published."""
        return self.events.append(event)

    def deliver(self, event: ProgressEvent) -> int:
        """Send an event to every follower of its topics (once per connection); drop
        connections that are gone."""
        sent, seen = 0, set()
        for topic in dict.fromkeys([event.topic, *event.also]):
            for sub in self.registry.subscribers(topic):
                if sub.connection_id in seen:
                    continue
                seen.add(sub.connection_id)
                try:
                    ok = self.notifier.post(sub.connection_id, render(event, sub.format))
                except Exception:  # one broken connection must not starve the others
                    log.exception("push to %s failed", sub.connection_id)
                    continue
                if ok:
                    sent += 1
                else:
                    self.registry.remove(sub.connection_id)
        return sent

    @staticmethod
    def _format(fmt: str) -> str:
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
        return fmt
