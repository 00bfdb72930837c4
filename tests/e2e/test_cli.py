"""The `crucible` command as installed (.venv/bin/crucible), run as a person or a script
runs it, against the local stack: sign-in and the token file, recordings uploaded by each
route and their analyses summarised, datasets, a job trained and watched to its end, a
stop, refusals in the API's words with their exit codes, and the leaderboard."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests import datasets as make
from tests.audio.synth import cry, wav_bytes
from tests.conftest import ROOT, Client

# Generous: every command is a Python process, and the first test bears the stack's start.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CRUCIBLE = ROOT / ".venv" / "bin" / "crucible"
SR = 44_100
UNITS = [(0.5, 1.5, 450), (1.8, 2.6, 500)]


def run(
    stack, config: Path, *args: str, input: str | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """``crucible ARGS`` with the stack as CRUCIBLE_URL and ``config`` as its config home
    (nothing of this process's CRUCIBLE_* settings, nor the user's real home)."""
    config.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")}
    environ.update(
        {
            "CRUCIBLE_URL": stack.base,
            "XDG_CONFIG_HOME": str(config),
            "HOME": str(config),
            "COLUMNS": "200",
            **env,
        }
    )
    return subprocess.run(
        [str(CRUCIBLE), *args],
        input=input,
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        cwd=config,
    )


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the tables printed."""
    return [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def refused(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    """Exit ``code`` and the API's ``words`` as one line on stderr, never a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def user(stack) -> Client:
    return Client(stack)


@pytest.fixture(scope="module")
def home(stack, user, tmp_path_factory) -> Path:
    """A config home signed in as ``user`` with the password on stdin."""
    config = tmp_path_factory.mktemp("cli-home")
    result = ok(
        run(stack, config, "login", "--email", user.email, "--password-stdin", input=user.password)
    )
    assert f"Signed in to {stack.base} as {user.email}" in result.stdout
    return config


def test_login_keeps_the_session_for_the_user_only(stack, user, home, tmp_path):
    token_file = home / "crucible" / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    session = json.loads(token_file.read_text())["sessions"][stack.base]
    assert session["refresh_token"] and session["email"] == user.email
    me = json.loads(ok(run(stack, home, "whoami", "--json")).stdout)
    assert me["email"] == user.email and me["id"] == user.id

    # An expired access token is refreshed with the refresh token, and kept.
    session["expires_at"] = 0
    token_file.write_text(json.dumps({"sessions": {stack.base: session}}))
    assert json.loads(ok(run(stack, home, "--json", "whoami")).stdout)["id"] == user.id
    renewed = json.loads(token_file.read_text())["sessions"][stack.base]
    assert renewed["access_token"] != session["access_token"] and renewed["expires_at"] > 0

    other = tmp_path / "other"
    wrong = run(stack, other, "login", "--email", user.email, "--password-stdin", input="nope")
    detail = user.http.post(
        "/auth/login", json={"email": user.email, "password": "nope"}, headers={}
    ).json()["detail"]
    refused(wrong, 3, detail)
    refused(run(stack, other, "whoami"), 3, "not signed in")

    # seed 004's static API token instead of a password; then signed out again
    assert "ci-bot" in ok(run(stack, other, "login", "--token", "ci-token-0123456789")).stdout
    assert json.loads(ok(run(stack, other, "whoami", "--json")).stdout)["email"].startswith(
        "ci-bot@"
    )
    assert "Signed out" in ok(run(stack, other, "logout")).stdout
    refused(run(stack, other, "whoami"), 3, "not signed in")
    # the token kept out of the process list: from stdin, or from the environment
    piped = run(stack, other, "login", "--token-stdin", input="ci-token-0123456789\n")
    assert "ci-bot" in ok(piped).stdout
    ok(run(stack, other, "logout"))
    assert "ci-bot" in ok(run(stack, other, "login", CRUCIBLE_TOKEN="ci-token-0123456789")).stdout


def test_recordings_by_each_route_are_analysed_and_summarised(stack, user, home, tmp_path):
    # three sizes: through the API, a presigned POST, and a presigned multipart upload
    paths = []
    for name, seconds in (("夜泣き.wav", 3.0), ("medium.wav", 5.0), ("large.wav", 7.0)):
        path = tmp_path / name
        path.write_bytes(wav_bytes(cry(SR, seconds, UNITS), SR))
        paths.append(path)
    sizes = [p.stat().st_size for p in paths]
    result = ok(
        run(
            stack,
            home,
            "upload",
            *map(str, paths),
            CRUCIBLE_DIRECT_UPLOAD_MAX=str(sizes[0]),
            CRUCIBLE_MULTIPART_OVER=str(sizes[1]),
        )
    )
    rows = {cells[0]: cells[1:] for cells in table_rows(result.stdout) if len(cells) == 11}
    assert set(rows) >= {p.name for p in paths}, result.stdout
    for path, route in zip(paths, ("api", "presigned", "multipart"), strict=True):
        file_id, got_route, _, status, episodes, _, units, f0, cry_ce, _ = rows[path.name]
        assert (got_route, status, episodes, units) == (route, "completed", "1", "2"), rows
        assert 440 <= float(f0) <= 510 and 0.5 < float(cry_ce) <= 1, rows
        # the API agrees: the file is the one sent, analysed
        f = user.http.get(f"/audio-files/{file_id}").json()
        assert f["original_filename"] == path.name and f["file_size"] == path.stat().st_size
        assert f["status"] == "completed"
    assert "夜泣き.wav" in result.stderr and "100%" in result.stderr  # the bars, on stderr


@pytest.mark.timeout(900)  # two tiny trainings; minutes on a busy 2-core machine
def test_a_dataset_uploaded_trains_a_job_watched_to_its_end(stack, user, home, tmp_path):
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(make.imagefolder(12))
    # straight to storage (presigned), then waited for until it is validated
    up = ok(
        run(
            stack,
            home,
            "datasets",
            "upload",
            str(archive),
            "--name",
            "shapes",
            CRUCIBLE_DIRECT_UPLOAD_MAX="1",
        )
    )
    listed = json.loads(ok(run(stack, home, "datasets", "list", "--json")).stdout)
    (dataset,) = [d for d in listed["datasets"] if d["name"] == "shapes"]
    assert dataset["status"] == "ready" and f"Dataset {dataset['id']} shapes: ready" in up.stdout
    classes = {cells[0]: cells[1] for cells in table_rows(up.stdout) if len(cells) == 2}
    assert classes == {k: str(v) for k, v in dataset["class_distribution"].items()}, up.stdout

    created = ok(
        run(
            stack,
            home,
            "jobs",
            "create",
            "--dataset",
            dataset["id"],
            "--model",
            "resnet10t",
            "--task-type",
            "image_classification",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "0.003",
            "--set",
            "image_size=32",
            "--json",
        )
    )
    job = json.loads(created.stdout)
    assert job["status"] == "queued" and job["advanced_config"]["image_size"] == 32

    watched = ok(run(stack, home, "jobs", "watch", str(job["id"])))
    assert f"Job {job['id']} completed at epoch 2/2" in watched.stdout
    assert "epoch 1/2  loss" in watched.stderr and "epoch 2/2  loss" in watched.stderr
    assert "accuracy" in watched.stderr
    assert user.http.get(f"/training/jobs/{job['id']}").json()["status"] == "completed"

    jobs = json.loads(ok(run(stack, home, "jobs", "list", "--json")).stdout)
    mine = {w["workflow_id"]: w for w in jobs["workflows"]}
    assert mine[str(job["id"])]["status"] == "completed" and mine[str(job["id"])]["progress"] == 100

    # a job stopped: stop waits for it, and watching it then says so with exit 1
    create = [
        "jobs",
        "create",
        "--model",
        "resnet10t",
        "--epochs",
        "200",
        "--set",
        "image_size=32",
        "--json",
    ]
    long = json.loads(ok(run(stack, home, *create, "--dataset", dataset["id"])).stdout)
    stopped = json.loads(
        ok(run(stack, home, "jobs", "stop", str(long["id"]), "--wait", "--json")).stdout
    )
    assert stopped["status"] == "stopped"
    after = run(stack, home, "jobs", "watch", str(long["id"]))
    assert after.returncode == 1 and f"Job {long['id']} stopped" in after.stdout, after

    # refusals: the API's words, exit 4
    again = user.http.post(f"/training/stop/{job['id']}").json()["detail"]
    refused(run(stack, home, "jobs", "stop", str(job["id"])), 4, again)


def test_refusals_are_one_line_with_their_exit_code(stack, user, home, tmp_path):
    missing = user.http.get("/training/jobs/999999999").json()["detail"]
    refused(run(stack, home, "jobs", "watch", "999999999"), 4, missing)
    refused(run(stack, home, "jobs", "watch", "999999999", "--json"), 4, missing)
    bad_model = run(
        stack, home, "jobs", "create", "--dataset", "nope", "--model", "resnet10t", "--json"
    )
    assert bad_model.returncode == 4 and "(HTTP 4" in bad_model.stderr, bad_model
    assert bad_model.stdout == "" and "Traceback" not in bad_model.stderr
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"this is not audio at all" * 10)
    result = run(stack, home, "upload", str(not_audio))
    assert result.returncode == 4 and "notes.wav:" in result.stderr, result
    # usage errors are click's (exit 2); an API that is not there is exit 5
    assert run(stack, home, "jobs", "watch", "abc").returncode == 2
    gone = run(stack, tmp_path, "login", "--token", "x", CRUCIBLE_URL="http://127.0.0.1:9")
    refused(gone, 5, "cannot reach http://127.0.0.1:9")
    assert "Exit codes: 0 done" in ok(run(stack, home, "--help")).stdout


MAIN = """
import argparse, json, sys
from pathlib import Path
import yaml
from helpers.score import SCORE

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--output", required=True)
args = ap.parse_args()
cfg = yaml.safe_load(open(args.config))
print("Loading dataset...", cfg["dataset"])
if cfg.get("fail"):
    sys.exit("the scorer failed on purpose")
Path(args.output).mkdir(parents=True, exist_ok=True)
Path(args.output, "metrics.json").write_text(json.dumps({
    "params": {"method": "padim", "dataset": cfg["dataset"]},
    "metrics": {"image_auc": SCORE},
}))
"""


def code(folder: Path, fail: bool = False) -> Path:
    (folder / "helpers").mkdir(parents=True)
    (folder / "helpers" / "__init__.py").write_text("")
    (folder / "helpers" / "score.py").write_text("SCORE = 0.93\n")
    (folder / "main.py").write_text(MAIN)
    (folder / "config.yaml").write_text(f"dataset: mvtec_ad\nfail: {str(fail).lower()}\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"\0")  # left out of the zip
    return folder


def test_submit_a_folder_and_see_it_ranked(stack, home, tmp_path):
    board = f"cli{time.time_ns()}"
    result = ok(
        run(
            stack,
            home,
            "submit",
            str(code(tmp_path / "good")),
            "--board",
            board,
            "--metadata",
            '{"method": "padim"}',
            "--resource-class",
            "small",
            "--json",
        )
    )
    done = json.loads(result.stdout)
    assert done["job"]["status"] == "completed", done
    assert done["results"]["metrics"]["image_auc"] == pytest.approx(0.93)

    ranked = json.loads(
        ok(
            run(stack, home, "leaderboard", "--board", board, "--metric", "image_auc", "--json")
        ).stdout
    )
    assert [e["job_id"] for e in ranked["entries"]] == [done["job"]["job_id"]]
    shown = ok(run(stack, home, "leaderboard", "--board", board)).stdout
    assert "padim" in shown and "0.93" in shown and done["job"]["job_id"] in shown

    failed = run(stack, home, "submit", str(code(tmp_path / "bad", fail=True)), "--board", board)
    assert failed.returncode == 1, failed
    assert "failed" in failed.stdout and "the scorer failed on purpose" in failed.stderr
