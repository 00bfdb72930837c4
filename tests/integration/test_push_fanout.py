"""Fan-out at scale: one event to 1,000 followers, through the real ApiGatewayNotifier
(boto3's ``apigatewaymanagementapi`` client with the adapter's CLIENT_CONFIG) against a
local HTTP server that answers like API Gateway's ``@connections`` (200; 410
GoneException; 429 LimitExceededException when told to throttle), the registry and
the delivery parts in the emulator's DynamoDB, and stream batches through
functions/events/stream_push.py as Lambda's stream mapping hands them over.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from functions.events import stream_push
from shared.adapters.push import CLIENT_CONFIG, PROBE_CONFIG, ApiGatewayNotifier
from shared.errors import Conflict
from shared.events import ProgressEvent
from shared.models import Connection, Principal, Subscription
from shared.services.push import MAX_PROBES, MAX_TOPICS_PER_CONNECTION, YOUNG_S, PushService

pytestmark = pytest.mark.integration

FOLLOWERS = 1_000
LATENCY_S = 0.05  # what one post takes, a slow one: one at a time, 1,000 take 50 s


class Connections:
    """What ``@connections`` received and how it answers: ``gone`` ids get 410, ``throttle``
    ids get 429 for as many posts as their count says (``None``: every one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: dict[str, list[dict]] = {}
        self.gone: set[str] = set()
        self.throttle: dict[str, int | None] = {}
        self.throttled = 0
        self.in_flight = self.most_in_flight = 0
        self.latency_s = LATENCY_S
        self.asked: list[str] = []  # GetConnection calls, by connection id

    def answer(self, cid: str, body: bytes) -> tuple[int, str | None]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)  # the service's own time: the server is slow, not the test
            with self.lock:
                if cid in self.gone:
                    return 410, "GoneException"
                if cid in self.throttle:
                    left = self.throttle[cid]
                    if left is None or left > 0:
                        self.throttle[cid] = None if left is None else left - 1
                        self.throttled += 1
                        return 429, "LimitExceededException"
                self.received.setdefault(cid, []).append(json.loads(body))
                return 200, None
        finally:
            with self.lock:
                self.in_flight -= 1

    def per_event(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter(
                (cid, m["event_id"]) for cid, msgs in self.received.items() for m in msgs
            )


@pytest.fixture(scope="module")
def connections():
    state = Connections()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # PostToConnection
            cid = self.path.rsplit("/", 1)[-1]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(*state.answer(cid, body), {})

        def do_GET(self) -> None:  # GetConnection: 200; 410 gone; 429 throttled
            cid = self.path.rsplit("/", 1)[-1]
            with state.lock:
                state.asked.append(cid)
                status, error = (
                    (410, "GoneException")
                    if cid in state.gone
                    else (429, "LimitExceededException")
                    if cid in state.throttle
                    else (200, None)
                )
            self._reply(status, error, {"connectedAt": "2026-12-02T00:00:00Z"})

        def _reply(self, status: int, error: str | None, ok: dict) -> None:
            payload = json.dumps({"message": error} if error else ok).encode()
            self.send_response(status)
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


@pytest.fixture
def push(container, connections):
    def client(config):
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=connections.url,
            region_name=container.settings.aws_region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=config,
        )

    p = container.push
    notifier = ApiGatewayNotifier(client(CLIENT_CONFIG), lambda: client(PROBE_CONFIG))
    return PushService(p.registry, p.events, notifier, p.owners, container.user_repository)


def followed(container, n: int) -> tuple[str, list[str]]:
    """A new user's topic with ``n`` connections of that user following it."""
    user = container.auth.register(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw123456"
    )
    topic, tag = f"user:{user.id}", uuid.uuid4().hex[:8]
    cids = [f"{tag}-{i:04d}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda cid: container.push.registry.subscribe(
                    Subscription(connection_id=cid, topic=topic, user_id=user.id)
                ),
                cids,
            )
        )
    return topic, cids


def an_event(topic: str, kind: str = "log", **data: Any) -> ProgressEvent:
    return ProgressEvent(topic=topic, kind=kind, event_id=uuid.uuid4().hex, data=data)


def records(*events: ProgressEvent) -> dict:
    """The stream batch that storing ``events`` makes (as DynamoEventLog stores them)."""
    ser = TypeSerializer()
    out = []
    for n, e in enumerate(events):
        item = {
            "PK": f"EVENTS#{e.topic}",
            "SK": e.event_id,
            "type": "event",
            **e.model_dump(mode="json"),
        }
        out.append(
            {
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "SequenceNumber": f"{time.time_ns()}{n:04d}",
                    "NewImage": {k: ser.serialize(v) for k, v in item.items()},
                },
            }
        )
    return {"Records": out}


