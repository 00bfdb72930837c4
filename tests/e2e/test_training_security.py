"""Training jobs against another user, over HTTP on the local stack: no resuming from
someone else's checkpoint (and no telling whether it exists), no internal fields set by
requests, no project of someone else's; a cap on active jobs and seed 000's one run at
a time, both holding under concurrent requests; a refused request changes nothing."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests import datasets as make
from tests.conftest import ROOT, Client
from tests.e2e.live import wait_for_status

pytestmark = pytest.mark.e2e

CAP = 3  # CRUCIBLE_MAX_ACTIVE_JOBS in the test stack (tests/conftest.py)
START = "/training/jobs/{}/start"


def as_operator(stack, code: str, *args: str) -> str:
    """Run ``code`` (with ``c``, the stack's container, and ``args``) in a process that
    reaches the emulator as the operator's tools do (the data directory's credentials);
    what it prints."""
    prelude = (
        "import sys; from pathlib import Path\n"
        "from functions.local.server import local_environment\n"
        "local_environment(Path(sys.argv[1]), sys.argv[2])\n"
        "from shared.settings import load_settings\n"
        "from shared.wiring import build\n"
        "c = build(load_settings()); args = sys.argv[3:]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_"))}
    out = subprocess.run(
        [sys.executable, "-c", prelude + code, str(stack.data_dir), stack.emulator_endpoint, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def put_artifacts(stack, *keys: str) -> None:
    """Objects at ``keys`` in the stack's artifacts bucket."""
    as_operator(stack, "for key in args: c.artifacts.put(key, b'not a checkpoint')", *keys)


def stored_config(stack, job_id: int) -> dict:
    """The job item's advanced_config as stored (not as the API shows it)."""
    code = "import json; print(json.dumps(c.job_repository.get(int(args[0])).advanced_config))"
    return json.loads(as_operator(stack, code, str(job_id)))


def images(client) -> dict:
    r = client.http.post(
        "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(3)))]
    )
    assert r.status_code == 201, r.text
    return r.json()


def new_job(client, dataset, *, epochs=1, advanced=None, **top) -> dict:
    return client.http.post(
        "/training/jobs",
        json={
            **top,
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": dataset["id"],
                "epochs": epochs,
                "batch_size": 4,
                "advanced_config": {"image_size": 32, **(advanced or {})},
            },
        },
    )


def job(client, dataset, **kwargs) -> dict:
    r = new_job(client, dataset, **kwargs)
    assert r.status_code == 201, r.text
    return r.json()


def said(r) -> tuple:
    """What an error answer says, without its request id."""
    body = r.json()
    return r.status_code, body["detail"], body["code"], body.get("field")


