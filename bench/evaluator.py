"""Evaluator overhead: one small submission (numpy least squares, about a second, printing
a progress line every few milliseconds) through the evaluator's own machinery -- the
sandbox (workspace and its output tmpfs, cgroup, setpriv, prlimit, bwrap with its seccomp
filter, every line captured and stamped), metrics.json read and checked, and an MLflow run
(experiment, tags, params, metrics) on a local SQLite store -- against the same
submission run bare (``python main.py --config config.yaml --output out``) by the same
interpreter, interleaved, after a warm-up of each, N pairs. Prints the median ratio and its spread. No AWS: the job's table writes,
log uploads and pushes are the same whatever the sandbox does, and are left out.

    .venv/bin/python bench/evaluator.py [--runs 7 --size 500 --reps 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "containers" / "evaluator")]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CRUCIBLE_JWT_SECRET", "bench-" + "x" * 40)

SUBMISSION = """
import argparse, json, pathlib, time
import numpy as np
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--output", required=True)
args = ap.parse_args()
cfg = yaml.safe_load(open(args.config))
rng = np.random.default_rng(cfg["seed"])
n, residual = cfg["size"], 0.0
for rep in range(cfg["reps"]):
    a, b = rng.standard_normal((n, n)), rng.standard_normal(n)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual += float(np.linalg.norm(a @ x - b))
    for step in range(50):
        print(f"rep {rep} step {step} residual {residual:.3e}")
out = pathlib.Path(args.output)
(out / "metrics.json").write_text(json.dumps(
    {"params": {"size": n, "reps": cfg["reps"]}, "metrics": {"residual": residual}}))
"""


def sandbox_python() -> str:
    for candidate in (os.environ.get("CRUCIBLE_SANDBOX_PYTHON"), ROOT / ".sandbox/bin/python3"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    sys.exit(
        "no sandbox interpreter: run `make` (it builds .sandbox/) or set CRUCIBLE_SANDBOX_PYTHON"
    )


def bare(python: str, code: Path, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    t0 = time.perf_counter()
    subprocess.run(
        [python, "main.py", "--config", "config.yaml", "--output", str(out)],
        cwd=code,
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )
    elapsed = time.perf_counter() - t0
    assert (out / "metrics.json").exists()
    return elapsed


def evaluated(python: str, code: Path, settings, job, sub, n: int) -> float:
    """What the evaluator does around the submission, minus the AWS calls."""
    from crucible_evaluator.outputs import read_metrics
    from crucible_evaluator.sandbox import Limits, Sandbox, probe
    from crucible_evaluator.tracking import Tracking

    lines: list[str] = []
    t0 = time.perf_counter()
    tracking = Tracking(settings, Path(settings.data_dir))
    tracking.start(job.model_copy(update={"id": f"{job.id}{n}"}), sub)
    limits = Limits.of(settings.resource_classes["small"], settings)
    with Sandbox(probe(python), limits, name=f"bench-{os.getpid()}-{n}") as box:
        for f in code.iterdir():
            (box.code / f.name).write_bytes(f.read_bytes())
        outcome = box.run("main.py", "config.yaml", lambda s, line: lines.append(f"{s} {line}"))
        assert outcome.ok, (outcome, lines[-5:])
        params, metrics = read_metrics(box.out)
    tracking.finish(params, metrics)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="measured pairs")
    ap.add_argument("--size", type=int, default=500, help="the least-squares problem's n")
    ap.add_argument("--reps", type=int, default=40, help="problems solved")
    args = ap.parse_args()

    from shared.models import Evaluation, Submission
    from shared.settings import load_settings

    python = sandbox_python()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        code = work / "code"
        code.mkdir()
        (code / "main.py").write_text(SUBMISSION)
        (code / "config.yaml").write_text(f"seed: 0\nsize: {args.size}\nreps: {args.reps}\n")
        settings = load_settings(
            stage="bench",
            data_dir=str(work),
            mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
            resource_classes="small=600:2048:1",
        )
        sub = Submission(id="bench", owner_id=1, entrypoint="main.py", config_file="config.yaml")
        job = Evaluation(id="bench", owner_id=1, submission_id="bench", resource_class="small")
        bare(python, code, work)  # warm-up: page cache, the interpreter, numpy
        evaluated(python, code, settings, job, sub, 0)  # and MLflow's first database
        full_times, bare_times = [], []
        for n in range(1, args.runs + 1):
            first, second = (bare, evaluated) if n % 2 else (evaluated, bare)
            for fn in (first, second):
                if fn is bare:
                    bare_times.append(bare(python, code, work))
                else:
                    full_times.append(evaluated(python, code, settings, job, sub, n))
    ratios = sorted(f / b for f, b in zip(full_times, bare_times, strict=True))
    overhead_ms = statistics.median(f - b for f, b in zip(full_times, bare_times, strict=True))
    print(
        f"numpy least squares, n={args.size}, {args.reps} problems, {50 * args.reps} lines "
        f"printed; {args.runs} interleaved pairs after a warm-up; {python}"
    )
    print(
        f"  evaluator (sandbox, log capture, metrics.json, MLflow): {statistics.median(full_times):6.2f} s median"
    )
    print(
        f"  bare (python main.py --config ... --output ...):        {statistics.median(bare_times):6.2f} s median"
    )
    print(f"  overhead: {overhead_ms * 1000:.0f} ms median per run")
    print(
        f"  ratio: {statistics.median(ratios):.3f}x median "
        f"(spread {ratios[0]:.3f}x - {ratios[-1]:.3f}x)"
    )


if __name__ == "__main__":
    main()
