"""Fixed-window request counters for the API's rate limit."""

from __future__ import annotations

import time

from shared.adapters.dynamodb.table import Table


class DynamoRateLimiter:
    """One ``RATE#<key>#<window>`` counter per key and window, expiring a window after
    it closes."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def hit(self, key: str, *, limit: int, window_s: int) -> tuple[int, int]:
        window = int(time.time()) // window_s
        reset = (window + 1) * window_s
        count = self.t.increment(
            f"RATE#{key}#{window}", "RATE", {"expires_at": reset + window_s, "type": "rate"}
        )
        return count, reset
