"""Watching a training job as a user would: live on seed 003's per-job stream and seed
000's /ws (both opened before the job starts), and by polling its status."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import websockets


class _Reader:
    """Reads one socket continuously in a background task, from the moment it opens: its
    buffer never fills, and keepalive pings and pongs flow however long nobody looks."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[dict] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:  # ends when the socket closes; a close error propagates
            self.messages.append(json.loads(text))
            self.arrived.set()

    async def until(self, done: Callable[[list[dict]], bool], timeout: float) -> list[dict]:
        """The messages so far, once ``done(messages)`` holds; AssertionError once nothing
        has arrived for ``timeout`` seconds (a long run that keeps talking is waited for)."""
        loop = asyncio.get_running_loop()
        deadline, count = loop.time() + timeout, len(self.messages)
        while not done(self.messages):
            if self.task.done():  # the socket closed: say why, not just "timed out"
                self.task.result()
                raise AssertionError(f"socket closed before the end: {self.messages[-5:]}")
            if len(self.messages) > count:  # news: the silence starts again
                deadline, count = loop.time() + timeout, len(self.messages)
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"nothing more after {timeout} s: {self.messages[-5:]}")
            self.arrived.clear()
            waiter = asyncio.ensure_future(self.arrived.wait())  # a message, or the close
            await asyncio.wait({waiter, self.task}, timeout=left, return_when="FIRST_COMPLETED")
            waiter.cancel()
        return list(self.messages)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.task, return_exceptions=True)


_ENDS = ("training_complete", "training_error")


def _up_to_end(seen: list[dict]) -> list[dict]:
    """Seed 003's messages up to the first ``training_complete``/``training_error``."""
    ends = [i for i, m in enumerate(seen) if m["type"] in _ENDS]
    return seen[: ends[0] + 1] if ends else []


def watch(stack, client, job_id: int, start: Callable[[], None], timeout: float = 300):
    """Run ``start()`` with both sockets open; return seed 003's messages up to
    ``training_complete``/``training_error`` and the set of seed 000's message types
    (up to seed 000's message with the final status; both sockets are read all along)."""

    async def scenario():
        wf = _Reader(
            await websockets.connect(f"{stack.ws}/ws/workflows/{job_id}?token={client.token}")
        )
        legacy = _Reader(
            await websockets.connect(f"{stack.ws}/ws?token={client.token}&topic=job:{job_id}")
        )
        try:
            await asyncio.to_thread(start)  # the loop keeps reading both sockets meanwhile
            seen = _up_to_end(await wf.until(lambda ms: bool(_up_to_end(ms)), timeout))
            final = {"completed", "failed", "stopped"}
            legacy_seen = await legacy.until(
                lambda ms: any(
                    m["type"] in ("status", "error") and m["payload"].get("status") in final
                    for m in ms
                ),
                60,
            )
        finally:
            await wf.close()
            await legacy.close()
        return seen, {m["type"] for m in legacy_seen}

    return asyncio.run(scenario())


def assert_both_formats(seen: list[dict], legacy_types: set[str], job_id: int) -> None:
    types = [m["type"] for m in seen]
    assert types[-1] == "training_complete", types
    assert {"training_progress", "checkpoint_saved"} <= set(types)
    assert all(m["workflow_id"] == str(job_id) for m in seen)
    assert {"progress", "log", "validation_result", "status"} <= legacy_types  # seed 000's


def wait_for_status(client, job_id: int, statuses=("completed", "failed", "stopped"), timeout=300):
    """Poll the job over HTTP until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.http.get(f"/training/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.5)
    raise AssertionError(job)


def follow(stack, client, workflow_id: str, timeout: float = 240) -> list[dict]:
    """Seed 003's messages on /ws/workflows/{id} up to training_complete/training_error."""

    async def read() -> list[dict]:
        seen: list[dict] = []
        async with websockets.connect(
            f"{stack.ws}/ws/workflows/{workflow_id}?token={client.token}"
        ) as ws:
            while not seen or seen[-1]["type"] not in ("training_complete", "training_error"):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        return seen

    return asyncio.run(read())
