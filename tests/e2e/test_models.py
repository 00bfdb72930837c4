"""Seed 003's model catalogue over HTTP on the local stack: list with search, filters and
paging, detail, 404 in the error format; seed 002's /models/list from the same catalogue;
an unknown model refused when a job is made, with near misses; and the internal
/internal/models/prepare behind X-Internal-Auth."""

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_list_filters_and_pages(alice):
    r = alice.http.get(
        "/models", params={"task_type": "classification", "framework": "timm", "page": 1}
    )  # the seed's own request
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"models", "total", "page", "limit", "has_next"}
    assert body["total"] > 1000 and (body["page"], body["limit"], body["has_next"]) == (1, 20, True)
    first = body["models"][0]
    assert first["model_id"] == "resnet10t" and first["task_types"] == ["classification"]
    assert {"name", "parameters", "pretrained_weights", "description"} <= set(first)

    det = alice.http.get("/models", params={"task_type": "detection"}).json()
    assert det["total"] == 8 and det["has_next"] is False
    assert {m["framework"] for m in det["models"]} == {"ultralytics"}
    assert all("detection" in m["task_types"] for m in det["models"])

    found = alice.http.get("/models", params={"search": "ResNet50"}).json()
    top = found["models"][0]
    assert (top["model_id"], top["parameters"], top["parameter_count"]) == (
        "resnet50",
        "25.6M",
        25_557_032,
    )

    pages = [
        alice.http.get("/models", params={"search": "convnext", "limit": 10, "page": p}).json()
        for p in (1, 2)
    ]
    ids = [m["model_id"] for p in pages for m in p["models"]]
    assert len(ids) == len(set(ids)) == min(20, pages[0]["total"])
    last = -(-pages[0]["total"] // 10)
    end = alice.http.get("/models", params={"search": "convnext", "limit": 10, "page": last})
    assert end.json()["has_next"] is False and end.json()["models"]

    assert alice.http.get("/models", params={"task_type": "segmentation"}).json()["total"] == 0
    bad = alice.http.get("/models", params={"task_type": "teleport"})
    assert bad.status_code == 400 and bad.json()["field"] == "task_type"
    assert alice.http.get("/models", params={"limit": 1000}).status_code == 422
    assert httpx.get(alice.stack.api("/models")).status_code == 401


def test_detail_and_not_found(alice):
    r = alice.http.get("/models/resnet50")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["input_size"] == [224, 224, 3] and m["parameters"] == "25.6M"
    assert m["framework"] == "timm" and m["training_task_types"] == ["image_classification"]
    assert (
        "POST /api/v1/workflows" in m["example_usage"]
        and '"model": "resnet50"' in (m["example_usage"])
    )
    assert m["documentation_url"].startswith("https://huggingface.co/timm/resnet50.")
    assert "a1_in1k" in m["pretrained_weights"] and m["supported_backends"] == ["pytorch"]

    vit = alice.http.get("/models/vit_tiny_patch16_224").json()
    assert vit["fixed_input_size"] is True and '"image_size": 224' in vit["example_usage"]
    yolo = alice.http.get("/models/yolov8n").json()
    assert yolo["documentation_url"] == "https://docs.ultralytics.com/models/yolov8/"
    assert yolo["task_types"] == ["detection", "classification"] and yolo["input_size"][0] == 640
    asr = alice.http.get("/models/conformer").json()
    assert asr["task_types"] == ["speech_recognition"] and asr["input_size"] is None

    assert alice.http.get("/models/ResNet50").json()["model_id"] == "resnet50"
    missing = alice.http.get("/models/resnet999")
    body = missing.json()
    assert missing.status_code == 404 and body["code"] == "NOT_FOUND"
    assert body["error"]["code"] == "NOT_FOUND" and "resnet999" in body["error"]["message"]


def test_seed_002s_list_is_the_same_catalogue(alice):
    every = alice.http.get("/models/list").json()
    assert every["total"] == len(every["models"]) > 1000
    assert every["total"] == alice.http.get("/models").json()["total"]
    resnet = next(m for m in every["models"] if m["model_name"] == "resnet50")
    assert resnet == {
        "model_name": "resnet50",
        "framework": "timm",
        "task_types": ["image_classification"],
        "default_image_size": 224,
        "parameters": "25.6M",
        "pretrained": False,
        "description": resnet["description"],
    }


def test_an_unknown_model_is_refused_when_a_job_is_made(alice):
    r = alice.http.post(
        "/datasets",
        data={"name": "shapes"},
        files=[("files", ("s.zip", _imagefolder()))],
    )
    assert r.status_code == 201, r.text
    config = {
        "framework": "timm",
        "task_type": "image_classification",
        "dataset_id": r.json()["id"],
        "epochs": 1,
    }
    refused = alice.http.post(
        "/training/jobs", json={"config": {**config, "model_name": "resnet999"}}
    )
    body = refused.json()
    assert refused.status_code == 400 and body["field"] == "config.model_name"
    assert "did you mean resnet18, resnet50" in body["detail"]
    tag = alice.http.post(
        "/training/jobs", json={"config": {**config, "model_name": "resnet18.no_such_tag"}}
    )
    assert tag.status_code == 400 and tag.json()["field"] == "config.model_name"
    ok = alice.http.post("/training/jobs", json={"config": {**config, "model_name": "resnet18"}})
    assert ok.status_code == 201, ok.text


def _imagefolder():
    from tests import datasets

    return datasets.imagefolder(4)


def test_prepare_is_internal_and_downloads_nothing(stack):
    url = stack.api("/internal/models/prepare")
    secret = (stack.data_dir / "internal-secret").read_text().strip()
    ask = {"model_name": "resnet50", "task_type": "classification", "config": {}}
    assert httpx.post(url, json=ask).status_code == 401
    assert httpx.post(url, json=ask, headers={"X-Internal-Auth": "wrong"}).status_code == 401
    ok = httpx.post(url, json=ask, headers={"X-Internal-Auth": secret})
    assert ok.status_code == 200, ok.text
    p = ok.json()
    assert (p["model_name"], p["framework"], p["status"], p["downloaded"]) == (
        "resnet50",
        "timm",
        "ready",
        False,
    )
    assert p["weights"] == {"directory_configured": False, "files": [], "requested": None}
    weights = httpx.post(
        url,
        json={**ask, "config": {"weights": "resnet50.pth"}},
        headers={"X-Internal-Auth": secret},
    ).json()
    assert weights["status"] == "weights_unverified"
    for bad in (
        {"model_name": "resnet999"},
        {"model_name": "https://example.invalid/model.pt"},
        {"model_name": "resnet50", "config": {"weights": "../../etc/passwd.pth"}},
        {"model_name": "yolov8n", "task_type": "speech_recognition"},
    ):
        r = httpx.post(url, json=bad, headers={"X-Internal-Auth": secret})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "INVALID_REQUEST"
