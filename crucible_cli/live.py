"""Following a topic (``job:5``, ``file:12``, ``dataset:ab12``) live over the API's
WebSocket, with polling whenever the socket is quiet or cannot be had.

The socket says what happened as it happens; the API's state (polled) is what decides
that something has ended, so an event missed before the socket opened, or lost with it,
never leaves a command waiting forever.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from crucible_cli.client import Api, CliError


class NoRedirects(connect):
    """A handshake that follows no redirect: the token rides in the subprotocols, which
    websockets would offer again to whatever host a redirect names."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


# After this long without a message, look at the API's state (an end may have been missed).
QUIET_S = 5.0
# Without a socket: how often to poll, and how long to poll before trying a socket again.
POLL_S = 2.0
RECONNECT_S = 15.0


class Follow:
    """``async for event in Follow(api, "job:5")``: each message pushed on the topic (a
    dict: ``topic, kind, event_id, timestamp, data``), and ``None`` whenever the caller
    should poll: once the socket is open (so nothing before it is missed), after
    ``QUIET_S`` of silence, and every ``POLL_S`` while there is no socket. Each event is
    given once (by ``event_id``), however often a reconnection delivers it."""

    def __init__(self, api: Api, topic: str) -> None:
        self.api, self.topic = api, topic
        self.live = False  # whether a socket is open now
        self._seen: set[str] = set()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any] | None]:
        while True:
            try:
                token = await asyncio.to_thread(self.api.token)
                async with NoRedirects(
                    self.api.ws_url(self.topic),
                    subprotocols=[Subprotocol("bearer"), Subprotocol(token)],
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=40,
                    max_size=2**22,
                    user_agent_header="crucible-cli",
                ) as ws:
                    self.live = True
                    yield None
                    while True:
                        try:
                            text = await asyncio.wait_for(ws.recv(), QUIET_S)
                        except TimeoutError:
                            yield None
                            continue
                        event = _parse(text)
                        if event is None or event.get("event_id") in self._seen:
                            continue
                        if event.get("event_id"):
                            self._seen.add(str(event["event_id"]))
                        yield event
            except CliError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass  # no socket (refused, unreachable, closed): poll, then try again
            self.live = False
            until = time.monotonic() + RECONNECT_S
            while time.monotonic() < until:
                yield None
                await asyncio.sleep(POLL_S)


def _parse(text: str | bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("data", {}), dict):
        return None
    event.setdefault("data", {})
    return event
