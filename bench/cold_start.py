"""Cold start of the API Lambda: a fresh process imports the handler and serves its
first request (an API Gateway REST event: GET /api/v1/health, and GET
/api/v1/audio-files/ without a token, a 401 from the largest group of routes: the
handler builds only the routers a path can reach), against the same
routes wired naively — FastAPI + Mangum + Powertools + boto3, every client and service
created at import (bench/naive_app.py) — measured alternately in the same run, after one
uncounted run of each (bytecode caches, the page cache). Each pair (order alternating)
gives a ratio; the median ratio and its spread are the figure. Wall time is what a
caller waits; CPU time (the process's own) is what it costs, and holds steady on a busy
machine where wall time does not. Target: ratio <= 0.5.

    .venv/bin/python bench/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from {module} import handler
t1 = time.perf_counter()
event = {{
    "resource": "/{{proxy+}}", "path": {path!r}, "httpMethod": "GET",
    "headers": {{"Host": "api.example.com", "Accept": "application/json"}},
    "multiValueHeaders": {{}}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
    "pathParameters": {{"proxy": {path!r}[1:]}}, "stageVariables": None, "body": None,
    "isBase64Encoded": False,
    "requestContext": {{"resourcePath": "/{{proxy+}}", "httpMethod": "GET", "path": "/prod" + {path!r},
        "stage": "prod", "requestId": "r1", "identity": {{"sourceIp": "127.0.0.1"}}}},
}}
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
out = handler(event, Ctx())
t2, c2 = time.perf_counter(), time.process_time()
assert out["statusCode"] in (200, 401), out
print(json.dumps({{"init": t1 - t0, "total": t2 - t0, "cpu": c2 - c0}}))
"""


def run_once(module: str, path: str) -> dict[str, float]:
    env = {
        **os.environ,
        "CRUCIBLE_JWT_SECRET": "bench-secret-" + "x" * 32,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    code = PROBE.format(root=str(ROOT), bench=str(ROOT / "bench"), module=module, path=path)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument(
        "--path", action="append", help="first request's path (repeatable; default: both)"
    )
    args = ap.parse_args()
    for path in args.path or ["/api/v1/health", "/api/v1/audio-files/"]:
        measure(path, args.runs)


def measure(path: str, runs: int) -> None:
    modules = {"crucible": "functions.api.handler", "naive": "naive_app"}
    for m in modules.values():  # warm the bytecode caches so both start alike
        run_once(m, path)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in modules}
    for i in range(runs):
        for name in list(modules) if i % 2 == 0 else list(modules)[::-1]:
            samples[name].append(run_once(modules[name], path))
    print(f"cold init + first GET {path}: {runs} pairs of fresh processes, order alternating")
    for metric, label in (("total", "wall"), ("cpu", "CPU ")):
        ours = [s[metric] for s in samples["crucible"]]
        naive = [s[metric] for s in samples["naive"]]
        ratios = [o / n for o, n in zip(ours, naive, strict=True)]
        print(
            f"  {label}: crucible (functions.api.handler) {statistics.median(ours) * 1000:7.1f} ms, "
            f"naive eager app (bench/naive_app) {statistics.median(naive) * 1000:7.1f} ms; "
            f"ratio median {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})  (target <= 0.50x)"
        )


if __name__ == "__main__":
    main()
