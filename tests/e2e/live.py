"""Watching a training job as a user would: live on seed 003's per-job stream and seed
000's /ws (both opened before the job starts), and by polling its status."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import websockets


def watch(stack, client, job_id: int, start: Callable[[], None], timeout: float = 300):
    """Run ``start()`` with both sockets open; return seed 003's messages up to
    ``training_complete``/``training_error`` and the set of seed 000's message types."""

    async def scenario():
        wf = await websockets.connect(f"{stack.ws}/ws/workflows/{job_id}?token={client.token}")
        # read only at the end: an unbounded queue keeps its pings and pongs flowing meanwhile
        legacy = await websockets.connect(
            f"{stack.ws}/ws?token={client.token}&topic=job:{job_id}", max_queue=None
        )
        start()
        seen, legacy_types = [], set()
        while not seen or seen[-1]["type"] not in ("training_complete", "training_error"):
            seen.append(json.loads(await asyncio.wait_for(wf.recv(), timeout)))
        for _ in range(1000):
            try:
                legacy_types.add(json.loads(await asyncio.wait_for(legacy.recv(), 2))["type"])
            except TimeoutError:
                break
        await wf.close()
        await legacy.close()
        return seen, legacy_types

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
