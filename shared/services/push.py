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

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import FORMATS, TOPIC_RE, ProgressEvent, render
from shared.models import Connection, Principal, Subscription
from shared.ports import (
    ConnectionRegistry,
    DeliveryDeferred,
    EventLog,
    Notifier,
    OwnerLookup,
    UserRepository,
)

log = logging.getLogger(__name__)

# Kinds where only the newest of a topic matters: within one batch, an older one is
# superseded by a newer (never a status, error or other news a client must see).
COALESCED_KINDS = frozenset({"progress"})
# Each event's followers are claimed in this many parts (one conditional write each),
# by a hash of the connection id: at most PARTS writes per event, however many follow.
PARTS = 32
# Topics one connection may follow: what closing it reads and deletes.
MAX_TOPICS_PER_CONNECTION = 50
# A connection younger than this counts as open without asking (it may still be in its
# handshake, which API Gateway's GetConnection does not know yet).
YOUNG_S = 60.0
# Connections asked about (GetConnection) by one $connect at its user's cap, the oldest
# first: what one refused connect costs, whatever the cap.
MAX_PROBES = 3

_SENT, _DROPPED, _LATER = "sent", "dropped", "later"


class Delivered(NamedTuple):
    done: int  # leading events settled (sent, superseded, or nobody to send to)
    sent: int  # messages posted


@dataclass
class _Part:
    served: set[str]  # connections of the part served, by this run or an earlier one
    unfinished: bool = field(default=False)


def _part_of(connection_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(connection_id.encode(), digest_size=2).digest()) % PARTS


def _superseded(events: Sequence[ProgressEvent]) -> set[int]:
    """Indexes of coalesced-kind events a later one of the same kind and topics replaces."""
    newest: dict[tuple, int] = {}
    out: set[int] = set()
    for i, e in enumerate(events):
        if e.kind in COALESCED_KINDS:
            key = (e.kind, e.topic, tuple(e.also))
            if key in newest:
                out.add(newest[key])
            newest[key] = i
    return out


# Roles that may follow other people's resources of a kind (researchers read
# everyone's audio analyses, seed 001); everything else: owner or admin.
_PRIVILEGED_READERS = {"file": "researcher"}


