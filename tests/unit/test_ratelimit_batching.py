"""The per-user request windows counted in the process and sent in batches
(shared/services/ratelimit.py): exact in one process, bounded across several, never a
count lost to a failed ask."""

from __future__ import annotations

import threading
import time

import pytest

from shared.services.ratelimit import BATCH, MAX_AGE_S, NEAR, BatchedRateLimiter

WINDOW = 60


class Shared:
    """The shared counter (the table's), in memory: counts every ask, per window."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.asks = 0
        self.fail = False
        self.lock = threading.Lock()

    def hit(self, key, *, limit, window_s, n=1, window=None):
        if self.fail:
            raise ConnectionError("the table is unreachable")
        window = int(time.time()) // window_s if window is None else window
        with self.lock:
            self.asks += 1
            self.counts[key, window] = self.counts.get((key, window), 0) + n
            return self.counts[key, window], (window + 1) * window_s

    def count(self, key, *, window_s):
        window = int(time.time()) // window_s
        return self.counts.get((key, window), 0), (window + 1) * window_s

    def total(self, key, window_s=WINDOW):
        return self.count(key, window_s=window_s)[0]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Every hit in one window of the wall clock (the windows are fixed to it)."""
    monkeypatch.setattr("time.time", lambda: 1_700_000_000 - 1_700_000_000 % 3600 + 5)


def test_one_process_counts_exactly_and_asks_the_table_a_fraction_of_the_time():
    shared, clock, limit = Shared(), Clock(), 1000
    limiter = BatchedRateLimiter(shared, clock=clock)
    used = [limiter.hit("user:1", limit=limit, window_s=WINDOW)[0] for _ in range(limit + 5)]
    assert used == list(range(1, limit + 6))  # each request sees its own number
    # asked: the first, one in each BATCH of the limit up to NEAR of it, then every one
    expected = 1 + int(limit * NEAR) // int(limit * BATCH) + (limit + 5 - int(limit * NEAR))
    assert abs(shared.asks - expected) <= 2, shared.asks
    assert shared.total("user:1") == limit + 5  # everything sent: the past-NEAR asks carry it
    # another key, its own window
    assert limiter.hit("user:2", limit=limit, window_s=WINDOW)[0] == 1


def test_a_small_limit_is_always_asked():
    shared = Shared()
    limiter = BatchedRateLimiter(shared, clock=Clock())
    assert [limiter.hit("u", limit=10, window_s=WINDOW)[0] for _ in range(11)] == list(range(1, 12))
    assert shared.asks == 11


def test_an_old_total_is_asked_again():
    shared, clock = Shared(), Clock()
    limiter = BatchedRateLimiter(shared, clock=clock)
    limiter.hit("u", limit=1000, window_s=WINDOW)
    limiter.hit("u", limit=1000, window_s=WINDOW)
    assert shared.asks == 1
    shared.counts["u", int(time.time()) // WINDOW] += 100  # another container's requests
    clock.now += MAX_AGE_S
    assert limiter.hit("u", limit=1000, window_s=WINDOW)[0] == 103  # theirs, both of ours
    assert shared.asks == 2 and shared.total("u") == 103


def test_containers_sharing_a_counter_pass_a_limit_by_at_most_their_batches():
    shared, clock, limit = Shared(), Clock(), 1000
    containers = [BatchedRateLimiter(shared, clock=clock) for _ in range(4)]
    admitted = 0
    for i in range(3 * limit):  # one user's requests spread over four containers
        used, _ = containers[i % 4].hit("u", limit=limit, window_s=WINDOW)
        admitted += used <= limit
    assert limit <= admitted <= limit + 4 * limit * BATCH


def test_concurrent_requests_in_one_process_are_each_counted_once():
    shared, limit = Shared(), 100_000
    limiter = BatchedRateLimiter(shared, clock=Clock())
    seen: list[int] = []

    def user() -> None:
        for _ in range(500):
            seen.append(limiter.hit("u", limit=limit, window_s=WINDOW)[0])

    threads = [threading.Thread(target=user) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) == 4000 and len(seen) == 4000
    # what is still unsent is what the table lacks, no more, no less
    assert limiter.count("u", window_s=WINDOW)[0] == 4000


def test_a_failed_ask_fails_its_request_and_drops_its_batch():
    shared, clock = Shared(), Clock()
    limiter = BatchedRateLimiter(shared, clock=clock)
    for _ in range(3):
        limiter.hit("u", limit=1000, window_s=WINDOW)
    clock.now += MAX_AGE_S
    shared.fail = True
    with pytest.raises(ConnectionError):
        limiter.hit("u", limit=1000, window_s=WINDOW)
    shared.fail = False
    # the two counted here with it are lost (counted low, never twice)
    assert limiter.hit("u", limit=1000, window_s=WINDOW)[0] == 2
    assert shared.total("u") == 2


def test_a_request_late_for_its_window_counts_in_the_current_one(monkeypatch):
    """A thread that read the clock before a window's end asks after another opened the
    next one: it counts there, and the new window's counts are kept."""
    now = [1_700_000_000 - 1_700_000_000 % 3600 + 59.5]
    monkeypatch.setattr("time.time", lambda: now[0])
    shared = Shared()
    limiter = BatchedRateLimiter(shared, clock=Clock())
    assert limiter.hit("u", limit=1000, window_s=WINDOW)[0] == 1
    now[0] += 1  # the next minute
    assert [limiter.hit("u", limit=1000, window_s=WINDOW)[0] for _ in range(3)] == [1, 2, 3]
    now[0] -= 1  # a late one, as a thread that read the clock before the minute ended
    used, reset = limiter.hit("u", limit=1000, window_s=WINDOW)
    assert used == 4 and reset % WINDOW == 0 and reset > now[0] + 1
    now[0] += 1
    assert limiter.count("u", window_s=WINDOW)[0] == 4
