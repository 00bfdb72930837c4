"""The leaderboard (seed 004) in the console, as a researcher uses it: submit code through
the form, watch the evaluation job reach its end with its log, see the results and the
MLflow run, find the submission ranked on its board, and re-run it."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, signed_in

pytestmark = pytest.mark.browser

CONFIG = b"dataset: mvtec_ad\nbackbone: resnet18\n"

# Seed 004's own example of an entrypoint: it reads its config and writes metrics.json.
MAIN = b"""
import argparse, json, sys
from pathlib import Path

import yaml

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--output", required=True)
args = ap.parse_args()
cfg = yaml.safe_load(open(args.config))
print("Loading dataset...", cfg["dataset"])
print("scoring with", cfg["backbone"], file=sys.stderr)
out = Path(args.output)
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({
    "params": {"method": "padim", "dataset": cfg["dataset"], "backbone": cfg["backbone"]},
    "metrics": {"image_auc": 0.9375, "pixel_auc": 0.9},
}))
print("Job completed")
"""

ENDED = 180_000  # ms: an evaluation on a busy 2-core machine (the e2e tests allow as much)


@pytest.mark.timeout(600)
def test_submit_watch_the_job_and_find_it_ranked(page, stack, alice):
    board = f"b{uuid.uuid4().hex[:12]}"
    signed_in(page, alice, f"/leaderboard?board={board}")
    expect(page.get_by_test_id("ranking-empty")).to_be_visible()

    page.get_by_label("Submission files").set_input_files(
        [
            {"name": "main.py", "mimeType": "text/x-python", "buffer": MAIN},
            {"name": "config.yaml", "mimeType": "application/x-yaml", "buffer": CONFIG},
        ]
    )
    files = page.get_by_test_id("submit-files")
    expect(files).to_contain_text("main.py")
    expect(files).to_contain_text("config.yaml")
    expect(page.get_by_label("Entrypoint")).to_have_value("main.py")
    expect(page.get_by_label("Config file")).to_have_value("config.yaml")
    expect(page.get_by_label("Rank on board")).to_have_value(board)  # the board on view
    page.get_by_label("Method").fill("padim")
    page.get_by_role("button", name="Submit and evaluate").click()

    # The job's own page: pending or running, then completed, with its log and results.
    expect(page).to_have_url(re.compile(r"#/leaderboard/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", name=f"Evaluation job {job_id}")).to_be_visible()
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text(re.compile(r"pending|running|completed"))
    expect(status).to_have_text("completed", timeout=ENDED)
    log = page.get_by_test_id("job-log")
    expect(log).to_contain_text("Loading dataset... mvtec_ad")
    expect(log).to_contain_text("[stderr] scoring with resnet18")
    expect(log).to_contain_text("Job completed")
    metrics = page.get_by_test_id("job-metrics")
    expect(metrics).to_contain_text("image_auc")
    expect(metrics).to_contain_text("0.9375")
    mlflow = page.get_by_test_id("mlflow-link")
    expect(mlflow).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:\d+/#/experiments/"))
    expect(page.get_by_role("button", name="Re-run")).to_be_enabled()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # it has ended
    page.get_by_placeholder("Search the log").fill("resnet18")
    expect(log).to_have_text(re.compile(r"^\[[0-9: -]+\] \[stderr\] scoring with resnet18$"))
    page.get_by_placeholder("Search the log").fill("")
    shot(page, "leaderboard-job")

    # Ranked on its board: the metric it reported, its method and params, a link back.
    page.goto(f"#/leaderboard?board={board}")
    row = page.get_by_test_id(f"rank-{job_id}")
    expect(row).to_contain_text("0.9375")
    expect(row).to_contain_text("padim")
    expect(row).to_contain_text("you")
    expect(row).to_contain_text("backbone=resnet18")
    expect(page.get_by_test_id("ranking").locator("thead")).to_contain_text("image_auc")
    expect(row.get_by_role("link", name="MLflow")).to_have_attribute(
        "href", re.compile(r"^http://127\.0\.0\.1:\d+/")
    )
    jobs = page.get_by_test_id("lb-jobs")
    expect(jobs.get_by_role("row").filter(has_text=job_id)).to_contain_text("completed")
    shot(page, "leaderboard")

    # The row's link leads back to the job; a re-run is a new job of the same submission.
    row.get_by_role("link", name=f"job {job_id}").click()
    expect(page).to_have_url(re.compile(f"#/leaderboard/jobs/{job_id}$"))
    page.get_by_role("button", name="Re-run").click()
    expect(page).not_to_have_url(re.compile(f"#/leaderboard/jobs/{job_id}$"))
    expect(page).to_have_url(re.compile(r"#/leaderboard/jobs/[0-9a-f]+$"))
    expect(page.get_by_role("link", name=job_id)).to_be_visible()  # "Re-run of"
    expect(page.get_by_test_id("job-status")).to_have_text("completed", timeout=ENDED)


def test_a_refused_submission_says_why(page, stack, alice):
    """The API's refusal, in its words, and nothing submitted."""
    signed_in(page, alice, "/leaderboard")
    page.get_by_label("Submission files").set_input_files(
        [{"name": "config.yaml", "mimeType": "application/x-yaml", "buffer": CONFIG}]
    )
    page.get_by_label("Entrypoint").fill("main.py")  # not among the files
    page.get_by_role("button", name="Submit and evaluate").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "entrypoint 'main.py' is not among the files sent (config.yaml)"
    )
    expect(page).to_have_url(re.compile(r"#/leaderboard$"))
    expect(page.get_by_text("Nothing submitted yet.")).to_be_visible()


def test_cancel_a_running_job(page, stack, alice):
    """A job that would run for minutes: cancelled from its page, it ends with the reason."""
    slow = b"import time\nprint('warming up', flush=True)\ntime.sleep(600)\n"
    signed_in(page, alice, "/leaderboard")
    page.get_by_label("Submission files").set_input_files(
        [
            {"name": "main.py", "mimeType": "text/x-python", "buffer": slow},
            {"name": "config.yaml", "mimeType": "application/x-yaml", "buffer": CONFIG},
        ]
    )
    page.get_by_role("button", name="Submit and evaluate").click()
    expect(page).to_have_url(re.compile(r"#/leaderboard/jobs/[0-9a-f]+$"))
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("running", timeout=ENDED)
    expect(page.get_by_role("button", name="Re-run")).to_have_count(0)  # not while it runs
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_test_id("job-reason")).to_have_text("Cancelled by user")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run")).to_be_enabled()
