"""What trains here: each framework's task types, primary metric and dataset formats, the
model names it accepts, seed 002's model list (/models/list), its advanced settings with
presets (/training/config-schema) and seed 000's training defaults. Pure data, and
:func:`check_model`: the training service checks jobs against it (and the trainer checks
them again), the API lists it."""

from __future__ import annotations

import re
from typing import Any

from shared.errors import InvalidInput

# What each framework trains here: per task type, the primary metric (and whether
# higher is better) and the dataset formats it reads; "models" limits the model names.
FRAMEWORKS: dict[str, dict[str, Any]] = {
    "timm": {"tasks": {"image_classification": (("accuracy", "max"), ("imagefolder",))}},
    "ultralytics": {
        "tasks": {
            "object_detection": (("mAP50-95", "max"), ("yolo", "coco")),
            "image_classification": (("accuracy", "max"), ("imagefolder",)),
        },
        "models": (
            "yolov8n",
            "yolov8s",
            "yolov8m",
            "yolo11n",
            "yolo11s",
            "yolo11m",
            "yolo26n",
            "yolo26s",
        ),
    },
    "torchaudio": {
        "tasks": {"speech_recognition": (("cer", "min"), ("ljspeech",))},
        "models": ("conformer", "rnn-t"),
    },
}
ASR_DEFAULTS = {"epochs": 20, "batch_size": 32, "learning_rate": 0.001, "optimizer": "Adam"}


# Seed 002's /models/list: what can be trained here (architectures built from config;
# advanced_config.weights can name a file in the operator's weights directory).
MODELS: list[dict[str, Any]] = (
    [
        {
            "model_name": name,
            "framework": "timm",
            "task_types": ["image_classification"],
            "default_image_size": size,
            "parameters": params,
            "pretrained": False,
            "description": desc,
        }
        for name, size, params, desc in (
            ("resnet10t", 224, "4.9M", "ResNet-10-T, a small ResNet for quick experiments"),
            ("resnet18", 224, "11.7M", "ResNet-18 architecture"),
            ("resnet50", 224, "25.6M", "ResNet-50 architecture"),
            ("mobilenetv3_small_100", 224, "2.5M", "MobileNetV3 Small, for CPUs and edge devices"),
            ("efficientnet_b0", 224, "5.3M", "EfficientNet-B0"),
            ("vit_tiny_patch16_224", 224, "5.7M", "Vision Transformer, tiny"),
            ("convnext_atto", 224, "3.7M", "ConvNeXt Atto"),
        )
    ]
    + [
        {
            "model_name": name,
            "framework": "ultralytics",
            "task_types": ["object_detection", "image_classification"],
            "default_image_size": 640,
            "parameters": params,
            "pretrained": False,
            "description": f"{desc}, built from its model YAML (detection, or its -cls variant for classification)",
        }
        for name, params, desc in (
            ("yolov8n", "3.2M", "YOLOv8 nano"),
            ("yolov8s", "11.2M", "YOLOv8 small"),
            ("yolov8m", "25.9M", "YOLOv8 medium"),
            ("yolo11n", "2.6M", "YOLO11 nano"),
            ("yolo11s", "9.4M", "YOLO11 small"),
            ("yolo11m", "20.1M", "YOLO11 medium"),
            ("yolo26n", "2.4M", "YOLO26 nano"),
            ("yolo26s", "9.5M", "YOLO26 small"),
        )
    ]
    + [
        {
            "model_name": "rnn-t",
            "framework": "torchaudio",
            "task_types": ["speech_recognition"],
            "default_image_size": None,
            "parameters": "~2-12M (dim, layers)",
            "pretrained": False,
            "description": "Conformer encoder with an LSTM prediction network and joiner (RNN-T loss, greedy decoding)",
        },
        {
            "model_name": "conformer",
            "framework": "torchaudio",
            "task_types": ["speech_recognition"],
            "default_image_size": None,
            "parameters": "~1-10M (dim, layers)",
            "pretrained": False,
            "description": "Conformer encoder with a CTC head and greedy decoding (log-mel input, 16 kHz)",
        },
    ]
)

