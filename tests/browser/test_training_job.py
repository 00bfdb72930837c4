"""A training job's page and the run comparison, as a person uses them: start a tiny timm
job from its page and watch its curves grow as the trainer's events arrive, its log,
search in it, the confusion matrix, per-class numbers, the mistakes, its checkpoint and
a prediction on a dropped image; stop a long job and resume it; compare two runs."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import Page, expect

from tests import datasets as make
from tests.browser.conftest import canvas_is_drawn, shot, signed_in
from tests.conftest import Client

pytest.importorskip("timm")

pytestmark = pytest.mark.browser

TRAINING = 480_000  # ms: a tiny CPU run on a busy 2-core machine, trainer start-up included


def dataset(client: Client) -> dict:
    r = client.http.post(
        "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(12)))]
    )
    assert r.status_code == 201, r.text
    return r.json()


def create(client: Client, ds: dict, epochs: int, name: str, lr: float = 0.003) -> dict:
    r = client.http.post(
        "/training/jobs",
        json={
            "experiment_name": name,
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": ds["id"],
                "epochs": epochs,
                "batch_size": 8,
                "learning_rate": lr,
                "advanced_config": {"image_size": 32},
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def points(page: Page, testid: str) -> int:
    return int(page.get_by_test_id(testid).get_attribute("data-points") or 0)


def more_points(page: Page, testid: str, than: int, timeout_ms: float) -> int:
    """The chart's point count once it is above ``than`` (within ``timeout_ms``)."""
    page.wait_for_function(
        "([id, n]) => Number(document.querySelector(`[data-testid='${id}']`)?.dataset.points) > n",
        arg=[testid, than],
        timeout=timeout_ms,
    )
    return points(page, testid)


@pytest.mark.timeout(900)  # a busy 2-core machine trains slowly; each wait has its own deadline
def test_watch_a_job_train_then_inspect_and_try_it(page: Page, stack):
    alice = Client(stack)
    job = create(alice, dataset(alice), epochs=4, name="shapes-live")
    signed_in(page, alice, f"/training/{job['id']}")
    expect(page.get_by_test_id("job-status")).to_have_text("pending")
    expect(page.get_by_role("heading", name=re.compile("shapes-live"))).to_be_visible()
    expect(page.get_by_test_id("job-config")).to_contain_text("resnet10t")
    expect(page.locator(".tjob-socket")).to_have_text("live")
    assert points(page, "chart-loss") == 0

    page.get_by_role("button", name="Start").click()
    # The loss curve grows while the job runs: each point arrives on the WebSocket (the
    # page polls nothing but the job's status, every 15 s).
    first = more_points(page, "chart-loss", 0, TRAINING)
    expect(page.get_by_test_id("job-status")).to_have_text(re.compile("running|completed"))
    grown = more_points(page, "chart-loss", first, 120_000)
    expect(page.get_by_test_id("chart-metrics")).not_to_have_attribute(
        "data-points", "0", timeout=120_000
    )
    expect(page.get_by_test_id("job-epoch")).to_contain_text("/ 4")
    shot(page, "training-job-live")

    # The log tail, and a search in it that marks what it found.
    log = page.get_by_test_id("log-tail")
    expect(log).to_contain_text("Starting timm resnet10t", timeout=60_000)
    page.get_by_label("Search the log").fill("RESNET10T")
    expect(log.locator("mark").first).to_have_text(re.compile("resnet10t", re.I))
    expect(page.get_by_test_id("log-hits")).to_contain_text("match")

    # The end: its status, the last validation's confusion matrix and per-class numbers.
    expect(page.get_by_test_id("job-status")).to_have_text("completed", timeout=TRAINING)
    expect(page.get_by_role("heading", name="Validation, epoch 4")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("confusion-matrix")).to_be_visible()
    assert canvas_is_drawn(page, "[data-testid=confusion-matrix]")
    per_class = page.get_by_test_id("per-class")
    expect(per_class.locator("tbody tr")).to_have_count(2)
    expect(per_class).to_contain_text("circle")
    expect(per_class).to_contain_text("square")
    assert points(page, "chart-loss") >= grown
    assert points(page, "chart-lr") > 0

    # The mistakes of that validation, as the API counts them; then every image.
    result = alice.http.get(f"/validation/results/{job['id']}").json()["results"][-1]
    assert result["epoch"] == 4
    wrong = 8 - round(result["metrics"]["accuracy"] * 8)  # the val split: 4 per class
    total = page.get_by_test_id("images-total")
    expect(total).to_have_text(f"{wrong} image{'' if wrong == 1 else 's'}")
    rows = page.get_by_test_id("per-image").locator("tbody tr")
    expect(rows).to_have_count(wrong)
    for i in range(wrong):  # a mistake: its true class is not the one predicted
        cells = rows.nth(i).locator("td")
        assert cells.nth(1).inner_text() != cells.nth(2).inner_text()
    page.get_by_role("tab", name="All").click()
    expect(total).to_have_text("8 images")
    expect(rows).to_have_count(8)

    # The checkpoints the trainer saved: as its events said, and as stored after a reload.
    saved = page.get_by_test_id("checkpoints")
    expect(saved).to_contain_text(f"jobs/{job['id']}/checkpoints/last.pt")
    shot(page, "training-job-done")
    page.reload()
    expect(saved.locator("tbody tr")).to_have_count(2)  # best.pt and last.pt
    expect(saved).to_contain_text(f"jobs/{job['id']}/checkpoints/best.pt")
    expect(saved).to_contain_text("before this page opened")

    # A prediction on an image dropped on the test-inference zone.
    png = base64.b64encode(make.png("circle", seed=99)).decode()
    transfer = page.evaluate_handle(
        """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], 'circle.png', { type: 'image/png' }));
                    return dt; }""",
        png,
    )
    page.get_by_test_id("inference-drop").dispatch_event("drop", {"dataTransfer": transfer})
    answer = page.get_by_test_id("inference-result")
    expect(answer.locator("li").first).to_contain_text(  # the model loads on first use
        re.compile(r"(circle|square) \d+\.\d%"), timeout=120_000
    )
    expect(answer).to_contain_text("resnet10t")
    assert canvas_is_drawn(page, "[data-testid=inference-preview]")
    shot(page, "training-job-inference")