def test_a_thousand_followers_are_served_at_once_each_once(push, container, connections):
    topic, cids = followed(container, FOLLOWERS)
    event = an_event(topic, n=1)
    started = time.monotonic()
    assert push.deliver(event) == FOLLOWERS
    took = time.monotonic() - started
    got = connections.per_event()
    assert all(got[(cid, event.event_id)] == 1 for cid in cids)
    # one at a time, 1,000 posts of 50 ms take 50 s at the least; in parallel (64 at
    # once), 0.8 s of waiting plus the client's and the server's CPU on a shared machine
    assert connections.most_in_flight >= 16, connections.most_in_flight
    assert took < FOLLOWERS * LATENCY_S / 2, f"{took:.2f} s for {FOLLOWERS} followers"
    print(f"\n{FOLLOWERS} followers: {took * 1000:.0f} ms per event")
    # the same record handed over again (a retried batch) reaches no one twice
    assert push.deliver(event) == 0
    assert connections.per_event() == got


def test_throttled_posts_are_retried_and_gone_ones_dropped(push, container, connections):
    topic, cids = followed(container, 200)
    throttled, gone = cids[::10], set(cids[5::50])
    connections.throttle.update(dict.fromkeys(throttled, 2))  # twice 429, then through
    connections.gone |= gone
    before = connections.throttled
    event = an_event(topic)
    assert push.deliver(event) == len(cids) - len(gone)
    assert connections.throttled - before == 2 * len(throttled)
    got = connections.per_event()
    assert all(got[(cid, event.event_id)] == 1 for cid in cids if cid not in gone)
    assert {s.connection_id for s in push.registry.subscribers(topic)} == set(cids) - gone


def test_a_retried_batch_serves_only_those_not_served(push, container, connections, monkeypatch):
    monkeypatch.setattr(container, "push", push)  # stream_push's container, this notifier
    topic, cids = followed(container, 120)
    still_throttled = cids[7::30]
    connections.throttle.update(dict.fromkeys(still_throttled))  # 429 whatever botocore retries
    first, second = an_event(topic, n=1), an_event(topic, n=2)
    batch = records(first, second)
    out = stream_push.handle(batch, container, remaining_s=60)
    # the first event did not reach everyone: it and everything after it go back
    sequences = [r["dynamodb"]["SequenceNumber"] for r in batch["Records"]]
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == sequences
    got = connections.per_event()
    assert not any(got[(cid, first.event_id)] for cid in still_throttled)
    assert not any(got[(cid, second.event_id)] for cid in cids)  # nothing overtakes it

    for cid in still_throttled:
        connections.throttle.pop(cid)
    assert stream_push.handle(batch, container, remaining_s=60) == {"batchItemFailures": []}
    got = connections.per_event()
    assert all(got[(cid, e.event_id)] == 1 for cid in cids for e in (first, second)), [
        (k, v) for k, v in got.items() if v != 1
    ]


def test_the_time_budget_leaves_the_rest_to_the_retry(push, container, connections, monkeypatch):
    monkeypatch.setattr(container, "push", push)
    monkeypatch.setattr(connections, "latency_s", 0.5)  # a very slow day at @connections
    monkeypatch.setattr(PushService, "POST_S", 1.0)
    topic, cids = followed(container, 400)
    event = an_event(topic)
    batch = records(event)
    started = time.monotonic()
    # 400 posts of 500 ms on 64 threads need 3.5 s; 3 s are left after the margin, and
    # no post starts in the last second
    remaining_s = stream_push.MARGIN_S + 3.0
    out = stream_push.handle(batch, container, remaining_s=remaining_s)
    assert time.monotonic() - started < remaining_s  # answered before the function's timeout
    assert len(out["batchItemFailures"]) == 1
    served = {cid for cid, eid in connections.per_event() if eid == event.event_id}
    print(f"\nserved {len(served)} of {len(cids)} in the budget")
    assert 0 < len(served) < len(cids)

    assert stream_push.handle(batch, container) == {"batchItemFailures": []}
    got = connections.per_event()
    assert all(got[(cid, event.event_id)] == 1 for cid in cids)


def test_progress_in_one_batch_is_coalesced_to_the_newest(
    push, container, connections, monkeypatch
):
    monkeypatch.setattr(container, "push", push)
    topic, (cid,) = followed(container, 1)
    events = [
        an_event(topic, "progress", step=1),
        an_event(topic, "progress", step=2),
        an_event(topic, "log", message="epoch 1 done"),
        an_event(topic, "progress", step=3),
        an_event(topic, "status", status="completed"),
    ]
    assert stream_push.handle(records(*events), container) == {"batchItemFailures": []}
    told = [(m["kind"], m["data"]) for m in connections.received[cid]]
    assert told == [
        ("log", {"message": "epoch 1 done"}),
        ("progress", {"step": 3}),
        ("status", {"status": "completed"}),  # never coalesced, and last
    ]


