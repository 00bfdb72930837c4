"""Seed 004's leaderboard against the local stack, as researchers use it: submissions over
multipart, jobs run by the sandboxed evaluator, status, logs, results (with the MLflow
run behind them), the ranking, live progress on a WebSocket, the seed's limits, cancel and
re-run; hostile submissions end failed with a reason while the platform keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import Client

pytestmark = pytest.mark.e2e

CONFIG = b"dataset: mvtec_ad\nbackbone: resnet18\n"

# The seed's own example of an entrypoint, reading its config and writing metrics.json.
MAIN = b"""
import argparse, json, sys
from pathlib import Path

import numpy as np
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--output", required=True)
args = ap.parse_args()
cfg = yaml.safe_load(open(args.config))
print("Loading dataset...", cfg["dataset"])
print("a warning on stderr", file=sys.stderr)
score = float(np.clip(np.mean([0.97, 0.98, SCORE]), 0, 1))
out = Path(args.output)
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({
    "params": {"method": "padim", "dataset": cfg["dataset"], "backbone": cfg["backbone"]},
    "metrics": {"image_auc": score, "pixel_auc": 0.9},
}))
print("Job completed")
"""


def main_py(score: float) -> bytes:
    return MAIN.replace(b"SCORE", str(score).encode())


def submit(http: httpx.Client, files, entrypoint="main.py", config="config.yaml", metadata=None):
    data = {"entrypoint": entrypoint, "config_file": config}
    if metadata is not None:
        data["metadata"] = json.dumps(metadata)
    return http.post("/submissions", data=data, files=[("files", f) for f in files])


def wait_job(
    http: httpx.Client, job_id: str, statuses=("completed", "failed", "cancelled"), timeout=180
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = http.get(f"/jobs/{job_id}/status")
        assert r.status_code == 200, r.text
        if r.json()["status"] in statuses:
            return r.json()
        time.sleep(0.5)
    raise AssertionError(r.json())


def run(http: httpx.Client, files, resource_class="small", **kw) -> tuple[str, dict]:
    r = submit(http, files, **kw)
    assert r.status_code == 200, r.text
    sid = r.json()["submission_id"]
    r = http.post(
        "/jobs", json={"submission_id": sid, "config": {"resource_class": resource_class}}
    )
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    return sid, wait_job(http, r.json()["job_id"])


@pytest.fixture
def seed(stack) -> httpx.Client:
    """Seed 004's client: its root paths, a static API token (API_TOKENS)."""
    return httpx.Client(
        base_url=stack.base, headers={"Authorization": "Bearer ci-token-0123456789"}, timeout=60
    )


def at_root(client: Client) -> httpx.Client:
    return httpx.Client(
        base_url=client.stack.base, headers={"Authorization": f"Bearer {client.token}"}, timeout=60
    )


def under_v1(client: Client) -> httpx.Client:
    return httpx.Client(
        base_url=client.stack.base + "/api/v1/leaderboard",
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=60,
    )


