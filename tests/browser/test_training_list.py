"""Training as a person starts it: a job made with the console's form (the API's refusals
shown beside the field they name), started, then followed in the job list, where its
status moves live to completed with its best metric; the list filters, sorts, pages and
picks runs to compare."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import datasets as make
from tests.browser.conftest import shot, signed_in
from tests.conftest import Client

pytest.importorskip("timm")

pytestmark = pytest.mark.browser


def pending_job(client: Client, dataset_id: str, name: str, framework: str) -> int:
    """A job created and never started (nothing trains): what fills a list cheaply."""
    model = {"timm": "resnet18", "ultralytics": "yolov8n"}[framework]
    r = client.http.post(
        "/training/jobs",
        json={
            "experiment_name": name,
            "config": {
                "framework": framework,
                "model_name": model,
                "task_type": "image_classification",
                "dataset_id": dataset_id,
                "epochs": 3,
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def rows(page):
    return page.get_by_test_id("job-row")


def test_new_job_from_the_form_then_the_list_follows_it(page, stack):
    alice = Client(stack)
    r = alice.http.post(
        "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(6)))]
    )
    assert r.status_code == 201, r.text
    dataset = r.json()
    older = [
        pending_job(alice, dataset["id"], f"pending-{i:02d}", ("timm", "ultralytics")[i % 2])
        for i in range(10)
    ]

    signed_in(page, alice, "/training/new")
    page.locator("select[name=dataset_id]").select_option(dataset["id"])
    expect(page.get_by_test_id("preset-quick test")).to_be_visible()
    page.locator("input[name=model_name]").fill("resnet10t")
    page.get_by_test_id("preset-quick test").click()
    expect(page.locator("input[name=epochs]")).to_have_value("2")
    expect(page.locator("input[name=batch_size]")).to_have_value("8")
    page.locator("input[name=experiment_name]").fill("shapes quick")

    # The API judges what was typed, and its refusal is shown beside the field it names.
    page.locator("input[name=epochs]").fill("5000")
    page.get_by_test_id("create-job").click()
    expect(page.get_by_test_id("error-epochs")).to_contain_text("less than or equal to 1000")
    expect(page.get_by_test_id("error-model_name")).to_have_count(0)
    page.locator("input[name=epochs]").fill("2")
    page.locator("input[name=model_name]").fill("resnet-nope")
    page.get_by_test_id("create-job").click()
    expect(page.get_by_test_id("error-model_name")).to_be_visible()
    expect(page.get_by_test_id("error-epochs")).to_have_count(0)
    # the advanced settings are the schema's, with its defaults; a knob out of range is
    # refused by name too
    page.locator("input[name=model_name]").fill("resnet10t")
    page.get_by_role("button", name=re.compile("Advanced settings")).click()
    expect(page.locator("select[name='optimizer.type']")).to_have_value("adamw")
    expect(page.locator("input[name=image_size]")).to_have_value("32")  # the quick preset's
    page.locator("input[name='optimizer.weight_decay']").fill("7")
    page.get_by_test_id("create-job").click()
    expect(page.get_by_test_id("error-optimizer.weight_decay")).to_contain_text("weight_decay")
    shot(page, "training-new")  # the form, and a refusal beside its field
    assert alice.http.get("/workflows").json()["total"] == 10  # nothing refused was stored

    # fixed, and sent as a person often does: Enter in the field
    page.locator("input[name='optimizer.weight_decay']").fill("0.01")
    page.locator("input[name='optimizer.weight_decay']").press("Enter")
    expect(page).to_have_url(re.compile(r"#/training/\d+$"), timeout=60_000)
    job_id = int(page.url.rsplit("/", 1)[1])
    job = alice.http.get(f"/training/jobs/{job_id}").json()
    assert (job["model_name"], job["epochs"], job["experiment_name"]) == (
        "resnet10t",
        2,
        "shapes quick",
    )
    assert job["advanced_config"] == {"image_size": 32} and job["status"] != "pending"

    # The list, as the nav leads there: the new job on top, its status moving by itself
    # (the page is never reloaded) until it completes with its best accuracy.
    page.get_by_role("navigation").get_by_role("link", name="Training", exact=True).click()
    expect(page.get_by_test_id("live")).to_have_text("live")
    expect(rows(page)).to_have_count(10)
    top = rows(page).first
    expect(top).to_have_attribute("data-job", str(job_id))
    expect(top).to_contain_text("resnet10t")
    expect(top).to_contain_text("shapes")  # the dataset's name
    expect(top.get_by_test_id("job-status")).to_have_text(
        re.compile("queued|running"), timeout=60_000
    )
    expect(top.get_by_test_id("job-status")).to_have_text("completed", timeout=240_000)
    expect(top.get_by_test_id("job-best")).to_contain_text(re.compile(r"\d.*accuracy"))
    expect(page.get_by_text("11 jobs · page 1 of 2")).to_be_visible()
    shot(page, "training-list")

    # paging (the API's): the oldest job is alone on page 2
    page.get_by_role("button", name="Next").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-job", str(older[0]))
    page.get_by_role("button", name="Previous").click()
    expect(rows(page)).to_have_count(10)

    # filter by status (the API's) and framework (this page's)
    page.locator("select[name=status]").select_option("completed")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-job", str(job_id))
    page.locator("select[name=status]").select_option("pending")
    expect(rows(page)).to_have_count(10)
    expect(page.get_by_text("10 jobs · page 1 of 1")).to_be_visible()
    page.locator("select[name=framework]").select_option("ultralytics")
    expect(rows(page)).to_have_count(5)
    for i in range(5):
        expect(rows(page).nth(i)).to_contain_text("yolov8n")
    expect(page.get_by_test_id("page-note")).to_be_visible()
    page.locator("select[name=framework]").select_option("")
    page.locator("select[name=status]").select_option("")

    # sort by name (the API's) both ways, and by model (this page's)
    page.get_by_test_id("sort-name").click()
    expect(rows(page).first).to_contain_text("pending-00")
    expect(rows(page).last).to_contain_text("pending-09")
    page.get_by_test_id("sort-name").click()
    expect(rows(page).first).to_contain_text("shapes quick")
    page.get_by_test_id("sort-model").click()
    models = [rows(page).nth(i).locator("td").nth(4).inner_text() for i in range(10)]
    assert models == sorted(models) and models[0] == "resnet10t"

    # pick two runs and compare them
    page.get_by_role("checkbox", name=f"select job {job_id}").check()
    page.get_by_role("checkbox", name=f"select job {older[-1]}").check()
    page.get_by_test_id("compare").click()
    ids = ",".join(str(i) for i in sorted((job_id, older[-1])))
    expect(page).to_have_url(re.compile(rf"#/training/compare\?ids={ids}$"))