def test_a_connection_follows_a_bounded_number_of_topics(container):
    user = container.auth.register(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw123456"
    )
    container.auth.users.set_role(user.id, "admin")  # may follow any user's topic
    cid = f"many-{uuid.uuid4().hex[:8]}"
    container.push.connect(Principal(user_id=user.id, role="admin"), cid, topic="user:1")
    for uid in range(2, MAX_TOPICS_PER_CONNECTION + 1):
        container.push.subscribe(cid, f"user:{uid}")
    container.push.subscribe(cid, "user:2")  # again: still one subscription, allowed
    with pytest.raises(Conflict) as refused:
        container.push.subscribe(cid, f"user:{MAX_TOPICS_PER_CONNECTION + 1}")
    assert refused.value.code == "TOO_MANY_TOPICS" and refused.value.http_status == 409
    container.push.disconnect(cid)
    assert container.push.registry.topics(cid, limit=100) == []


def test_a_user_holds_a_bounded_number_of_connections(push, container, connections):
    """The cap counts a user's registered connections; at it, the oldest are asked
    (GetConnection) until enough are found gone, before a new one is refused."""
    push.max_connections_per_user = 3
    user = container.auth.register(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw123456"
    )
    me = Principal(user_id=user.id, role="user")
    tag = uuid.uuid4().hex[:8]

    def asked() -> list[str]:
        return [c for c in connections.asked if c.startswith(tag)]

    def held() -> set[str]:
        return {c.connection_id for c in push.registry.of_user(user.id, limit=10)}

    # two registered long ago, the older since gone without its $disconnect ...
    old = time.time() - YOUNG_S - 60
    for cid, at in ((f"{tag}-old-gone", old - 10), (f"{tag}-old-live", old)):
        push.registry.add(
            Connection(connection_id=cid, user_id=user.id, role="user", connected_at=at)
        )
    connections.gone.add(f"{tag}-old-gone")
    push.connect(me, f"{tag}-new-1")  # 2 others: under the cap, nobody asked
    assert asked() == []
    push.connect(me, f"{tag}-new-2")  # 3 others: the oldest asked, found gone, dropped
    assert asked() == [f"{tag}-old-gone"]  # one gone made room: nobody else asked
    assert push.registry.get(f"{tag}-old-gone") is None
    assert held() == {f"{tag}-old-live", f"{tag}-new-1", f"{tag}-new-2"}

    connections.gone.add(f"{tag}-new-1")  # gone, but too young to be asked: still counts
    with pytest.raises(Conflict) as refused:
        push.connect(me, f"{tag}-new-3")
    assert refused.value.code == "TOO_MANY_CONNECTIONS" and refused.value.http_status == 409
    assert asked() == [f"{tag}-old-gone", f"{tag}-old-live"]
    # the refused one left nothing: no registration, no subscription
    assert push.registry.get(f"{tag}-new-3") is None
    followers = {s.connection_id for s in push.registry.subscribers(f"user:{user.id}")}
    assert followers == {f"{tag}-new-1", f"{tag}-new-2"}
    assert held() == {f"{tag}-old-live", f"{tag}-new-1", f"{tag}-new-2"}
    # another user's connections are theirs to count
    other = container.auth.register(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw123456"
    )
    push.connect(Principal(user_id=other.id, role="user"), f"{tag}-other")
    push.disconnect(f"{tag}-new-2")  # a $disconnect makes room at once
    push.connect(me, f"{tag}-new-3")


def test_a_refused_connect_asks_about_a_bounded_number(push, container, connections):
    """However many registrations a user has (a burst past the cap, lost $disconnects),
    one $connect asks about at most MAX_PROBES of them, and is refused when dropping
    that many could not make room."""
    push.max_connections_per_user = 2
    user = container.auth.register(
        email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw123456"
    )
    tag = uuid.uuid4().hex[:8]
    old = time.time() - YOUNG_S - 60
    stale = [f"{tag}-{i:02d}" for i in range(10)]  # oldest first
    for i, cid in enumerate(stale):
        push.registry.add(
            Connection(connection_id=cid, user_id=user.id, role="user", connected_at=old + i)
        )
    connections.gone.update(stale)  # all of them gone: 9 must go for one more to fit
    with pytest.raises(Conflict):
        push.connect(Principal(user_id=user.id, role="user"), f"{tag}-new")
    asked = [c for c in connections.asked if c.startswith(tag)]
    assert len(asked) == MAX_PROBES and set(asked) <= set(stale)
    left = {c.connection_id for c in push.registry.of_user(user.id, limit=20)}
    assert left == set(stale) - set(asked)  # those found gone dropped, the new one too


def test_a_connection_that_cannot_be_asked_about_counts_as_open(push, connections, caplog):
    """GetConnection throttled (or denied, or down): one attempt, a warning, and the
    connection counts as open (never forgotten while its socket may be live)."""
    cid = f"busy-{uuid.uuid4().hex[:8]}"
    connections.throttle[cid] = None
    assert push.notifier.alive(cid) is True
    assert connections.asked.count(cid) == 1  # PROBE_CONFIG: no retries
    assert any(cid in r.getMessage() and "LimitExceeded" in r.getMessage() for r in caplog.records)
    gone = f"gone-{uuid.uuid4().hex[:8]}"
    connections.gone.add(gone)
    assert push.notifier.alive(gone) is False
