"""The model catalogue: the generated timm part (read without timm), search and paging,
near-miss suggestions for unknown names, the weights the operator provides, and the
routes over HTTP into the ASGI app (no AWS: a stub authenticates)."""

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from functions.api.app import create_app
from shared import catalogue
from shared.catalogue import UnknownModel, check_model, search_models, suggest
from shared.errors import InvalidInput
from shared.models import Principal
from shared.settings import load_settings
from shared.wiring import build

ROOT = Path(__file__).resolve().parents[2]
CLS, DET = "image_classification", "object_detection"
SECRET = "internal-" + "s" * 40


def test_the_catalogue_loads_and_checks_without_timm_or_torch():
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("timm", "torch", "torchvision", "ultralytics"):
            raise ImportError(f"{name} is not importable here")
from importlib.abc import MetaPathFinder
sys.meta_path.insert(0, Block())
from shared import catalogue
catalogue.check_model("timm", "image_classification", "resnet50", {})
assert len(catalogue.search_models(None, "classification", "timm")) > 1000
try:
    catalogue.check_model("timm", "image_classification", "resnet999", {})
except catalogue.UnknownModel as err:
    print(err.suggestions)
assert not any(m.split(".")[0] in ("timm", "torch") for m in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "resnet" in out.stdout


def test_the_generated_part_is_timms_registry_at_the_pinned_version():
    data = catalogue.timm_catalogue()
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    timm_pin = next(r for r in pins["optional-dependencies"]["trainer"] if r.startswith("timm=="))
    # regenerate (make catalogue) when the pin moves
    assert data["timm_version"] == timm_pin.split("==")[1]
    archs = data["architectures"]
    assert len(archs) > 1000
    counted = [e["parameter_count"] for e in archs.values() if e["parameter_count"]]
    assert len(counted) > 0.95 * len(archs)
    for e in archs.values():
        assert len(e["input_size"]) == 3 and e["input_size"][2] in (1, 3)
        assert isinstance(e["tags"], list)
    assert archs["resnet50"]["parameter_count"] == 25_557_032
    assert archs["resnet50"]["input_size"] == [224, 224, 3]
    assert archs["vit_tiny_patch16_224"]["fixed_input_size"] is True
    # the featured timm models are all in timm's registry
    assert set(catalogue.FEATURED_TIMM) <= set(archs)


def test_unknown_model_names_are_refused_with_near_misses():
    with pytest.raises(UnknownModel) as err:
        check_model("timm", CLS, "resnet999", {})
    e = err.value
    assert isinstance(e, InvalidInput) and e.http_status == 400 and e.code == "INVALID_REQUEST"
    assert e.field == "config.model_name"
    assert e.suggestions[:4] == ["resnet18", "resnet50", "resnet26", "resnet34"]
    assert "did you mean" in e.detail and e.suggestions[0] in e.detail
    assert e.details == {
        "reason": "Model 'resnet999' not found in the timm catalogue",
        "available_models": e.suggestions,
    }
    with pytest.raises(UnknownModel) as err:
        check_model("ultralytics", DET, "yolov8x", {})
    assert set(err.value.suggestions) >= {"yolov8n", "yolov8s", "yolov8m"}
    with pytest.raises(UnknownModel) as err:
        check_model("timm", CLS, "efficientnet_b99", {})
    assert "efficientnet_b0" in err.value.suggestions
    # a near miss in another framework is still offered
    assert suggest("yolov8n", "timm", CLS) == [] and "yolov8n" in suggest("yolov8")


def test_timm_tags_must_be_the_architectures_own():
    check_model("timm", CLS, "resnet50.tv_in1k", {})
    with pytest.raises(InvalidInput) as err:
        check_model("timm", CLS, "resnet50.nope", {})
    assert err.value.field == "config.model_name" and "a1_in1k" in err.value.detail
    with pytest.raises(InvalidInput):
        check_model("timm", CLS, "resnet50.", {})


def test_search_filters_and_ranks():
    ids = [r["model_id"] for r in search_models("ResNet-50")]
    assert ids[0] == "resnet50" and all("resnet50" in i for i in ids[:5])
    assert [r["model_id"] for r in search_models("yolo11", framework="ultralytics")] == [
        "yolo11n",
        "yolo11s",
        "yolo11m",
    ]
    det = search_models(task_type="detection")
    assert det and {r["framework"] for r in det} == {"ultralytics"}
    assert search_models(task_type="object_detection") == det
    assert search_models(task_type="detection", framework="timm") == []
    assert search_models(task_type="segmentation") == []
    assert search_models(framework="huggingface") == []
    assert [r["model_id"] for r in search_models(task_type="speech_recognition")] == [
        "rnn-t",
        "conformer",
    ]
    with pytest.raises(InvalidInput) as err:
        search_models(task_type="teleportation")
    assert err.value.field == "task_type"
    everything = search_models()
    assert [r["model_id"] for r in everything[:3]] == ["resnet10t", "resnet18", "resnet50"]
    assert len({r["model_id"] for r in everything}) == len(everything)


def test_lookup_is_forgiving_about_case_and_tags():
    assert catalogue.get_model("ResNet50")["model_id"] == "resnet50"
    assert catalogue.get_model("resnet50.a1_in1k")["model_id"] == "resnet50"
    assert catalogue.canonical_name("YOLO11s") == "yolo11s"
    assert catalogue.canonical_name("resnet50.A1_IN1K") == "resnet50.a1_in1k"
    assert catalogue.framework_of("yolov8n") == "ultralytics"
    assert catalogue.framework_of("conformer") == "torchaudio"
    assert catalogue.framework_of("convnext_atto") == "timm"
    for bad in ("resnet999", "resnet50.nope", "", "x" * 300, None, "../resnet50"):
        assert catalogue.get_model(bad) is None


def test_seed_002s_list_keeps_its_shape():
    models = catalogue.list_models(None, None)
    assert len(models) == len(search_models())
    assert all(
        set(m)
        == {
            "model_name",
            "framework",
            "task_types",
            "default_image_size",
            "parameters",
            "pretrained",
            "description",
        }
        for m in models
    )
    resnet = next(m for m in models if m["model_name"] == "resnet50")
    assert resnet["task_types"] == [CLS] and resnet["parameters"] == "25.6M"
    assert resnet["default_image_size"] == 224
    assert {m["framework"] for m in catalogue.list_models("ultralytics", DET)} == {"ultralytics"}
    assert catalogue.list_models("timm", DET) == []


@pytest.fixture
def weights_dir(tmp_path):
    d = tmp_path / "weights"
    d.mkdir()
    for name in (
        "resnet50.pth",
        "resnet50.a1_in1k.safetensors",
        "resnet50-mine.pt",
        "resnet50_gn.pth",  # another architecture's
        "resnet50.npz",  # not a kind timm starts from here
        "yolov8n.pt",
    ):
        (d / name).write_bytes(b"x")
    (d / "resnet50.sub.pth").mkdir()  # not a file
    (tmp_path / "outside.pth").write_bytes(b"x")
    (d / "resnet50.escape.pth").symlink_to(tmp_path / "outside.pth")
    return d


def test_operator_weights_are_listed_by_the_trainers_rule(weights_dir):
    w = catalogue.operator_weights("timm", "resnet50", str(weights_dir), "resnet50.pth")
    assert w == {
        "directory_configured": True,
        "files": ["resnet50-mine.pt", "resnet50.a1_in1k.safetensors", "resnet50.pth"],
        "requested": {"file": "resnet50.pth", "available": True},
    }
    gone = catalogue.operator_weights("timm", "resnet50", str(weights_dir), "resnet50.escape.pth")
    assert gone["requested"]["available"] is False
    assert catalogue.operator_weights("ultralytics", "yolov8n", str(weights_dir))["files"] == [
        "yolov8n.pt"
    ]
    assert catalogue.operator_weights("torchaudio", "conformer", str(weights_dir))["files"] == []
    assert catalogue.operator_weights("timm", "resnet50", None) == {
        "directory_configured": False,
        "files": [],
    }


# --- over HTTP into the app -------------------------------------------------------------


class StubAuth:
    def authenticate(self, token):
        if token != "good":
            from shared.errors import Unauthorized

            raise Unauthorized("bad token")
        return Principal(user_id=1, role="user")

    def identify(self, token, *, read=True):
        return self.authenticate(token), None  # the user itself: only rate limits read it


def call(weights_dir, *requests):
    settings = load_settings(
        rate_limit_per_minute=0,
        auth_rate_limit_per_minute=0,
        internal_secret=SECRET,
        weights_dir=str(weights_dir) if weights_dir else None,
    )
    container = build(settings)
    container.auth = StubAuth()
    app = create_app(settings, container)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api/api/v1") as http:
            return [await http.request(*r[:2], **(r[2] if len(r) > 2 else {})) for r in requests]

    return asyncio.run(run())


AUTH = {"headers": {"Authorization": "Bearer good"}}
INTERNAL = {"X-Internal-Auth": SECRET}


def test_the_routes_page_through_the_catalogue():
    pages = call(
        None,
        *[
            ("GET", "/models", {"params": {"search": "resnet", "page": p, "limit": 7}, **AUTH})
            for p in (1, 2, 3)
        ],
        ("GET", "/models", {"params": {"search": "resnet", "limit": 100, "page": 1000}, **AUTH}),
        ("GET", "/models", {"params": {"limit": 101}, **AUTH}),
        ("GET", "/models"),
        ("GET", "/models/resnet999", AUTH),
    )
    first = pages[0].json()
    want = [r["model_id"] for r in search_models("resnet")]
    assert first["total"] == len(want) and first["has_next"] is True and first["limit"] == 7
    got = [m["model_id"] for p in pages[:3] for m in p.json()["models"]]
    assert got == want[:21]
    assert pages[3].json()["models"] == [] and pages[3].json()["has_next"] is False
    assert pages[4].status_code == 422
    assert pages[5].status_code == 401
    missing = pages[6]
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_prepare_says_what_the_catalogue_knows_and_what_the_operator_provides(weights_dir):
    url = "/internal/models/prepare"
    r = call(
        weights_dir,
        ("POST", url, {"json": {"model_name": "resnet50"}}),
        ("POST", url, {"json": {"model_name": "resnet50"}, "headers": {"X-Internal-Auth": "no"}}),
        ("POST", url, {"json": {"model_name": "ResNet50", "task_type": "classification"}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "resnet50", "config": {"weights": "resnet50.pth"}}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "resnet50", "config": {"advanced_config": {"weights": "nope.pth"}}}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "resnet999"}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "resnet50", "task_type": "detection"}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "resnet50", "config": {"weights": "https://x.invalid/w.pth"}}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "hf-hub:timm/resnet50.a1_in1k"}, "headers": INTERNAL}),
        ("POST", url, {"json": {"model_name": "yolov8n", "task_type": "detection"}, "headers": INTERNAL}),
    )  # fmt: skip
    assert r[0].status_code == 401 and r[1].status_code == 401
    ready = r[2].json()
    assert r[2].status_code == 200, r[2].text
    assert ready["model_name"] == "resnet50" and ready["framework"] == "timm"
    assert (ready["status"], ready["downloaded"]) == ("ready", False)
    assert ready["task_type"] == "classification" and ready["training_task_type"] == CLS
    assert ready["input_size"] == [224, 224, 3] and ready["parameters"] == "25.6M"
    assert ready["weights"]["directory_configured"] is True
    assert "resnet50.pth" in ready["weights"]["files"]
    assert r[3].json()["status"] == "ready"
    assert r[3].json()["weights"]["requested"] == {"file": "resnet50.pth", "available": True}
    assert r[4].json()["status"] == "weights_unavailable"
    unknown = r[5].json()
    assert r[5].status_code == 400 and unknown["field"] == "model_name"
    assert "did you mean" in unknown["detail"]
    assert r[6].status_code == 400 and r[6].json()["field"] == "task_type"
    assert r[7].status_code == 400 and r[7].json()["field"] == "config.advanced_config.weights"
    assert r[8].status_code == 400
    assert r[9].json()["framework"] == "ultralytics" and r[9].json()["weights"]["files"] == [
        "yolov8n.pt"
    ]


def test_prepare_without_a_weights_directory_cannot_vouch_for_weights():
    r = call(
        None,
        (
            "POST",
            "/internal/models/prepare",
            {
                "json": {"model_name": "resnet50", "config": {"weights": "a.pth"}},
                "headers": INTERNAL,
            },
        ),
    )[0]
    assert r.status_code == 200 and r.json()["status"] == "weights_unverified"
    assert r.json()["weights"] == {
        "directory_configured": False,
        "files": [],
        "requested": {"file": "a.pth", "available": False},
    }
