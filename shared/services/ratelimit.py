"""The per-user request windows, counted in the process and added to the shared counter
in batches.

Counting every request in the table costs each request a round trip to it before its
route may run (about 4 ms on the local stack; in AWS a DynamoDB write, one write unit a
request). :class:`BatchedRateLimiter` keeps each window's count here as well:

* it asks the shared counter (adding what it counted but has not sent, and the request)
  for the first request of a window in this process, for every request once the window
  is past ``NEAR`` of its limit, once ``BATCH`` of the limit is counted here unsent, and
  once its last answer is ``MAX_AGE_S`` old; the request is decided on the total it gets;
* any other request is counted here and decided on the last total plus what is unsent.

So in one process every decision is the one the shared counter alone would make (the
local stack, tests): a request admitted here is under ``NEAR`` of the limit counting
everything this process holds, and every refusal comes from the shared total. The
``X-RateLimit-Remaining`` a request reads can be low by a batch still being sent while
another ask's answer (which has it) came first. A limit under 20 a window is always
asked. Across processes (Lambda containers), each decides on the others' counts as of at
most ``MAX_AGE_S`` ago and only below ``NEAR`` of the limit: a user whose requests are
spread over N containers can pass a limit by at most N x ``BATCH`` of it in a window.
Counts a container never sent (it was recycled, or its ask failed: that request fails
and its batch is dropped) are lost: a window counts low by them. As with any counter
write, a write whose answer was lost and was retried by botocore may count its batch
twice. The routes that start costly work are also throttled per user by API Gateway's
usage plans in AWS (infra/constructs/api.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.ports import RateLimiter

NEAR = 0.8  # past this share of its limit, every request asks the shared counter
BATCH = 0.05  # at most this share of the limit is counted here unsent
MAX_AGE_S = 1.0  # and never on a shared total older than this
KEPT = 10_000  # windows kept (least recently used dropped; their unsent counts lost)


@dataclass
class _Count:
    window: int  # the window's number (epoch // its length)
    seen: int = 0  # the shared total as last answered (this process's sent counts in it)
    sending: int = 0  # being added now
    unsent: int = 0  # counted here, not yet added
    asked: float | None = None  # when ``seen`` was answered (monotonic)


class BatchedRateLimiter:
    """:class:`~shared.ports.RateLimiter` over another one (the shared counter)."""

    def __init__(self, shared: RateLimiter, *, clock: Callable[[], float] = time.monotonic):
        self.shared = shared
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: OrderedDict[tuple[str, int], _Count] = OrderedDict()

    def hit(
        self, key: str, *, limit: int, window_s: int, n: int = 1, window: int | None = None
    ) -> tuple[int, int]:
        window = int(time.time()) // window_s if window is None else window
        reset = (window + 1) * window_s
        now = self.clock()
        with self._lock:
            count = self._counts.get((key, window_s))
            if count is None or count.window < window:
                count = self._counts[key, window_s] = _Count(window)
            elif count.window > window:  # the clock passed a boundary since: the new one
                window, reset = count.window, (count.window + 1) * window_s
            self._counts.move_to_end((key, window_s))
            while len(self._counts) > KEPT:
                self._counts.popitem(last=False)
            used = count.seen + count.sending + count.unsent + n
            if (
                count.asked is not None
                and now - count.asked < MAX_AGE_S
                and used <= limit * NEAR
                and count.unsent + n <= limit * BATCH
            ):
                count.unsent += n
                return used, reset
            send, count.unsent = count.unsent + n, 0
            count.sending += send
        try:
            total, reset = self.shared.hit(
                key, limit=limit, window_s=window_s, n=send, window=window
            )
        except BaseException:
            with self._lock:  # the request fails; its batch is dropped (counted low)
                count.sending -= send
            raise
        with self._lock:
            count.sending -= send
            count.seen, count.asked = max(count.seen, total), now
        return total, reset

    def count(self, key: str, *, window_s: int) -> tuple[int, int]:
        """The shared count and what this process counted of it but has not sent."""
        used, reset = self.shared.count(key, window_s=window_s)
        with self._lock:
            count = self._counts.get((key, window_s))
            unsent = count.unsent if count and (count.window + 1) * window_s == reset else 0
        return used + unsent, reset
