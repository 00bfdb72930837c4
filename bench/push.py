"""Push latency on the local stack: a progress event's time from its creation (in a
process of its own, as a trainer publishes it: ``PushService.publish``, a DynamoDB
write) to a WebSocket client following the job on seed 003's ``/ws/workflows/{id}``.

It starts ``python -m functions.local`` on a fresh data directory, registers a user,
creates a training job (not started) and follows it; then publishes progress events at
irregular intervals (50-600 ms apart, as a trainer's throttled progress goes, each round
starting after an idle pause), in rounds. Interleaved with each event, the baseline:
the same socket's WebSocket ping/pong round trip (the transport's own floor), and the
publisher's write alone. Prints p50/p95/max over all events, and each round's p50 as
the spread. Target: p50 <= 50 ms.

    .venv/bin/python bench/push.py [--rounds 4 --events 30 --idle 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

P50_TARGET_MS = 50.0


def start_stack(
    work: Path, timeout: float = 120, **settings: str
) -> tuple[subprocess.Popen, str, str, Path]:
    """``python -m functions.local`` on a fresh data directory; ``settings`` are CRUCIBLE_
    variables (rate limits off unless given)."""
    from functions.local.emulator import free_port

    data_dir = work / "data"
    port, emu_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_"))}
    env.update(CRUCIBLE_RATE_LIMIT_PER_MINUTE="0", CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE="0")
    env.update({f"CRUCIBLE_{k.upper()}": v for k, v in settings.items()})
    cmd = [
        *(sys.executable, "-m", "functions.local"),
        *("--port", str(port), "--emulator-port", str(emu_port)),
        *("--data-dir", str(data_dir), "--mlflow-port", "0"),
        *("--ministack", str(ROOT / ".ministack" / "bin" / "ministack")),
    ]
    log = work / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the local stack exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/api/v1/health", timeout=2).status_code == 200:
                return proc, base, f"http://127.0.0.1:{emu_port}", data_dir
        time.sleep(0.25)
    stop(proc)
    raise SystemExit(f"the local stack did not come up within {timeout:.0f} s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # stops its emulator cleanly
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def user_and_job(base: str) -> tuple[str, int, int]:
    """A new user's token, id, and a training job of theirs (created, not started)."""
    from tests import datasets as make

    http = httpx.Client(base_url=base + "/api/v1", timeout=60)
    email, password = f"{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex
    r = http.post("/auth/register", json={"email": email, "password": password})
    r.raise_for_status()
    uid = r.json()["id"]
    token = http.post("/auth/login", json={"email": email, "password": password}).json()
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    archive = make.imagefolder(per_class=3)
    ds = http.post(
        "/datasets", data={"name": "push"}, files=[("files", ("d.zip", io.BytesIO(archive)))]
    )
    ds.raise_for_status()
    job = http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": ds.json()["id"],
                "epochs": 1,
            }
        },
    )
    job.raise_for_status()
    return token["access_token"], uid, job.json()["id"]


def publisher(emulator: str, data_dir: Path):
    """The push service as a trainer's process builds it, against the stack's emulator."""
    from functions.local.emulator import credentials

    os.environ.update(
        AWS_ENDPOINT_URL=emulator,
        AWS_DEFAULT_REGION="us-east-1",
        CRUCIBLE_STAGE="local",
        CRUCIBLE_DATA_DIR=str(data_dir),
        CRUCIBLE_JWT_SECRET=(data_dir / "jwt-secret").read_text().strip(),
        **credentials(data_dir / "aws").environ(),
    )
    from shared.settings import load_settings
    from shared.wiring import build

    return build(load_settings()).push


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(ws_url: str, push, job_id: int, uid: int, args) -> dict[str, list]:
    import websockets

    from shared.events import ProgressEvent

    out: dict[str, list] = {"push": [], "ping": [], "write": [], "rounds": []}
    async with websockets.connect(ws_url) as ws:
        arrived: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            async for text in ws:
                now = time.time()
                msg = json.loads(text)
                if msg.get("type") == "training_progress" and "bench_t" in msg["data"]:
                    await arrived.put((msg["data"]["bench_seq"], now - msg["data"]["bench_t"]))

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        seq = 0

        async def one(count: bool) -> None:
            nonlocal seq
            seq += 1
            event = ProgressEvent(
                topic=f"job:{job_id}",
                kind="progress",
                event_id=uuid.uuid4().hex,
                also=[f"user:{uid}"],  # as the trainer's events go to the owner's /ws too
                data={"epoch": 1, "step": seq, "bench_seq": seq, "bench_t": time.time()},
            )
            t0 = time.perf_counter()
            await loop.run_in_executor(None, push.publish, event)
            write = time.perf_counter() - t0
            got_seq, latency = await asyncio.wait_for(arrived.get(), 30)
            assert got_seq == seq, (got_seq, seq)
            t0 = time.perf_counter()
            await (await ws.ping())  # the baseline: this socket's own round trip
            ping = time.perf_counter() - t0
            if count:
                out["push"].append(latency * 1000)
                out["write"].append(write * 1000)
                out["ping"].append(ping * 1000)

        for _ in range(5):  # warm: connections, caches, the dispatcher's pace
            await one(False)
            await asyncio.sleep(0.1)
        for _ in range(args.rounds):
            await asyncio.sleep(args.idle)  # a round starts after a quiet spell
            first = len(out["push"])
            for _ in range(args.events):
                await one(True)
                await asyncio.sleep(random.uniform(0.05, 0.6))  # noqa: S311 - pacing only
            out["rounds"].append(statistics.median(out["push"][first:]))
        reader.cancel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--events", type=int, default=30, help="events per round")
    ap.add_argument("--idle", type=float, default=3.0, help="quiet seconds before each round")
    args = ap.parse_args()
    random.seed(14)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base, emulator, data_dir = start_stack(Path(tmp))
        try:
            token, uid, job_id = user_and_job(base)
            push = publisher(emulator, data_dir)
            ws_url = base.replace("http", "ws", 1) + f"/ws/workflows/{job_id}?token={token}"
            out = asyncio.run(measure(ws_url, push, job_id, uid, args))
        finally:
            stop(proc)
    n = len(out["push"])
    print(
        f"progress event: creation -> WebSocket client (seed 003's /ws/workflows), local stack; "
        f"{args.rounds} rounds of {args.events} events after {args.idle:g} s idle, 5 warm-up"
    )
    for name, label in (
        ("push", "push latency        "),
        ("write", "  of it, the write   "),
        ("ping", "baseline: ws ping RTT"),
    ):
        v = out[name]
        print(
            f"  {label}: p50 {statistics.median(v):6.1f} ms  p95 {pct(v, 95):6.1f} ms  "
            f"max {max(v):6.1f} ms  (n={n})"
        )
    rounds = ", ".join(f"{r:.1f}" for r in out["rounds"])
    p50 = statistics.median(out["push"])
    print(f"  per-round p50: {rounds} ms")
    print(
        f"  p50 {p50:.1f} ms = {p50 / statistics.median(out['ping']):.1f}x the socket's own "
        f"round trip  (target p50 <= {P50_TARGET_MS:.0f} ms: {'met' if p50 <= P50_TARGET_MS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
