"""The DynamoDB adapters against the emulator: conditional writes, uniqueness, paging, TTL."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.adapters.dynamodb.identity import DynamoUsers
from shared.adapters.dynamodb.jobs import DynamoJobs
from shared.adapters.dynamodb.projects import DynamoTags
from shared.adapters.dynamodb.push import DynamoConnections, DynamoEventLog
from shared.errors import Conflict
from shared.events import ProgressEvent
from shared.models import Connection, Subscription, TrainingJob

pytestmark = pytest.mark.integration


def test_user_email_is_unique_even_under_a_race(container):
    users = DynamoUsers(container.table)
    email = f"race-{time.time_ns()}@example.com"

    def attempt(_):
        try:
            return users.create(email=email, password_hash="h", role="user", full_name=None)
        except Conflict:
            return None

    with ThreadPoolExecutor(8) as pool:
        created = [u for u in pool.map(attempt, range(8)) if u]
    assert len(created) == 1
    assert users.get_by_email(email.upper()).id == created[0].id
    with pytest.raises(Conflict):
        users.create(email=email, password_hash="h", role="user", full_name=None)


def test_ids_are_unique_and_pages_are_consistent(container):
    users = DynamoUsers(container.table)
    ids = [
        users.create(
            email=f"p{i}-{time.time_ns()}@example.com",
            password_hash="h",
            role="user",
            full_name=None,
        ).id
        for i in range(5)
    ]
    assert len(set(ids)) == 5 and min(ids) > 0  # unique; ordered only within a block
    # Listings are read from an index, which DynamoDB updates after the write (eventually
    # consistent), and other tests on this emulator add and remove users at any moment:
    # a skip page must be the slice of the listing it was read between, whenever the
    # listing held still around it (the same before and after) and shows the new users.
    deadline = time.monotonic() + 30
    while True:
        before = users.list(skip=0, limit=1000)
        page = users.list(skip=2, limit=2)
        after = users.list(skip=0, limit=1000)
        listed = [u.id for u in after.items]
        still = [u.id for u in before.items] == listed and set(ids) <= set(listed)
        if still and page.total == after.total and [u.id for u in page.items] == listed[2:4]:
            break
        assert time.monotonic() < deadline, (
            f"no skip page was the slice of a listing that held still: {still=}, "
            f"page {[u.id for u in page.items]} of {page.total}, listed {listed[:5]} of "
            f"{after.total}"
        )
        time.sleep(0.1)


def test_tag_names_are_unique_per_owner_and_freed_on_delete(container):
    tags = DynamoTags(container.table)
    owner = time.time_ns() % 10**9
    tag = tags.create(owner_id=owner, name="Night")
    with pytest.raises(Conflict):
        tags.create(owner_id=owner, name="night")
    assert tags.create(owner_id=owner + 1, name="night").owner_id == owner + 1  # someone else's
    tags.delete(tag)
    assert tags.get(tag.id) is None
    assert tags.create(owner_id=owner, name="night").name == "night"


def test_events_append_once(container):
    log = DynamoEventLog(container.table, ttl_s=600)
    ev = ProgressEvent(topic="job:pub1", kind="log", event_id=f"e-{time.time_ns()}", data={"m": 1})
    assert log.append(ev) is True
    assert log.append(ev) is False
    assert [e.event_id for e in log.recent("job:pub1", limit=10)] == [ev.event_id]


def test_news_of_a_job_is_stored_only_while_it_has_not_ended(container):
    log, jobs = DynamoEventLog(container.table, ttl_s=600), container.jobs
    job = DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=1,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
        )
    )

    def news(n):
        return ProgressEvent(topic=f"job:{job.id}", kind="status", event_id=f"n{n}-{job.id}")

    assert log.append(news(1), while_job_open=job.id) is True
    assert jobs.advance(job.id, "failed", error="boom") is not None
    assert log.append(news(2), while_job_open=job.id) is False  # computed before, told after
    assert log.append(news(2)) is True  # unguarded news is still stored
    assert log.append(news(3), while_job_open=10**12) is False  # no such job
    assert [e.event_id for e in log.recent(f"job:{job.id}", limit=5)] == [
        f"n1-{job.id}",
        f"n2-{job.id}",
    ]


def test_connections_expire_and_are_removed_with_their_subscriptions(container):
    live = DynamoConnections(container.table, ttl_s=600)
    cid = f"c{time.time_ns()}"
    live.add(Connection(connection_id=cid, user_id=1, role="user"))
    live.subscribe(Subscription(connection_id=cid, topic="job:ttl1", user_id=1))
    live.subscribe(Subscription(connection_id=cid, topic="user:1", user_id=1))
    assert live.get(cid) is not None
    assert cid in [s.connection_id for s in live.subscribers("job:ttl1")]
    live.remove(cid)
    assert live.get(cid) is None
    assert cid not in [s.connection_id for s in live.subscribers("job:ttl1")]
    live.remove(cid)  # idempotent

    expired = DynamoConnections(container.table, ttl_s=-1)  # written already expired
    cid2 = f"c{time.time_ns()}"
    expired.add(Connection(connection_id=cid2, user_id=1, role="user"))
    expired.subscribe(Subscription(connection_id=cid2, topic="job:ttl2", user_id=1))
    assert live.get(cid2) is None and list(live.subscribers("job:ttl2")) == []


def test_request_windows_count_batches_in_the_table(container):
    """The batched per-user windows over the real table: n requests added in one write,
    each process's unsent counts carried by its next ask."""
    shared = container.rate_limiter
    key = f"user:batch-{time.time_ns()}"
    assert shared.hit(key, limit=100, window_s=3600, n=3)[0] == 3
    assert shared.hit(key, limit=100, window_s=3600)[0] == 4
    batched = type(container.request_counter)(shared)
    used = [batched.hit(key, limit=10_000, window_s=3600)[0] for _ in range(30)]
    assert used == list(range(5, 35))
    assert shared.count(key, window_s=3600)[0] < 34  # some are held in the process
    assert batched.count(key, window_s=3600)[0] == 34  # and counted with it