class PushService:
    # The longest one post may take, botocore's retries of a throttled one included: no
    # post starts later than this before a deadline.
    POST_S = 5.0
    # Posts at once: the notifier client's connection pool matches it (CLIENT_CONFIG,
    # shared/adapters/push.py).
    WORKERS = 64

    def __init__(
        self,
        registry: ConnectionRegistry,
        events: EventLog,
        notifier: Notifier,
        owners: OwnerLookup,
        users: UserRepository | None = None,
        *,
        workers: int = WORKERS,
        max_connections_per_user: int | None = None,
    ) -> None:
        self.registry = registry
        self.events = events
        self.notifier = notifier
        self.owners = owners
        # Where followers' current roles are read; without it, the role each connection
        # was opened with.
        self.users = users
        self.max_connections_per_user = max_connections_per_user
        self._published: list[Callable[[], None]] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="push")

    def connect(
        self,
        principal: Principal,
        connection_id: str,
        *,
        topic: str | None = None,
        fmt: str = "crucible",
    ) -> Connection:
        """Register a connection, subscribed to ``topic`` if given, else to its user's topic
        (everything about the user's own work). More topics: ``subscribe``. A user holds
        at most ``max_connections_per_user`` at once (409 ``TOO_MANY_CONNECTIONS``)."""
        fmt = self._format(fmt)
        if topic:
            self.authorize(principal, topic)
        conn = Connection(
            connection_id=connection_id, user_id=principal.user_id, role=principal.role
        )
        self.registry.add(conn)
        self._within_cap(conn)
        self.registry.subscribe(
            Subscription(
                connection_id=connection_id,
                topic=topic or f"user:{principal.user_id}",
                user_id=principal.user_id,
                format=fmt,
            )
        )
        return conn

    def _within_cap(self, conn: Connection) -> None:
        """Counted after the new connection is registered, so that connections opened
        together see each other (at worst all are refused) rather than each counting
        only the older ones; the count is an index read, eventually consistent, so a
        burst opened within its lag may pass the cap by a few. At the cap, the oldest
        registrations (at most ``MAX_PROBES``, none younger than ``YOUNG_S``) are asked
        about, and those whose socket is gone (a lost ``$disconnect``, a local stack
        killed) dropped, before the new one is refused. Refused or failing, the new
        registration is removed."""
        cap = self.max_connections_per_user
        if cap is None:
            return
        try:
            # enough to know whether dropping MAX_PROBES could make room (when this many
            # are read, there may be more: then it cannot)
            others = [
                c
                for c in self.registry.of_user(conn.user_id, limit=cap + MAX_PROBES + 1)
                if c.connection_id != conn.connection_id
            ]
            over = len(others) - cap + 1  # how many must be gone for this one to fit
            if over <= 0:
                return
            now = time.time()
            oldest = [c for c in reversed(others) if now - c.connected_at.timestamp() >= YOUNG_S]
            dropped = 0
            for c in oldest[:MAX_PROBES]:
                if dropped >= over:
                    break
                if not self.notifier.alive(c.connection_id):
                    log.info("dropping connection %s: its socket is gone", c.connection_id)
                    self.registry.remove(c.connection_id)
                    dropped += 1
        except Exception:
            self.registry.remove(conn.connection_id)
            raise
        if dropped < over:
            log.info(
                "user %s refused a connection: %d open (cap %d), %d found gone",
                conn.user_id,
                len(others) - dropped,
                cap,
                dropped,
            )
            self.registry.remove(conn.connection_id)
            raise Conflict(
                f"A user holds at most {cap} open connections: close one, or follow more "
                "topics on one ('subscribe')",
                code="TOO_MANY_CONNECTIONS",
            )

    def subscribe(self, connection_id: str, topic: str, fmt: str = "crucible") -> Subscription:
        conn = self.registry.get(connection_id)
        principal = self._current(conn) if conn else None
        if principal is None:
            raise NotFound("Unknown connection", code="CONNECTION_NOT_FOUND")
        self.authorize(principal, topic)
        followed = self.registry.topics(connection_id, limit=MAX_TOPICS_PER_CONNECTION)
        if topic not in followed and len(followed) >= MAX_TOPICS_PER_CONNECTION:
            raise Conflict(
                f"A connection follows at most {MAX_TOPICS_PER_CONNECTION} topics: open "
                "another connection for more",
                field="topic",
                code="TOO_MANY_TOPICS",
            )
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
        """Send one event to its followers (``deliver_all``, no time budget); returns how
        many got it. DeliveryDeferred when some could not be served now."""
        out = self.deliver_all([event])
        if out.done < 1:
            raise DeliveryDeferred(f"event {event.event_id} reached only some followers")
        return out.sent

    def deliver_all(
        self, events: Sequence[ProgressEvent], *, deadline: float | None = None
    ) -> Delivered:
        """Send events, in order, to every follower of their topics (once per connection)
        that may still read them; close the connections of those that may not, drop
        those gone. A ``progress`` event followed by a newer one of the same topics is
        superseded (not sent): followers get the newest. ``deadline`` (time.monotonic())
        bounds the work: no post starts within ``POST_S`` of it, and what is in flight at
        it counts as unsent. Stops at the first event not fully served (throttled
        posts, the deadline, the table failing) so that none after it overtakes it; ``done`` says how many
        leading events are settled, the rest must be handed over again.

        Each event's followers fall into ``PARTS`` parts by connection id; a run claims
        a part with one conditional write before sending to it, and gives it back,
        with the connections served so far, when it could not finish: a record handed
        over again (a retried batch, a duplicate running at the same time) reaches each
        client once. A run that dies between claiming a part and giving it back leaves
        that part's followers without the event (at most once)."""
        hard = math.inf if deadline is None else deadline
        soft = hard - self.POST_S
        superseded = _superseded(events)
        sent = 0
        for i, event in enumerate(events):
            if i in superseded:
                continue
            if time.monotonic() >= soft:
                return Delivered(done=i, sent=sent)
            try:
                n, finished = self._fan_out(event, soft, hard)
            except Exception:  # the table failing: those before it stay delivered
                log.exception("delivering event %s failed", event.event_id)
                return Delivered(done=i, sent=sent)
            sent += n
            if not finished:
                return Delivered(done=i, sent=sent)
        return Delivered(done=len(events), sent=sent)

    def _fan_out(self, event: ProgressEvent, soft: float, hard: float) -> tuple[int, bool]:
        """Post one event to its followers in parallel; (how many got it, all served?).
        A lone follower's post is made on the calling thread (no hand-over: latency)."""
        held: dict[int, _Part] = {}  # parts this run claimed
        others: set[int] = set()  # parts another run has
        posts: dict[Future[str], tuple[int, str]] = {}
        first: tuple[Subscription, str, int | None, int] | None = None  # not yet handed over
        read_all = False  # every follower read in time: else no held part is finished
        try:
            for topic, owner, sub in self._followers(event):
                if time.monotonic() >= soft:
                    break
                cid = sub.connection_id
                n = _part_of(cid)
                if n in others:
                    continue
                if n not in held:
                    served = self.events.claim(event.event_id, n)
                    if served is None:
                        others.add(n)
                        continue
                    held[n] = _Part(served)
                if cid in held[n].served:
                    continue
                if first is None and not posts:
                    first = (sub, topic, owner, n)
                    continue
                for s, t, o, part in [*([first] if first else []), (sub, topic, owner, n)]:
                    post = self._pool.submit(self._serve, event, s, t, o, soft)
                    posts[post] = (part, s.connection_id)
                first = None
            else:
                read_all = True
                if first is not None:  # the only one
                    sub, topic, owner, n = first
                    inline: Future[str] = Future()
                    posts[inline] = (n, sub.connection_id)
                    try:
                        inline.set_result(self._serve(event, sub, topic, owner, soft))
                    except Exception as exc:  # as the pool would keep it: settled below
                        inline.set_exception(exc)
        finally:
            if not read_all:  # out of time, or failed: some followers were never read
                for part in held.values():
                    part.unfinished = True
            sent = self._settle(event, posts, held, hard)
        return sent, read_all and not any(p.unfinished for p in held.values())

    def _followers(self, event: ProgressEvent) -> Iterator[tuple[str, int | None, Subscription]]:
        """(topic, its owner, subscription) of each connection following the event's
        topics, the first topic it follows only; read as consumed."""
        seen: set[str] = set()
        for topic in dict.fromkeys([event.topic, *event.also]):
            owner: int | None = None
            looked = False  # the owner is read only for a topic with followers
            for sub in self.registry.subscribers(topic):
                if sub.connection_id in seen:
                    continue
                seen.add(sub.connection_id)
                if not looked:
                    owner, looked = self._owner(topic), True
                yield topic, owner, sub

    def _settle(
        self,
        event: ProgressEvent,
        posts: dict[Future[str], tuple[int, str]],
        held: dict[int, _Part],
        hard: float,
    ) -> int:
        """Wait for the posts (until ``hard``), then give back every part not finished."""
        wait(posts, timeout=None if hard == math.inf else max(0.0, hard - time.monotonic()))
        sent = 0
        for post, (n, cid) in posts.items():
            part = held[n]
            if post.cancel() or not post.done() or post.exception() or post.result() == _LATER:
                part.unfinished = True  # never started, still in flight, or deferred
                continue
            part.served.add(cid)
            sent += post.result() == _SENT
        for n, part in held.items():
            if part.unfinished:
                self.events.release(event.event_id, n, part.served)
        return sent

    def _serve(
        self, event: ProgressEvent, sub: Subscription, topic: str, owner: int | None, soft: float
    ) -> str:
        """One follower: revoked, posted, found gone, or (out of time, throttled) later."""
        if time.monotonic() >= soft:
            return _LATER
        if owner is not None and not self._still_allowed(sub, topic, owner):
            self._revoke(sub.connection_id)
            return _DROPPED
        try:
            ok = self.notifier.post(sub.connection_id, render(event, sub.format))
        except DeliveryDeferred:
            log.warning("push to %s deferred: throttled or failing", sub.connection_id)
            return _LATER
        except Exception:  # one broken connection must not starve the others
            log.exception("push to %s failed", sub.connection_id)
            return _DROPPED
        if ok:
            return _SENT
        self.registry.remove(sub.connection_id)
        return _DROPPED

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
