"""bench/scale.py at CI size: the real services against the emulator, a small population
at two sizes, one job with subscribers. Every figure must come out OK (no hot key that
grows with the population, no page whose reads grow with the table, no item or message
past its limit, push within the stream function's timeout), and the bench's verdicts
must follow from its figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "scale.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_verdicts_follow_the_figures():
    scale = _bench()
    target = 1_000_000
    # flat: never reaches the limit
    assert scale.verdict([10, 100], [5.0, 5.2], 1000, target) == ("OK", "flat")
    # linear in the population: 1,000 WCU/s at ~10,000 users, before the target
    state, note = scale.verdict([10, 100], [1.0, 10.0], 1000, target)
    assert state == "GROWS" and "10,000" in note
    # grows, but reaches the limit only past the target
    assert scale.verdict([10, 100], [0.001, 0.01], 1000, target)[0] == "OK"
    assert scale.verdict([10, 100], [10.0, 1200.0], 1000, target)[0] == "OVER LIMIT"


def test_item_sizes_follow_dynamodb_rules():
    scale = _bench()
    # name + value: "PK" (2) + "FILE#1" (6); "n" (1) + 3 digits (1 + 2)
    assert scale.item_size({"PK": {"S": "FILE#1"}, "n": {"N": "123"}}) == 2 + 6 + 1 + 3
    assert scale.touched(
        {
            "UpdateExpression": "SET #s0 = :s0, progress = :p REMOVE #r0",
            "ExpressionAttributeNames": {"#s0": "status", "#r0": "lease_until"},
        }
    ) == {"status", "progress", "lease_until"}


@pytest.mark.timeout(
    420
)  # its time follows the emulator's latency: 2.5 min at a load of 15 on 2 cores
def test_quick_run_is_ok(tmp_path):
    out = tmp_path / "scale.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_ENDPOINT"))}
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode in (0, 1), run.stderr[-4000:]
    report = json.loads(out.read_text())
    sizes, push = report["sizes"], report["push"]
    assert [s["users"] for s in sizes] == [2, 20]
    # the recorder saw the workload: analyses wrote, lists read, the push posted
    assert all(s["per_analysis"]["dynamodb_writes"] > 0 for s in sizes)
    assert sizes[-1]["lists"]["first_items"] > 0
    assert [g["files"] for g in sizes[-1]["grown"]] == [300, 600]
    assert push["posts"] >= push["subscribers"]
    assert push["large_validation_message"] > 0
    # the exit status is the verdicts'
    assert (
        (run.returncode == 0) == report["ok"] == all(v == "OK" for v in report["verdicts"].values())
    )
    assert report["ok"], run.stdout
