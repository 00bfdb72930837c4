"""Everything settles, as a client sees it: a training job whose trainer dies while the
local stack is down ends ``failed`` with the reason once the stack is back, and the
client hears it on its socket and reads it on the job.

The stack runs a stand-in trainer (``CRUCIBLE_LOCAL_TRAINER_PATH``: a process that waits
to be stopped), so that nothing here trains; the stack is stopped (its jobs' processes
live on, as after a crash of the stack), the trainer is killed with SIGKILL, and the
stack starts again over the same data: its reconciler asks the local runner, whose
records on disk say the process is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
import websockets

from shared.adapters.runners import LOST
from tests import datasets as make
from tests.conftest import Client, start_stack, stop_stack

pytestmark = pytest.mark.e2e

TRAINER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("stand-in trainer waiting", flush=True)
time.sleep(600)
"""


def until(condition, what: str, timeout: float = 120, every: float = 0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if got := condition():
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


async def read_until_error(stack, client: Client, job_id: int, timeout: float) -> list[dict]:
    async with websockets.connect(f"{stack.ws}/ws?token={client.token}&topic=job:{job_id}") as ws:
        seen: list[dict] = []
        async with asyncio.timeout(timeout):
            async for text in ws:
                seen.append(json.loads(text))
                if seen[-1]["type"] == "error":
                    return seen
    raise AssertionError(seen)


def test_a_job_whose_trainer_died_while_the_stack_was_down_fails_with_the_reason(
    tmp_path: Path,
):
    trainer = tmp_path / "trainer" / "crucible_trainer"
    trainer.mkdir(parents=True)
    (trainer / "__init__.py").write_text("")
    (trainer / "__main__.py").write_text(TRAINER)
    data = tmp_path / "data"
    data.mkdir()
    env = {
        "CRUCIBLE_RATE_LIMIT_PER_MINUTE": "0",
        "CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        "CRUCIBLE_MAX_ACTIVE_JOBS": "3",
        "CRUCIBLE_LOCAL_TRAINER_PATH": str(trainer.parent),
        "CRUCIBLE_TRAINING_QUEUED_DEADLINE_S": "2",
        "CRUCIBLE_TRAINING_CHECK_INTERVAL_S": "2",
    }
    stack = start_stack(data, env)
    try:
        alice = Client(stack)
        r = alice.http.post(
            "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(8)))]
        )
        assert r.status_code == 201, r.text
        config = {
            "framework": "timm",
            "model_name": "resnet10t",
            "task_type": "image_classification",
            "dataset_id": r.json()["id"],
            "epochs": 1,
        }
        job = alice.http.post("/training/jobs", json={"config": config}).json()
        assert alice.http.post(f"/training/jobs/{job['id']}/start").status_code == 200
        until(
            lambda: alice.http.get(f"/training/jobs/{job['id']}").json()["status"] == "running",
            "the job to run",
        )
    finally:
        stop_stack(stack)
    (record,) = [json.loads(p.read_text()) for p in (data / "jobs").glob("local-*.json")]
    assert Path(f"/proc/{record['pid']}").exists()  # the stack is down; its job lives on
    os.killpg(record["pid"], signal.SIGKILL)  # and dies meanwhile, with nobody watching

    stack = start_stack(data, env)  # on other ports: the same user, token and job
    alice.http.base_url = stack.base + "/api/v1"
    try:
        seen = asyncio.run(read_until_error(stack, alice, job["id"], timeout=120))
        assert seen[-1]["payload"]["status"] == "failed"
        assert LOST in json.dumps(seen[-1]["payload"])
        got = alice.http.get(f"/training/jobs/{job['id']}").json()
        assert got["status"] == "failed" and got["error"] == LOST
        # Seed 002's resume continues a failed job from its checkpoint: this one saved none.
        again = alice.http.post(f"/training/jobs/{job['id']}/start", params={"resume": "true"})
        assert again.status_code == 409 and again.json()["code"] == "NO_CHECKPOINT"
        assert "no checkpoint to resume from" in again.json()["detail"]
    finally:
        stop_stack(stack)
