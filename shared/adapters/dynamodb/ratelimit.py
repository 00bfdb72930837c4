"""Fixed-window request counters for the API's rate limits."""

from __future__ import annotations

import time

from shared.adapters.dynamodb.table import Table


class DynamoRateLimiter:
    """One ``RATE#<key>#<window>`` counter per key and window, expiring a window after
    it closes."""

    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _window(window_s: int) -> tuple[int, int]:
        window = int(time.time()) // window_s
        return window, (window + 1) * window_s

    def hit(
        self, key: str, *, limit: int, window_s: int, n: int = 1, window: int | None = None
    ) -> tuple[int, int]:
        if window is None:
            window, reset = self._window(window_s)
        else:
            reset = (window + 1) * window_s
        count = self.t.increment(
            f"RATE#{key}#{window}", "RATE", {"expires_at": reset + window_s, "type": "rate"}, by=n
        )
        return count, reset

    def count(self, key: str, *, window_s: int) -> tuple[int, int]:
        """Requests counted so far in this window, without counting one; and its reset."""
        window, reset = self._window(window_s)
        item = self.t.get(f"RATE#{key}#{window}", "RATE")
        return int(item["n"]) if item else 0, reset