@pytest.mark.timeout(900)
def test_stop_a_long_job_and_resume_it(page: Page, stack):
    alice = Client(stack)
    job = create(alice, dataset(alice), epochs=200, name="shapes-long")
    assert alice.http.post(f"/training/jobs/{job['id']}/start").status_code == 200
    signed_in(page, alice, f"/training/{job['id']}")
    # one validation done, so the stop saves a checkpoint past it
    expect(page.get_by_test_id("chart-metrics")).not_to_have_attribute(
        "data-points", "0", timeout=TRAINING
    )
    expect(page.get_by_test_id("job-status")).to_have_text("running")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("job-status")).to_have_text("stopped", timeout=120_000)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    stopped = alice.http.get(f"/training/jobs/{job['id']}").json()
    assert stopped["status"] == "stopped" and 1 <= stopped["current_epoch"] < 200

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("job-status")).to_have_text(re.compile("queued|running"))
    expect(page.get_by_test_id("log-tail")).to_contain_text(
        f"Resumed from checkpoint jobs/{job['id']}/checkpoints/last.pt", timeout=TRAINING
    )
    expect(page.get_by_test_id("job-status")).to_have_text("running", timeout=60_000)
    page.get_by_role("button", name="Stop").click()  # and not left running
    expect(page.get_by_test_id("job-status")).to_have_text("stopped", timeout=120_000)


@pytest.mark.timeout(900)
def test_compare_two_runs(page: Page, stack):
    alice = Client(stack)
    ds = dataset(alice)
    runs = [
        create(alice, ds, epochs=2, name="slow-lr", lr=0.003),
        create(alice, ds, epochs=3, name="fast-lr", lr=0.01),
    ]
    for run in runs:
        assert alice.http.post(f"/training/jobs/{run['id']}/start").status_code == 200
    a, b = (r["id"] for r in runs)
    signed_in(page, alice, f"/training/compare?ids={a},{b}")
    # The page reads the runs again while either trains, until both are done.
    params = page.get_by_test_id("param-diff")
    expect(params.locator('tr[data-param="status"]')).to_have_text(
        re.compile(r"status\s*completed\s*completed"), timeout=TRAINING
    )
    for metric, per_run in (("train loss", (2, 3)), ("accuracy", (2, 3)), ("val_loss", (2, 3))):
        chart = page.get_by_test_id(f"compare-{metric}")
        expect(chart).to_have_attribute("data-series", f"#{a} slow-lr|#{b} fast-lr")
        expect(chart).to_have_attribute("data-points-0", str(per_run[0]))
        expect(chart).to_have_attribute("data-points-1", str(per_run[1]))
        assert canvas_is_drawn(page, f'[data-testid="compare-{metric}"] canvas')

    for name, differs in (
        ("learning rate", "true"),
        ("epochs", "true"),
        ("model", "false"),
        ("batch size", "false"),
        ("image_size", "false"),
    ):
        expect(params.locator(f'tr[data-param="{name}"]')).to_have_attribute(
            "data-differs", differs
        )
    expect(params.locator("tr.differs").first).to_be_visible()
    expect(params.locator('tr[data-param="learning rate"]')).to_contain_text("0.01")
    shot(page, "training-compare")

    page.get_by_label("Only differences").check()
    expect(params.locator('tr[data-param="model"]')).to_have_count(0)
    expect(params.locator('tr[data-param="learning rate"]')).to_have_count(1)
