"""The datasets area as a person uses it: a zip dropped on the page uploads with a progress
bar and lands in the list; its page draws the class distribution with the archive's class
names and lists what validation found; a malformed archive is refused with the reason; a
large archive sent straight to storage is followed live until it is ingested."""

from __future__ import annotations

import base64

import httpx
import pytest
from playwright.sync_api import expect

from tests import datasets as make
from tests.browser.conftest import shot, signed_in
from tests.conftest import Client

pytestmark = pytest.mark.browser


def imbalanced_shapes() -> bytes:
    """ImageFolder with 6 circles and 3 squares to train on, 2 of each to validate."""
    files = {}
    for split, counts in (
        ("train", {"circle": 6, "square": 3}),
        ("val", {"circle": 2, "square": 2}),
    ):
        for cls, n in counts.items():
            for i in range(n):
                files[f"shapes/{split}/{cls}/{i}.png"] = make.png(cls, seed=i)
    return make.zip_of(files)


def drop(page, selector: str, name: str, data: bytes) -> None:
    """Drop a file on ``selector`` as a person dragging it from their desktop does."""
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bin = atob(b64), bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "application/zip" }));
            return dt;
        }""",
        [base64.b64encode(data).decode(), name],
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_drop_a_dataset_see_its_classes_and_issues(page, stack):
    alice = Client(stack)
    signed_in(page, alice, "/datasets")
    expect(page.get_by_text("No datasets yet")).to_be_visible()

    drop(page, "[data-testid=dataset-dropzone]", "shapes.zip", imbalanced_shapes())
    upload = page.get_by_test_id("dataset-upload").filter(has_text="shapes")
    expect(upload.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(upload).to_contain_text("done")

    row = page.get_by_test_id("dataset-row").filter(has_text="shapes")
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("imagefolder")
    expect(row.locator("td").nth(5)).to_have_text("2")  # classes
    shot(page, "datasets-list")

    # A malformed archive, chosen with the file picker: refused, with the reason, and not listed.
    evil = make.zip_of({"../evil.png": make.png("circle"), "a/b.png": make.png("square")})
    page.get_by_test_id("dataset-file").set_input_files(
        files=[{"name": "evil.zip", "mimeType": "application/zip", "buffer": evil}]
    )
    refused = page.get_by_test_id("dataset-upload").filter(has_text="evil")
    expect(refused.get_by_test_id("upload-issue")).to_contain_text("Unsafe path")
    expect(page.get_by_test_id("dataset-row")).to_have_count(1)

    row.get_by_role("link", name="shapes").click()
    expect(page.get_by_test_id("dataset-name")).to_have_text("shapes")
    expect(page.get_by_test_id("dataset-status")).to_contain_text("ready")
    chart = page.get_by_test_id("class-chart")
    # the bars, largest first, named as the archive's folders name them, as long as their counts
    bars = chart.locator("g.ds-bar")
    expect(bars).to_have_count(2)
    expect(bars.nth(0)).to_have_attribute("data-class", "circle")
    expect(bars.nth(1)).to_have_attribute("data-class", "square")
    expect(chart.locator(".ds-bar-label")).to_have_text(["circle", "square"])
    widths = [float(bars.nth(i).locator("rect").get_attribute("width")) for i in range(2)]
    counts = [int(bars.nth(i).locator(".ds-bar-count").text_content()) for i in range(2)]
    assert counts == [8, 5] and widths[1] == pytest.approx(widths[0] * 5 / 8, rel=0.01)

    issue = page.get_by_test_id("validation-issue")
    expect(issue).to_have_count(1)
    expect(issue).to_contain_text("warning")
    expect(issue).to_contain_text("Class imbalance")
    expect(page.get_by_test_id("validation-verdict").locator(".status-valid")).to_be_visible()
    # checked against what the person expects: 3 classes is an error, and says so
    page.locator("input[name=expected-classes]").fill("3")
    page.get_by_role("button", name="Validate").click()
    expect(page.get_by_test_id("validation-verdict").locator(".status-invalid")).to_be_visible()
    expect(page.get_by_test_id("validation-issue").first).to_contain_text(
        "Expected 3 classes, found 2"
    )
    shot(page, "datasets-detail")


def test_a_presigned_dataset_is_followed_live_until_it_settles(page, stack):
    """The page of a dataset still arriving shows it waiting, and moves to ready by itself
    when the archive lands in storage and is ingested (pushed on ``dataset:<id>``)."""
    alice = Client(stack)
    data = make.yolo(4)
    g = alice.http.post(
        "/datasets/presign", json={"name": "boxes", "size": len(data), "format": "yolo"}
    )
    assert g.status_code == 201, g.text
    grant = g.json()
    signed_in(page, alice, f"/datasets/{grant['dataset_id']}")
    expect(page.get_by_test_id("dataset-status")).to_contain_text("uploading")
    expect(page.get_by_text("Validated once the archive is inspected.")).to_be_visible()

    up = httpx.post(grant["url"], data=grant["fields"], files={"file": ("d.zip", data)})
    assert up.status_code in (200, 204), up.text
    expect(page.get_by_test_id("dataset-status")).to_contain_text("ready", timeout=120_000)
    expect(page.get_by_test_id("class-chart").locator(".ds-bar-label")).to_have_text(
        ["circle", "square"]
    )
    expect(page.get_by_test_id("validation-verdict")).to_be_visible()
