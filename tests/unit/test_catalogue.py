"""The catalogue's check of what a job may start from (the training service runs it when a
job is created, the trainer again before it trains): catalogue model names only, and
starting weights only as the bare file name of an operator-provided file."""

import pytest

from shared.catalogue import FRAMEWORKS, check_model
from shared.errors import InvalidInput

DET, CLS = "object_detection", "image_classification"


@pytest.mark.parametrize(
    ("framework", "task", "model", "cfg"),
    [
        ("ultralytics", DET, "yolov8n", {}),
        ("ultralytics", CLS, "yolo11s", {"image_size": 64}),
        ("ultralytics", DET, "yolo26n", {"weights": "yolo26n.pt"}),
        ("timm", CLS, "resnet10t", {}),
        ("timm", CLS, "convnext_atto", None),
        ("timm", CLS, "vit_tiny_patch16_224.augreg_in21k", {"weights": "vit-tiny_1.safetensors"}),
        ("timm", CLS, "resnet18", {"weights": "resnet18.a1_in1k.pth"}),
        ("timm", CLS, "resnet18", {"weights": ""}),
        ("timm", CLS, "resnet18", {"weights": None}),
        ("torchaudio", "speech_recognition", "conformer", {"dim": 96}),
        ("torchaudio", "speech_recognition", "rnn-t", {}),
    ],
)
def test_catalogue_models_and_operator_weights_are_accepted(framework, task, model, cfg):
    check_model(framework, task, model, cfg)


@pytest.mark.parametrize(
    ("framework", "task", "model"),
    [
        ("ultralytics", DET, "https://example.invalid/x.pt"),
        ("ultralytics", DET, "../../x.pt"),
        ("ultralytics", DET, "/tmp/evil.pt"),
        ("ultralytics", DET, "yolov8n.pt"),
        ("ultralytics", DET, "yolov8n.yaml"),
        ("ultralytics", CLS, "yolov99"),
        ("ultralytics", DET, ""),
        ("timm", CLS, "hf-hub:timm/resnet18.a1_in1k"),
        ("timm", CLS, "timm/resnet18"),
        ("timm", CLS, "C:\\models\\x"),
        ("timm", CLS, "resnet18..pth"),
        ("timm", CLS, "/abs/resnet"),
        ("timm", CLS, "file:///etc/passwd"),
        ("timm", CLS, "a.b.c"),
        ("timm", CLS, "x" * 300),
        ("timm", CLS, "resnet999"),  # well-formed, but not an architecture timm has
        ("timm", CLS, "resnet18.no_such_tag"),
        ("timm", CLS, 42),
        ("torchaudio", "speech_recognition", "wav2vec2"),
    ],
)
def test_anything_else_is_refused_on_model_name(framework, task, model):
    with pytest.raises(InvalidInput) as err:
        check_model(framework, task, model, {})
    assert err.value.field == "config.model_name"
    assert err.value.http_status == 400


@pytest.mark.parametrize(
    ("framework", "weights"),
    [
        ("timm", "/opt/weights/resnet18.pth"),
        ("timm", "../resnet18.pth"),
        ("timm", "..pth"),
        ("timm", "sub/resnet18.pth"),
        ("timm", "sub\\resnet18.pth"),
        ("timm", "https://example.invalid/resnet18.pth"),
        ("timm", "s3://bucket/resnet18.pth"),
        ("timm", "C:resnet18.pth"),
        ("timm", "resnet18.npz"),
        ("timm", "resnet18"),
        ("timm", ".hidden.pth"),
        ("timm", "-rf.pth"),
        ("timm", ["a.pth"]),
        ("timm", 3),
        ("ultralytics", "yolov8n.pth"),
        ("ultralytics", "../../yolov8n.pt"),
        ("torchaudio", "conformer.pt"),
    ],
)
def test_weights_other_than_a_bare_file_name_are_refused(framework, weights):
    task = next(iter(FRAMEWORKS[framework]["tasks"]))
    model = {"timm": "resnet18", "ultralytics": "yolov8n", "torchaudio": "conformer"}[framework]
    with pytest.raises(InvalidInput) as err:
        check_model(framework, task, model, {"weights": weights})
    assert err.value.field == "config.advanced_config.weights"


def test_framework_task_and_config_shape():
    with pytest.raises(InvalidInput) as err:
        check_model("caffe", "image_classification", "x", {})
    assert err.value.field == "config.framework"
    with pytest.raises(InvalidInput) as err:
        check_model("timm", "object_detection", "resnet18", {})
    assert err.value.field == "config.task_type"
    with pytest.raises(InvalidInput) as err:
        check_model("timm", CLS, "resnet18", ["weights"])
    assert err.value.field == "config.advanced_config"


def test_messages_say_what_to_fix_without_echoing_long_input():
    with pytest.raises(InvalidInput) as err:
        check_model("ultralytics", DET, "https://example.invalid/" + "a" * 500 + ".pt", {})
    assert "yolov8n" in err.value.detail and len(err.value.detail) < 300
    with pytest.raises(InvalidInput) as err:
        check_model("timm", CLS, "resnet18", {"weights": "/etc/passwd.pt"})
    assert "weights directory" in err.value.detail