_SEED = {
    "name": "seed",
    "type": "number",
    "label": "Seed",
    "description": "Random seed",
    "default": 0,
    "min": 0,
    "max": 2**31 - 1,
    "step": 1,
}
_OPTIMIZERS = [
    {"value": "adamw", "label": "AdamW", "description": "Adam with decoupled weight decay"},
    {"value": "adam", "label": "Adam", "description": "Adaptive Moment Estimation"},
    {"value": "sgd", "label": "SGD", "description": "Stochastic Gradient Descent"},
]
CONFIG_FIELDS: dict[str, list[dict[str, Any]]] = {
    "timm": [
        {
            "name": "optimizer.type",
            "type": "select",
            "label": "Optimizer",
            "description": "Optimization algorithm",
            "default": "adamw",
            "options": _OPTIMIZERS,
        },
        {
            "name": "optimizer.learning_rate",
            "type": "number",
            "label": "Learning Rate",
            "description": "Initial learning rate",
            "default": 0.001,
            "min": 1e-6,
            "max": 1.0,
            "step": 1e-5,
        },
        {
            "name": "weight_decay",
            "type": "number",
            "label": "Weight decay",
            "description": "AdamW weight decay",
            "default": 0.01,
            "min": 0.0,
            "max": 1.0,
            "step": 0.001,
        },
        {
            "name": "image_size",
            "type": "number",
            "label": "Image size",
            "description": "Square input size, pixels",
            "default": 224,
            "min": 16,
            "max": 1024,
            "step": 16,
        },
        _SEED,
        {
            "name": "weights",
            "type": "string",
            "label": "Starting weights",
            "default": None,
            "description": "File name of a weights file (.pt, .pth or .safetensors) in the "
            "operator's weights directory; nothing is downloaded",
        },
    ],
}
CONFIG_FIELDS["torchaudio"] = [
    {
        "name": "dim",
        "type": "number",
        "label": "Model width",
        "description": "Conformer dimension",
        "default": 144,
        "min": 32,
        "max": 1024,
        "step": 16,
    },
    {
        "name": "layers",
        "type": "number",
        "label": "Layers",
        "description": "Conformer blocks",
        "default": 4,
        "min": 1,
        "max": 24,
        "step": 1,
    },
    {
        "name": "checkpoint_interval_s",
        "type": "number",
        "label": "Checkpoint interval",
        "description": "Seconds between last-checkpoint saves",
        "default": 60,
        "min": 5,
        "max": 3600,
        "step": 5,
    },
]
CONFIG_FIELDS["ultralytics"] = [
    {
        "name": "image_size",
        "type": "number",
        "label": "Image size",
        "description": "Square input size, pixels",
        "default": 640,
        "min": 32,
        "max": 1536,
        "step": 32,
    },
    {
        "name": "optimizer",
        "type": "select",
        "label": "Optimizer",
        "description": "Optimization algorithm",
        "default": "AdamW",
        "options": [{"value": v, "label": v, "description": ""} for v in ("AdamW", "Adam", "SGD")],
    },
    {
        "name": "mosaic",
        "type": "number",
        "label": "Mosaic",
        "description": "Mosaic augmentation probability",
        "default": 1.0,
        "min": 0.0,
        "max": 1.0,
        "step": 0.1,
    },
    {
        "name": "warmup_epochs",
        "type": "number",
        "label": "Warm-up epochs",
        "description": "Learning-rate warm-up",
        "default": 3,
        "min": 0,
        "max": 20,
        "step": 1,
    },
    {
        "name": "nbs",
        "type": "number",
        "label": "Nominal batch size",
        "description": "Gradients accumulate up to this many images per optimizer step",
        "default": 64,
        "min": 1,
        "max": 1024,
        "step": 1,
    },
    {
        "name": "patience",
        "type": "number",
        "label": "Early-stopping patience",
        "description": "Epochs without improvement before stopping",
        "default": 100,
        "min": 1,
        "max": 1000,
        "step": 1,
    },
    _SEED,
    {
        "name": "weights",
        "type": "string",
        "label": "Starting weights",
        "default": None,
        "description": "File name of ultralytics weights (.pt) in the operator's weights "
        "directory, for the same model; nothing is downloaded",
    },
]
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ultralytics": {
        "basic": {
            "epochs": 50,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "advanced_config": {"image_size": 640},
        },
        "standard": {
            "epochs": 100,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "advanced_config": {"image_size": 640, "mosaic": 1.0},
        },
        "aggressive": {
            "epochs": 300,
            "batch_size": 64,
            "learning_rate": 2e-3,
            "advanced_config": {"image_size": 640, "mosaic": 1.0, "warmup_epochs": 5},
        },
    },
    "torchaudio": {
        "basic": {
            "epochs": 20,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "advanced_config": {"dim": 96, "layers": 2},
        },
        "standard": {
            "epochs": 100,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "advanced_config": {"dim": 144, "layers": 4},
        },
        "aggressive": {
            "epochs": 300,
            "batch_size": 64,
            "learning_rate": 2e-3,
            "advanced_config": {"dim": 256, "layers": 8},
        },
    },
    "timm": {
        "basic": {
            "epochs": 10,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "advanced_config": {"weight_decay": 0.01},
        },
        "standard": {
            "epochs": 50,
            "batch_size": 64,
            "learning_rate": 5e-4,
            "advanced_config": {"weight_decay": 0.05},
        },
        "aggressive": {
            "epochs": 100,
            "batch_size": 128,
            "learning_rate": 2e-3,
            "advanced_config": {"weight_decay": 0.1},
        },
    },
}