def test_a_good_submission_ranks_with_its_metrics_and_mlflow_has_the_run(stack, seed):
    board = f"b{time.time_ns()}"
    files = [("main.py", main_py(0.99)), ("config.yaml", CONFIG)]
    r = submit(seed, files, metadata={"method": "padim", "leaderboard": board})
    assert r.status_code == 200, r.text
    sid = r.json()["submission_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", sid)

    async def follow_then_create():
        # Live progress: the job topic, the browser way (token in the subprotocol).
        created = seed.post(
            "/jobs", json={"submission_id": sid, "config": {"resource_class": "small"}}
        )
        assert created.status_code == 200 and created.json() == {
            "job_id": created.json()["job_id"],
            "status": "pending",
        }
        job_id = created.json()["job_id"]
        seen = []
        async with websockets.connect(
            f"{stack.ws}/api/v1/ws?topic=job:{job_id}",
            subprotocols=["bearer", "ci-token-0123456789"],
        ) as ws:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                except TimeoutError:
                    if seed.get(f"/jobs/{job_id}/status").json()["status"] == "completed":
                        break
                    continue
                seen.append(msg)
                if msg["data"].get("status") in ("completed", "failed"):
                    break
        return job_id, seen

    job_id, seen = asyncio.run(follow_then_create())
    job = wait_job(seed, job_id)
    assert job["status"] == "completed", job
    assert job["submission_id"] == sid and job["run_id"] and job.get("error") is None
    assert job["created_at"] <= job["updated_at"]
    # Pushed: the end at least (what came before may precede the socket), in the job topic.
    assert seen and seen[-1]["data"]["status"] == "completed", seen
    assert all(m["topic"] == f"job:{job_id}" for m in seen)

    logs = seed.get(f"/jobs/{job_id}/logs")
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    lines = logs.text.splitlines()
    assert all(re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ", line) for line in lines), lines
    assert any("Loading dataset... mvtec_ad" in line for line in lines)
    assert any("a warning on stderr" in line for line in lines)  # stderr too

    results = seed.get(f"/jobs/{job_id}/results").json()
    assert results["run_id"] == job["run_id"]
    assert results["metrics"]["image_auc"] == pytest.approx((0.97 + 0.98 + 0.99) / 3)
    assert results["params"] == {"method": "padim", "dataset": "mvtec_ad", "backbone": "resnet18"}
    assert results["mlflow_ui_link"].startswith(stack.mlflow_ui + "/#/experiments/")
    # The REST link answers from the MLflow server `make dev` serves, with the same run.
    deadline = time.monotonic() + 90
    while True:
        try:
            got = httpx.get(results["mlflow_rest_link"], timeout=10)
            if got.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the MLflow UI did not answer"
        time.sleep(1)
    run = got.json()["run"]
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["image_auc"] == pytest.approx(
        results["metrics"]["image_auc"]
    )
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["submission_id"] == sid and tags["job_id"] == job_id

    ranked = seed.get("/leaderboard", params={"board": board, "metric": "image_auc"}).json()
    assert ranked["metric"] == "image_auc" and ranked["total"] == 1
    top = ranked["entries"][0]
    assert top["rank"] == 1 and top["job_id"] == job_id and top["metadata"]["method"] == "padim"
    assert top["mlflow_ui_link"] == results["mlflow_ui_link"]


def test_a_zip_with_a_package_ranks_best_per_user_and_filters_on_params(stack):
    board = f"z{time.time_ns()}"
    alice, bob = Client(stack), Client(stack)
    pkg = io.BytesIO()
    with zipfile.ZipFile(pkg, "w") as z:
        z.writestr("scorer/__init__.py", "def score():\n    return 0.5\n")
        z.writestr("scorer/extra.py", "BONUS = 0.25\n")
    entry = b"""
import argparse, json
from pathlib import Path
from scorer import score
from scorer.extra import BONUS
ap = argparse.ArgumentParser(); ap.add_argument("--config"); ap.add_argument("--output")
a = ap.parse_args()
Path(a.output, "metrics.json").write_text(json.dumps(
    {"params": {"dataset": "other"}, "metrics": {"image_auc": score() + BONUS}}))
"""
    v1 = under_v1(alice)
    _, done = run(
        v1,
        [("run.py", entry), ("pkg.zip", pkg.getvalue()), ("cfg.yml", b"x: 1\n")],
        entrypoint="run.py",
        config="cfg.yml",
        metadata={"leaderboard": board},
    )
    assert done["status"] == "completed", done
    # a .tar.gz holding the entrypoint and config in a folder
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        for name, body in (("src/main.py", main_py(0.80)), ("src/config.yaml", CONFIG)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    for client, files, kw in (
        (alice, [("main.py", main_py(0.9)), ("config.yaml", CONFIG)], {}),
        (
            bob,
            [("code.tar.gz", tgz.getvalue())],
            {"entrypoint": "src/main.py", "config": "src/config.yaml"},
        ),
    ):
        _, done = run(under_v1(client), files, metadata={"leaderboard": board}, **kw)
        assert done["status"] == "completed", done

    ranking = httpx.get(
        stack.api("/leaderboard"),
        params={"board": board, "metric": "image_auc"},
        headers={"Authorization": f"Bearer {bob.token}"},
    ).json()
    # best per user: alice's 0.9 (not her 0.75), then bob's 0.85
    assert [(e["user_id"], round(e["score"], 3)) for e in ranking["entries"]] == [
        (alice.id, round((0.97 + 0.98 + 0.9) / 3, 3)),
        (bob.id, round((0.97 + 0.98 + 0.8) / 3, 3)),
    ]
    every = httpx.get(
        stack.api("/leaderboard"),
        params={"board": board, "metric": "image_auc", "every_run": "true", "order": "asc"},
        headers={"Authorization": f"Bearer {bob.token}"},
    ).json()
    assert [round(e["score"], 3) for e in every["entries"]] == [0.75, 0.917, 0.95]
    assert len(every["entries"]) == 3
    only = httpx.get(
        stack.api("/leaderboard"),
        params={"board": board, "metric": "image_auc", "param.dataset": "other"},
        headers={"Authorization": f"Bearer {bob.token}"},
    ).json()
    assert [e["score"] for e in only["entries"]] == [0.75]


def test_limits_cancel_and_rerun(stack):
    client = Client(stack)
    http = at_root(client)
    sleeper = b"import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"
    sid = submit(http, [("main.py", sleeper), ("config.yaml", CONFIG)]).json()["submission_id"]
    jobs = []
    for _ in range(3):
        r = http.post("/jobs", json={"submission_id": sid, "config": {"resource_class": "medium"}})
        assert r.status_code == 200, r.text
        jobs.append(r.json()["job_id"])
    fourth = http.post("/jobs", json={"submission_id": sid, "config": {}})
    assert fourth.status_code == 429, fourth.text
    assert "at most 3" in fourth.json()["detail"]
    assert fourth.headers["Retry-After"] and fourth.headers["X-RateLimit-Limit"] == "3"
    assert fourth.headers["X-RateLimit-Remaining"] == "0" and fourth.headers["X-RateLimit-Reset"]

    # cancel: a running job ends cancelled and its evaluator stops; its slot comes back
    wait_job(http, jobs[0], statuses=("running",))
    cancelled = http.post(f"/jobs/{jobs[0]}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = http.post(f"/jobs/{jobs[0]}/cancel")
    assert again.status_code == 409
    for j in jobs[1:]:
        assert http.post(f"/jobs/{j}/cancel").json()["status"] == "cancelled"
    # re-run of an ended job: a new job of the same submission
    rerun = http.post(f"/jobs/{jobs[0]}/rerun")
    assert rerun.status_code == 200, rerun.text
    new = rerun.json()["job_id"]
    status = http.get(f"/jobs/{new}/status").json()
    assert status["rerun_of"] == jobs[0] and status["submission_id"] == sid
    assert http.post(f"/jobs/{new}/rerun").status_code == 409  # not ended yet
    assert http.post(f"/jobs/{new}/cancel").json()["status"] == "cancelled"
    listed = http.get("/jobs").json()["jobs"]
    assert [j["job_id"] for j in listed][:1] == [new]

    # 10 submissions in any 60 minutes (one made above): the 11th is refused
    for _ in range(9):
        assert submit(http, [("main.py", sleeper), ("config.yaml", CONFIG)]).status_code == 200
    refused = submit(http, [("main.py", sleeper), ("config.yaml", CONFIG)])
    assert refused.status_code == 429 and "at most 10" in refused.json()["detail"]
    assert 3000 < int(refused.headers["Retry-After"]) <= 3601
    assert refused.headers["X-RateLimit-Limit"] == "10"


def test_another_users_jobs_and_submissions_are_not_theirs(stack, seed):
    owner, other = Client(stack), Client(stack)
    sid, done = run(at_root(owner), [("main.py", main_py(0.5)), ("config.yaml", CONFIG)])
    job_id = done["job_id"]
    them = at_root(other)
    for path in ("status", "logs", "results"):
        assert them.get(f"/jobs/{job_id}/{path}").status_code == 404
    assert them.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert them.post(f"/jobs/{job_id}/rerun").status_code == 404
    r = them.post("/jobs", json={"submission_id": sid, "config": {}})
    assert r.status_code == 400 and "does not exist" in r.json()["detail"]

    # a topic of someone else's job cannot be followed
    async def follow():
        async with websockets.connect(
            f"{stack.ws}/api/v1/ws?topic=job:{job_id}", subprotocols=["bearer", other.token]
        ) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus):
        asyncio.run(follow())
    assert seed.get("/jobs/nonexistent1/status").status_code == 404
    assert seed.get("/jobs/../../etc/status").status_code == 404


@pytest.mark.parametrize(
    ("files", "fields", "needle"),
    [
        (
            [("main.sh", b"echo hi"), ("config.yaml", CONFIG)],
            {"entrypoint": "main.sh"},
            "not allowed",
        ),
        ([("main.py", b"print(1)")], {}, "config_file 'config.yaml' is not among the files"),
        (
            [("main.py", b"print(1)"), ("config.yaml", CONFIG)],
            {"entrypoint": "../main.py"},
            "relative path",
        ),
        ([("main.py", b"print(1)"), ("config.yaml", CONFIG)], {"metadata": "[1"}, "not valid JSON"),
        ([("x.zip", b"not a zip"), ("config.yaml", CONFIG)], {}, "cannot be read"),
    ],
)
def test_bad_submissions_get_400_with_what_to_fix(seed, files, fields, needle):
    data = {"entrypoint": "main.py", "config_file": "config.yaml", **fields}
    r = seed.post("/submissions", data=data, files=[("files", f) for f in files])
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]


def test_unsafe_archives_and_bad_jobs_are_refused(seed):
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as z:
        z.writestr("../evil.py", "print(1)")
    r = submit(
        seed, [("main.py", b"print(1)"), ("config.yaml", CONFIG), ("a.zip", slip.getvalue())]
    )
    assert r.status_code == 400 and "Unsafe path" in r.json()["detail"]
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tf:
        info = tarfile.TarInfo("config.yaml")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    r = submit(seed, [("main.py", b"print(1)"), ("c.tar.gz", link.getvalue())])
    assert r.status_code == 400 and "link" in r.json()["detail"]
    sid = submit(seed, [("main.py", b"print(1)"), ("config.yaml", CONFIG)]).json()["submission_id"]
    r = seed.post("/jobs", json={"submission_id": sid, "config": {"resource_class": "huge"}})
    assert r.status_code == 400 and "small" in r.json()["detail"]
    r = seed.post("/jobs", json={"submission_id": "abc123def456", "config": {}})
    assert r.status_code == 400


HOSTILE = {
    # the API port on loopback, and an outside address: no network at all
    # the API port on loopback and an outside address (no network at all), the platform's
    # environment and the local stack's secret files (none of it visible), writes outside
    # its output (read-only or absent): what it could legitimately do, it did
    "escape": (
        b"""
import argparse, json, os, socket
import yaml
ap = argparse.ArgumentParser(); ap.add_argument("--config"); ap.add_argument("--output"); a = ap.parse_args()
cfg = yaml.safe_load(open(a.config))
connected = 0
for host, port in (("127.0.0.1", cfg["port"]), ("1.1.1.1", 53)):
    try:
        socket.create_connection((host, port), timeout=2).close(); connected += 1
    except OSError as e:
        print("refused:", host, e)
env = [k for k in os.environ if k.startswith(("AWS", "CRUCIBLE", "MLFLOW", "API_TOKENS"))]
read = 0
for path in (cfg["secret"], cfg["credentials"]):
    try:
        read += len(open(path, "rb").read()) > 0
        print("READ", path)
    except OSError as e:
        print("unreadable:", path, e)
for path in ("/proc/1/environ", "/proc/self/environ"):  # the sandbox's own processes only
    data = open(path, "rb").read()
    read += any(k in data for k in (b"AWS_", b"CRUCIBLE", b"MLFLOW", b"JWT"))
written = 0
for path in ("/code/x.py", "/usr/x", "/x", cfg["secret"] + ".new"):
    try:
        open(path, "w").write("x"); written += 1
    except OSError as e:
        print("unwritable:", path, e)
json.dump({"params": {"env": ",".join(env)},
           "metrics": {"connected": connected, "env": len(env), "read": read, "written": written}},
          open(a.output + "/metrics.json", "w"))
""",
        "completed",
        None,
    ),
    "no_metrics": (b"print('done, but wrote nothing')\n", "failed", "metrics.json"),
    "crash": (b"raise SystemExit(3)\n", "failed", "status 3"),
    "sleeps": (b"import time\nprint('zzz', flush=True)\ntime.sleep(600)\n", "failed", "Timed out"),
    "memory": (
        b"x = bytearray(2 * 1024**3)\nx[::4096] = b'1' * len(x[::4096])\n",
        "failed",
        "memory",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_submissions_end_contained_and_the_platform_keeps_serving(stack, seed, case):
    body, status, needle = HOSTILE[case]
    port = stack.base.rsplit(":", 1)[1]
    config = (
        f"port: {port}\nsecret: {stack.data_dir / 'jwt-secret'}\n"
        f"credentials: {stack.data_dir / 'aws' / 'credentials'}\n"
    ).encode()
    cls = "tiny" if case == "sleeps" else "small"
    _, done = run(seed, [("main.py", body), ("config.yaml", config)], resource_class=cls)
    assert done["status"] == status, done
    if needle:
        assert needle in done["error"], done
    if case == "escape":
        results = seed.get(f"/jobs/{done['job_id']}/results").json()
        assert results["metrics"] == {"connected": 0, "env": 0, "read": 0, "written": 0}, results
        assert not (stack.data_dir / "jwt-secret.new").exists()
    logs = seed.get(f"/jobs/{done['job_id']}/logs")
    assert logs.status_code == 200 and logs.text.strip()
    assert seed.get("/leaderboard").status_code == 200  # still serving


def _evaluator_pid(job_id: str, timeout: float = 60) -> int:
    """The evaluator process of a job the local runner started (not the shell around it
    that keeps its exit status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["pgrep", "-f", f"crucible_evaluator --job-id {job_id}"], capture_output=True, text=True
        ).stdout.split()
        for pid in found:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() != "sh":
                    return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no evaluator for {job_id}")


SLEEPER = b"import time\nprint('working', flush=True)\ntime.sleep(600)\n"


def test_an_evaluator_killed_mid_run_still_ends_its_job_with_a_reason(seed):
    sid = submit(seed, [("main.py", SLEEPER), ("config.yaml", CONFIG)]).json()["submission_id"]
    job_id = seed.post("/jobs", json={"submission_id": sid, "config": {}}).json()["job_id"]
    wait_job(seed, job_id, statuses=("running",))
    deadline = time.monotonic() + 60  # killed once the submission runs (its log says so)
    while "working" not in (seed.get(f"/jobs/{job_id}/logs").text or ""):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.kill(_evaluator_pid(job_id), signal.SIGKILL)
    done = wait_job(seed, job_id, timeout=60)
    assert done["status"] == "failed" and "signal 9" in done["error"], done
    assert "working" in seed.get(f"/jobs/{job_id}/logs").text  # the log up to that point


def test_a_job_whose_evaluator_hangs_is_ended_by_the_sweeper(seed):
    """SIGSTOP: the evaluator neither finishes nor dies, so neither it nor the runner can
    end the job; the sweeper does, at its deadline (class tiny: 3 s, grace 20 s)."""
    sid = submit(seed, [("main.py", SLEEPER), ("config.yaml", CONFIG)]).json()["submission_id"]
    job_id = seed.post(
        "/jobs", json={"submission_id": sid, "config": {"resource_class": "tiny"}}
    ).json()["job_id"]
    pid = _evaluator_pid(job_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        done = wait_job(seed, job_id, timeout=90)
        assert done["status"] == "failed" and "did not finish within" in done["error"], done
        assert "3 s" in done["error"] and "20 s of grace" in done["error"]
    finally:
        os.kill(pid, signal.SIGKILL)
