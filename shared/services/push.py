"""WebSocket push: connections, topic subscriptions, publishing and fan-out.

The same service runs behind API Gateway's WebSocket API (functions/events/
websocket.py) and behind the local dev server's ``/ws`` endpoints; only the
notifier differs.

A connection may follow a topic only while its user may read what the topic names, as
the user is stored now: every delivery re-checks each follower (a role taken away, an
account deleted), and a follower that lost the right has its socket closed instead of
getting the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.errors import InvalidInput, NotFound
from shared.events import FORMATS, TOPIC_RE, ProgressEvent, render
from shared.models import Connection, Principal, Subscription
from shared.ports import ConnectionRegistry, EventLog, Notifier, OwnerLookup, UserRepository

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
        users: UserRepository | None = None,
    ) -> None:
        self.registry = registry
        self.events = events
        self.notifier = notifier
        self.owners = owners
        # Where followers' current roles are read; without it, the role each connection
        # was opened with.
        self.users = users
        self._published: list[Callable[[], None]] = []

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
        principal = self._current(conn) if conn else None
        if principal is None:
            raise NotFound("Unknown connection", code="CONNECTION_NOT_FOUND")
        self.authorize(principal, topic)
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
        owner = self._owner(topic)
        if owner is None or not self._may_read(principal, topic, owner):
            raise NotFound(f"Nothing to follow at '{topic}'", field="topic", code="TOPIC_NOT_FOUND")

    def _owner(self, topic: str) -> int | None:
        kind, rid = topic.split(":", 1)
        if kind == "user":
            return int(rid) if rid.isdigit() else None
        return self.owners.owner_of(kind, rid)

    @staticmethod
    def _may_read(principal: Principal, topic: str, owner: int) -> bool:
        privileged = _PRIVILEGED_READERS.get(topic.split(":", 1)[0], "admin")
        return principal.can_read(owner, privileged=privileged)

    def _current(self, conn: Connection) -> Principal | None:
        """The connection's user as stored now (None: the account is gone)."""
        if self.users is None:
            return Principal(user_id=conn.user_id, role=conn.role)
        user = self.users.current(conn.user_id)
        return Principal(user_id=user.id, role=user.role) if user else None

    def publish(self, event: ProgressEvent, *, while_job_open: int | None = None) -> bool:
        """Store an event (the stream delivers it); False when it was already published,
        or, with ``while_job_open``, when that training job has ended meanwhile (its end
        is the last thing its followers hear)."""
        stored = self.events.append(event, while_job_open=while_job_open)
        if stored:
            for callback in self._published:
                callback()
        return stored

    def on_publish(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (quick, thread-safe) after each event this process stores:
        the local dispatcher reads the stream at once instead of at its next poll.
        Returns what stops it."""
        self._published.append(callback)
        return lambda: self._published.remove(callback)

    def deliver(self, event: ProgressEvent) -> int:
        """Send an event to every follower of its topics (once per connection) that may
        still read it; close the connections of those that may not, drop those gone.
        Each (event, connection) is claimed before it is sent, so a record delivered
        again, or twice at once, reaches each client once."""
        sent, seen = 0, set()
        for topic in dict.fromkeys([event.topic, *event.also]):
            subs = [s for s in self.registry.subscribers(topic) if s.connection_id not in seen]
            owner = self._owner(topic) if subs else None
            for sub in subs:
                seen.add(sub.connection_id)
                if owner is not None and not self._still_allowed(sub, topic, owner):
                    self._revoke(sub.connection_id)
                    continue
                if not self.events.claim(event.event_id, sub.connection_id):
                    continue  # sent already: this is the stream handing the record over again
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

    def _still_allowed(self, sub: Subscription, topic: str, owner: int) -> bool:
        if self.users is None:
            return True  # only the role at connect time is known, and it was checked then
        user = self.users.current(sub.user_id)
        return user is not None and self._may_read(
            Principal(user_id=user.id, role=user.role), topic, owner
        )

    def _revoke(self, connection_id: str) -> None:
        """Close a socket whose user lost the right to what it follows; it may reconnect
        and follow what its user may read now."""
        log.info(
            "closing connection %s: its user may no longer read what it follows", connection_id
        )
        try:
            self.notifier.close(connection_id)
        except Exception:  # the registry entry goes anyway: nothing more is sent to it
            log.exception("closing %s failed", connection_id)
        self.registry.remove(connection_id)

    @staticmethod
    def _format(fmt: str) -> str:
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
        return fmt