def config_schema(framework: str, task_type: str | None) -> dict[str, Any]:
    if framework not in FRAMEWORKS:
        raise InvalidInput(f"framework must be one of {', '.join(FRAMEWORKS)}", field="framework")
    tasks = FRAMEWORKS[framework]["tasks"]
    task = task_type or next(iter(tasks))
    if task not in tasks:
        raise InvalidInput(f"{framework} trains {', '.join(tasks)}", field="task_type")
    return {
        "framework": framework,
        "task_type": task,
        "schema": {"fields": CONFIG_FIELDS[framework]},
        "presets": PRESETS[framework],
    }


def list_models(framework: str | None, task_type: str | None) -> list[dict[str, Any]]:
    """Seed 002's model list, filtered by framework and task type."""
    return [
        m
        for m in MODELS
        if (framework is None or m["framework"] == framework)
        and (task_type is None or task_type in m["task_types"])
    ]


# What a job may start from. Model names are catalogue names (timm: an architecture name,
# with an optional pretrained tag), never a path, URL or hub id; starting weights are the
# bare file name of a file in the operator's weights directory (CRUCIBLE_WEIGHTS_DIR),
# which only the trainer resolves. Loaders that fetch or unpickle never see a user string.
WEIGHTS_SUFFIXES: dict[str, tuple[str, ...]] = {
    "timm": (".pt", ".pth", ".safetensors"),
    "ultralytics": (".pt",),
}
_TIMM_NAME = re.compile(r"[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_]{1,100})?")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_model(
    framework: str, task_type: str, model_name: str, advanced_config: dict[str, Any] | None
) -> None:
    """Raise :class:`InvalidInput` unless ``model_name`` is one the catalogue offers for
    ``framework`` and ``task_type``, and ``advanced_config["weights"]``, if given, is the
    bare file name of a weights file of a kind the framework starts from."""
    spec = FRAMEWORKS.get(framework)
    if spec is None:
        raise InvalidInput(
            f"framework must be one of {', '.join(FRAMEWORKS)}", field="config.framework"
        )
    if task_type not in spec["tasks"]:
        raise InvalidInput(
            f"{framework} trains {', '.join(spec['tasks'])} here", field="config.task_type"
        )
    models = spec.get("models")
    if not isinstance(model_name, str) or not model_name:
        raise InvalidInput("model_name is required", field="config.model_name")
    if models is not None and model_name not in models:
        raise InvalidInput(
            f"Model '{_shown(model_name)}' is not available: {framework} trains "
            f"{', '.join(models)} here",
            field="config.model_name",
        )
    if models is None and not _TIMM_NAME.fullmatch(model_name):
        raise InvalidInput(
            f"Model '{_shown(model_name)}' is not a {framework} architecture name (such as "
            "resnet18): a name from the model list, not a path, URL or hub id",
            field="config.model_name",
        )
    if advanced_config is not None and not isinstance(advanced_config, dict):
        raise InvalidInput("advanced_config must be an object", field="config.advanced_config")
    weights = (advanced_config or {}).get("weights")
    if weights is None or weights == "":
        return
    suffixes = WEIGHTS_SUFFIXES.get(framework)
    if suffixes is None:
        raise InvalidInput(
            f"{framework} models train from scratch here: weights is not supported",
            field="config.advanced_config.weights",
        )
    if (
        not isinstance(weights, str)
        or not _FILE_NAME.fullmatch(weights)
        or ".." in weights
        or not weights.lower().endswith(suffixes)
    ):
        raise InvalidInput(
            f"weights must be the file name ({' or '.join(suffixes)}) of a weights file in "
            f"the operator's weights directory, not '{_shown(weights)}': no paths or URLs",
            field="config.advanced_config.weights",
        )
