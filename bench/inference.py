"""Inference overhead on the local stack: a warm ``POST /api/v1/test-inference`` on a
small classifier (resnet10t, trained here for one epoch on 64 px images), end to end as
a client sees it, against the time spent inside the model (the answer's
``inference_time_ms``, measured around ``Model.predict``) in the same call. The
platform's share is the difference: HTTP, auth, rate limit, the job and checkpoint
look-ups, the predictor hand-off. Interleaved with each call, the baseline of the same
client's ``GET /api/v1/health`` (the HTTP floor of the dev server).

Warm: the model is loaded and cached by a first few calls (uncounted). Then rounds of
calls; medians with each round's median as the spread. Target: <= 10 ms of platform
per warm call. Beside the wall times, the CPU the stack's process spent per call
(``/proc``; the model's own CPU included), which a busy machine disturbs less.

    .venv/bin/python bench/inference.py [--rounds 5 --calls 20]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import cpu_seconds  # noqa: E402
from bench.push import start_stack, stop  # noqa: E402 - the same local stack

TARGET_MS = 10.0


def client(base: str) -> httpx.Client:
    http = httpx.Client(base_url=base + "/api/v1", timeout=120)
    email, password = f"{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex
    http.post("/auth/register", json={"email": email, "password": password}).raise_for_status()
    token = http.post("/auth/login", json={"email": email, "password": password}).json()
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    return http


def trained_job(http: httpx.Client, timeout: float = 600) -> int:
    from tests import datasets as make

    ds = http.post(
        "/datasets",
        data={"name": "bench"},
        files=[("files", ("d.zip", io.BytesIO(make.imagefolder(per_class=8))))],
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
                "batch_size": 8,
                "advanced_config": {"image_size": 64},
            }
        },
    )
    job.raise_for_status()
    jid = job.json()["id"]
    http.post(f"/training/jobs/{jid}/start").raise_for_status()
    deadline = time.monotonic() + timeout
    while (status := http.get(f"/training/jobs/{jid}").json()["status"]) != "completed":
        if status in ("failed", "stopped") or time.monotonic() > deadline:
            raise SystemExit(f"the job to predict with ended {status}")
        time.sleep(0.5)
    return jid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20, help="calls per round")
    args = ap.parse_args()
    from tests import datasets as make

    image = make.png("circle", seed=99)
    e2e, model, health, rounds = [], [], [], []
    cpu: dict[str, list[float]] = {"infer": [], "health": []}
    with tempfile.TemporaryDirectory() as tmp:
        # requests counted against a rate limit as usual, one too high to refuse any
        proc, base, _, _ = start_stack(Path(tmp), timeout=300, rate_limit_per_minute="1000000")
        try:
            http = client(base)
            jid = trained_job(http)

            def infer() -> tuple[float, float]:
                t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
                r = http.post(
                    "/test-inference",
                    data={"training_job_id": jid, "top_k": 1},
                    files={"file": ("c.png", image, "image/png")},
                )
                elapsed = (time.perf_counter() - t0) * 1000
                cpu["infer"].append((cpu_seconds(proc.pid) - c0) * 1000)
                assert r.status_code == 200, r.text
                return elapsed, float(r.json()["inference_time_ms"])

            def floor() -> float:
                t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
                http.get("/health").raise_for_status()
                cpu["health"].append((cpu_seconds(proc.pid) - c0) * 1000)
                return (time.perf_counter() - t0) * 1000

            for _ in range(5):  # warm: the model loads and stays cached; connections open
                infer()
                floor()
            cpu = {"infer": [], "health": []}
            for _ in range(args.rounds):
                platform = []
                for _ in range(args.calls):
                    total, inside = infer()
                    health.append(floor())
                    e2e.append(total)
                    model.append(inside)
                    platform.append(total - inside)
                rounds.append(statistics.median(platform))
        finally:
            stop(proc)
    overhead = [t - m for t, m in zip(e2e, model, strict=True)]
    n = len(e2e)

    def line(label: str, v: list[float]) -> str:
        q = statistics.quantiles(v, n=20, method="inclusive")
        return f"  {label}: median {statistics.median(v):6.1f} ms  p95 {q[18]:6.1f} ms  (n={n})"

    print(
        f"warm POST /test-inference, resnet10t 64 px classifier, local stack; "
        f"{args.rounds} rounds of {args.calls} after 5 warm-up calls"
    )
    print(line("end to end                 ", e2e))
    print(line("inside the model           ", model))
    print(line("platform (end to end - model)", overhead))
    print(line("baseline: GET /health      ", health))
    print(f"  per-round platform median: {', '.join(f'{r:.1f}' for r in rounds)} ms")
    print(
        f"  stack CPU per call (model included): /test-inference "
        f"{statistics.mean(cpu['infer']):.1f} ms, /health {statistics.mean(cpu['health']):.1f} ms"
    )
    p = statistics.median(overhead)
    print(
        f"  platform {p:.1f} ms per call = {p / statistics.median(health):.1f}x a bare /health "
        f"request  (target <= {TARGET_MS:.0f} ms: {'met' if p <= TARGET_MS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
