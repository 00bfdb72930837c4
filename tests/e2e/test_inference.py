"""Seed 003's inference over HTTP against the local stack: a tiny timm model trained,
then predictions by base64 (plain and as a data URL) and by URL, a batch of three with
one bad image run to completion through the event path with per-image results, and
what is refused (a private-address URL, a non-image, an oversized image, a batch over
the limit, a workflow without a model, another user's workflow and batch), each a clear
4xx in the error format with nothing stored.

URLs point at a server on 127.0.0.1, which the stack fetches from only because its
stack runs with CRUCIBLE_URL_FETCH_ALLOW_LOOPBACK_HTTP_FOR_TESTING (off by default;
tests/unit/test_urlfetch.py checks what it lets through: loopback and http, nothing
else). Until the session's stack (tests/conftest.py) sets it, this module starts a
stack of its own.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator

import boto3
import pytest

pytest.importorskip("timm")

from shared.settings import ResourceNames
from tests import datasets as make
from tests.conftest import Client, Stack
from tests.e2e.live import wait_for_status

pytestmark = pytest.mark.e2e

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # CRUCIBLE_MAX_INFERENCE_BYTES's default
MAX_BATCH = 20  # CRUCIBLE_MAX_BATCH_IMAGES's default
CIRCLE, SQUARE = make.png("circle", seed=3), make.png("square", seed=4)
BROKEN = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8  # an image's signature, then junk


class Images(http.server.BaseHTTPRequestHandler):
    FILES = {
        "/circle.png": ("image/png", CIRCLE),
        "/square.png": ("image/png", SQUARE),
        "/broken.png": ("image/png", BROKEN),
        "/page.html": ("text/html", b"<html><body>not an image</body></html>"),
        "/text.png": ("image/png", b"hello, I am text"),
    }

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, body = self.FILES.get(self.path, ("text/plain", b""))
        self.send_response(200 if self.path in self.FILES else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def owner(stack) -> Client:
    return Client(stack)


@pytest.fixture(scope="module")
def dataset(owner) -> dict:
    r = owner.http.post(
        "/datasets", data={"name": "shapes"}, files=[("files", ("s.zip", make.imagefolder(8)))]
    )
    assert r.status_code == 201, r.text
    return r.json()


def new_job(client: Client, dataset: dict) -> dict:
    r = client.http.post(
        "/training/jobs",
        json={
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "task_type": "image_classification",
                "dataset_id": dataset["id"],
                "epochs": 1,
                "batch_size": 8,
                "advanced_config": {"image_size": 32},
            }
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def workflow(owner, dataset) -> str:
    """A trained workflow's id: a timm job run to completion."""
    job = new_job(owner, dataset)
    assert owner.http.post(f"/training/jobs/{job['id']}/start").status_code == 200
    done = wait_for_status(owner, job["id"])
    assert done["status"] == "completed", done
    return str(job["id"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_predicted(out: dict, workflow: str) -> None:
    assert out["predictions"], out
    for p in out["predictions"]:
        assert p["class"] in ("circle", "square") and p["class_id"] in (0, 1)
        assert 0.0 <= p["confidence"] <= 1.0
    confidences = [p["confidence"] for p in out["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    assert isinstance(out["inference_time_ms"], int)
    assert out["model_version"].startswith(f"{workflow}_")


def assert_error(r, status: int, code: str | None = None) -> dict:
    """A refusal in both error shapes (seed 002's and seed 003's ``error``)."""
    assert r.status_code == status, r.text
    body = r.json()
    if code:
        assert body["code"] == code, body
    assert body["error"]["code"] == body["code"] and body["error"]["message"], body
    return body


def stored(stack: Stack, workflow: str) -> list[str]:
    """Every object of the workflow's batches (the artifacts bucket's inference/<id>/)."""
    s3 = boto3.client("s3", endpoint_url=stack.emulator_endpoint, region_name="us-east-1")
    bucket = ResourceNames.for_stage("local").artifacts_bucket
    out = s3.list_objects_v2(Bucket=bucket, Prefix=f"inference/{workflow}/")
    return sorted(o["Key"] for o in out.get("Contents", []))


# --- one image -----------------------------------------------------------------------
def test_predict_by_base64_and_by_url(owner, workflow, images):
    for image in (
        {"image_base64": b64(CIRCLE)},
        {"image_base64": f"data:image/png;base64,{b64(SQUARE)}"},
        {"image_url": f"{images}/circle.png"},
    ):
        r = owner.http.post(f"/inference/{workflow}/predict", json=image)
        assert r.status_code == 200, r.text
        out = r.json()
        assert_predicted(out, workflow)
        assert len(out["predictions"]) == 2  # a classifier answers every class by default
        assert out["task_type"] == "image_classification" and out["model_name"] == "resnet10t"
    top = owner.http.post(
        f"/inference/wf_{workflow}/predict", json={"image_base64": b64(CIRCLE), "top_k": 1}
    )
    assert top.status_code == 200 and len(top.json()["predictions"]) == 1


def test_bad_input_is_refused_and_nothing_is_stored(stack, owner, workflow, images):
    before = stored(stack, workflow)
    predict = f"/inference/{workflow}/predict"
    for url in (
        "https://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "https://[::ffff:192.168.1.1]/cat.png",
        "https://100.64.0.1/cat.png",
        "ftp://example.com/cat.png",
        "file:///etc/passwd",
    ):
        body = assert_error(owner.http.post(predict, json={"image_url": url}), 400)
        assert body["code"] == "URL_NOT_ALLOWED" and body["field"] == "image_url", body
    for url in (f"{images}/page.html", f"{images}/text.png"):
        assert_error(owner.http.post(predict, json={"image_url": url}), 400, "NOT_AN_IMAGE")
    missing = assert_error(
        owner.http.post(predict, json={"image_url": f"{images}/nothing.png"}), 400
    )
    assert missing["code"] == "URL_FETCH_FAILED" and "404" in missing["detail"]
    for text in (b64(b"just some text"), "data:text/plain;base64,aGVsbG8=", "%%% not base64"):
        body = assert_error(owner.http.post(predict, json={"image_base64": text}), 400)
        assert body["field"] == "image_base64", body
    # a predictor's own refusal: an image's signature, then junk
    assert_error(owner.http.post(predict, json={"image_base64": b64(BROKEN)}), 400, "NOT_AN_IMAGE")
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_IMAGE_BYTES
    assert_error(owner.http.post(predict, json={"image_base64": b64(big)}), 413)
    assert_error(
        owner.http.post(predict, json={"image_base64": b64(CIRCLE), "image_url": "https://x.io"}),
        422,
    )
    assert_error(owner.http.post(predict, json={}), 422)
    # someone else's upload by s3:// (or one that does not exist): the same refusal
    alien = f"s3://{ResourceNames.for_stage('local').uploads_bucket}/datasets/999999/x/archive.zip"
    assert_error(owner.http.post(predict, json={"image_url": alien}), 400, "IMAGE_NOT_FOUND")

    batch = f"/inference/{workflow}/batch"
    ok = {"image_base64": b64(CIRCLE)}
    too_many = owner.http.post(batch, json={"images": [ok] * (MAX_BATCH + 1)})
    assert_error(too_many, 400, "TOO_MANY_IMAGES")
    private = owner.http.post(
        batch, json={"images": [ok, {"image_url": "https://192.168.0.10/cat.png"}]}
    )
    assert assert_error(private, 400, "URL_NOT_ALLOWED")["field"] == "images[1].image_url"
    not_image = owner.http.post(batch, json={"images": [ok, {"image_base64": b64(b"text")}]})
    assert assert_error(not_image, 400, "NOT_AN_IMAGE")["field"] == "images[1].image_base64"
    assert_error(owner.http.post(batch, json={"images": []}), 422)
    assert stored(stack, workflow) == before  # nothing of any refused request


def test_a_workflow_without_a_model_and_someone_elses(stack, owner, dataset, workflow):
    untrained = new_job(owner, dataset)
    for path, body in (
        ("predict", {"image_base64": b64(CIRCLE)}),
        ("batch", {"images": [{"image_base64": b64(CIRCLE)}]}),
    ):
        r = owner.http.post(f"/inference/{untrained['id']}/{path}", json=body)
        assert_error(r, 409, "NO_CHECKPOINT")
    assert stored(stack, str(untrained["id"])) == []
    other = Client(stack)
    for wf in (workflow, "999999", "not-a-workflow"):
        r = other.http.post(f"/inference/{wf}/predict", json={"image_base64": b64(CIRCLE)})
        assert_error(r, 404, "WORKFLOW_NOT_FOUND")


# --- a batch -------------------------------------------------------------------------
def test_a_batch_with_one_bad_image_completes_with_per_image_results(
    stack, owner, workflow, images
):
    r = owner.http.post(
        f"/inference/{workflow}/batch",
        json={
            "images": [
                {"image_url": f"{images}/circle.png"},
                {"image_base64": f"data:image/png;base64,{b64(SQUARE)}"},
                {"image_url": f"{images}/broken.png"},  # fetched, then refused by the model
            ]
        },
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "processing" and accepted["total_images"] == 3
    assert accepted["job_id"].startswith("batch_") and accepted["estimated_completion_time"]
    path = f"/inference/{workflow}/batch/{accepted['job_id']}"
    deadline = time.monotonic() + 180
    while (out := owner.http.get(path).json())["status"] != "completed":
        assert out["status"] == "processing", out
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert out["total_images"] == out["completed_images"] == 3 and out["failed_images"] == 1
    assert out["completed_at"] and out["job_id"] == accepted["job_id"]
    first, second, third = out["results"]
    assert [first["index"], second["index"], third["index"]] == [0, 1, 2]
    assert first["image_url"] == f"{images}/circle.png" and "image_url" not in second
    for result in (first, second):
        assert_predicted({**result, "model_version": out["model_version"]}, workflow)
        assert "error" not in result
    assert third["image_url"] == f"{images}/broken.png" and "predictions" not in third
    assert third["error"]["code"] == "NOT_AN_IMAGE" and third["error"]["message"]
    # its record, the image sent inline, and its result: under the workflow's inference/
    keys = stored(stack, workflow)
    prefix = f"inference/{workflow}/batches/{accepted['job_id']}/"
    assert {f"{prefix}request.json", f"{prefix}images/0001", f"{prefix}result.json"} <= set(keys)

    # another user's batch (and workflow) is not found; so is a batch that is not there
    bob = Client(stack)
    assert_error(bob.http.get(path), 404)
    assert_error(
        bob.http.post(
            f"/inference/{workflow}/batch", json={"images": [{"image_base64": b64(CIRCLE)}]}
        ),
        404,
    )
    assert_error(owner.http.get(f"/inference/{workflow}/batch/batch_{'0' * 32}"), 404)