def all_at_once(calls):
    """Send the requests from threads released together; the answers in order."""
    barrier, answers = threading.Barrier(len(calls)), [None] * len(calls)

    def send(i, call):
        barrier.wait()
        answers[i] = call()

    threads = [threading.Thread(target=send, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def stop_all(client, job_ids) -> None:
    for jid in job_ids:
        client.http.post(f"/training/stop/{jid}")
    for jid in job_ids:
        assert wait_for_status(client, jid, {"stopped", "failed", "completed"}, timeout=300)


def test_no_resuming_from_a_checkpoint_of_someone_elses(stack, alice, bob):
    theirs = job(bob, images(bob))
    key = f"jobs/{theirs['id']}/checkpoints/last.pt"
    put_artifacts(stack, key)
    mine = job(alice, images(alice))
    probes = [
        key,  # exists, bob's
        f"jobs/{theirs['id']}/checkpoints/best.pt",  # bob's job, no such object
        "jobs/999999999/checkpoints/last.pt",  # no such job
        f"jobs/{theirs['id']}/checkpoints/../checkpoints/last.pt",
        f"datasets/{bob.id}/x/archive.zip",
    ]
    answers = [
        alice.http.post(START.format(mine["id"]), params={"checkpoint_path": p}) for p in probes
    ]
    assert {said(r) for r in answers} == {
        (404, said(answers[0])[1], "CHECKPOINT_NOT_FOUND", "checkpoint_path")
    }, [r.text for r in answers]
    assert "jobs/<job id>/checkpoints/last.pt" in answers[0].json()["detail"]
    after = alice.http.get(f"/training/jobs/{mine['id']}").json()
    assert after["status"] == "pending" and after["advanced_config"] == {"image_size": 32}
    assert stored_config(stack, mine["id"]) == {"image_size": 32}

    # Nor through the create request: resume_from is the platform's to write.
    refused = [new_job(alice, images(alice), advanced={"resume_from": k}) for k in (key, probes[2])]
    assert said(refused[0]) == said(refused[1])
    assert said(refused[0])[::3] == (400, "config.advanced_config.resume_from")
    assert "checkpoint_path" in refused[0].json()["detail"]


def test_a_refused_start_writes_nothing(stack, alice):
    data = images(alice)
    done, source = job(alice, data), job(alice, data)
    assert alice.http.post(f"/training/stop/{done['id']}").json()["status"] == "stopped"
    key = f"jobs/{source['id']}/checkpoints/last.pt"  # alice's own: readable
    put_artifacts(stack, key)
    again = alice.http.post(START.format(done["id"]), params={"checkpoint_path": key})
    assert again.status_code == 409 and again.json()["code"] == "INVALID_STATUS"
    assert stored_config(stack, done["id"]) == {"image_size": 32}  # no resume_from
    after = alice.http.get(f"/training/jobs/{done['id']}").json()
    assert after["status"] == "stopped" and after["advanced_config"] == {"image_size": 32}


def test_a_job_names_only_a_project_of_its_owner(alice, bob):
    data = images(alice)
    theirs = bob.http.post("/projects", json={"name": "bob's"}).json()["project_id"]
    answers = [new_job(alice, data, project_id=p) for p in (theirs, 999_999_999)]
    assert {said(r) for r in answers} == {
        (404, "Project not found", "PROJECT_NOT_FOUND", "project_id")
    }
    mine = alice.http.post("/projects", json={"name": "alice's"}).json()["project_id"]
    assert job(alice, data, project_id=mine)["project_id"] == mine


def test_seed000_starts_one_run_however_many_ask_at_once(stack):
    carol = Client(stack)
    root = carol.http.base_url.copy_with(path="/")
    r = carol.http.post(
        "/datasets", data={"name": "lj"}, files=[("files", ("lj.zip", make.ljspeech(3)))]
    )
    assert r.status_code == 201 and r.json()["format"] == "ljspeech", r.text
    ask = {"model_name": "conformer", "dataset_name": "lj"}
    answers = all_at_once([lambda: carol.http.post(root.join("train/start"), json=ask)] * 4)
    try:
        assert sorted(a.status_code for a in answers) == [202, 409, 409, 409], [
            a.text for a in answers
        ]
        assert {a.json()["detail"] for a in answers if a.status_code == 409} == {
            "Training is already in progress."
        }
    finally:
        deadline = time.monotonic() + 300
        while carol.http.post(root.join("train/stop")).status_code != 404:
            assert time.monotonic() < deadline, "the run did not stop"
            time.sleep(0.5)


def test_active_jobs_are_capped(stack):
    dave = Client(stack)
    data = images(dave)
    jobs = [job(dave, data, epochs=1000)["id"] for _ in range(CAP + 2)]
    answers = all_at_once([lambda j=j: dave.http.post(START.format(j)) for j in jobs])
    started = [j for j, a in zip(jobs, answers, strict=True) if a.status_code == 200]
    try:
        assert len(started) == CAP, [a.text for a in answers]
        refused = [a for a in answers if a.status_code != 200]
        assert {(a.status_code, a.json()["code"]) for a in refused} == {(409, "ACTIVE_JOB_LIMIT")}
        assert f"max_active_jobs = {CAP}" in refused[0].json()["detail"]
        waiting = [j for j in jobs if j not in started]
        assert all(
            dave.http.get(f"/training/jobs/{j}").json()["status"] == "pending" for j in waiting
        )

        # One ends: one more may start, and again no more than that.
        stop_all(dave, started[:1])
        assert dave.http.post(START.format(waiting[0])).status_code == 200
        started.append(waiting[0])
        late = dave.http.post(START.format(waiting[1]))
        assert late.status_code == 409 and late.json()["code"] == "ACTIVE_JOB_LIMIT"
    finally:
        stop_all(dave, started)
