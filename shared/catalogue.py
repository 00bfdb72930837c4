"""What trains here: each framework's task types, primary metric and dataset formats, the
models it accepts, its advanced settings with presets (/training/config-schema) and seed
000's training defaults. Pure data, and the functions that read it: :func:`check_model`
(the training service checks jobs against it, and the trainer checks them again), the
model catalogue seeds 002 (``/models/list``) and 003 (``/models``, ``/models/{id}``) list,
with search and near-miss suggestions.

The timm part is generated from timm's own registry (``catalogue_timm.json``, written by
``python -m crucible_trainer.gen_catalogue``, ``make catalogue``, in the trainer image's
environment): every architecture timm can build, with its parameter count and default
input size, so that nothing that lists or checks models imports timm. The ultralytics and
torchaudio models are the few listed here.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from shared import training_options
from shared.errors import InvalidInput

# What each framework trains here: per task type, the primary metric (and whether
# higher is better) and the dataset formats it reads; "models" limits the model names
# (timm's are the architectures in TIMM_CATALOGUE_PATH).
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
TIMM_CATALOGUE_PATH = Path(__file__).with_name("catalogue_timm.json")
ASR_DEFAULTS = {"epochs": 20, "batch_size": 32, "learning_rate": 0.001, "optimizer": "Adam"}

# Seed 003 names task types as a vision platform does; the catalogue (and seed 002) as
# the frameworks do. Either is accepted where a task type is asked for.
SEED003_TASKS = {
    "image_classification": "classification",
    "object_detection": "detection",
    "speech_recognition": "speech_recognition",
}
TASK_TYPES = {
    **{task: task for task in SEED003_TASKS},
    **{short: task for task, short in SEED003_TASKS.items()},
    "segmentation": "image_segmentation",  # a seed 003 task type nothing trains here (yet)
    "image_segmentation": "image_segmentation",
}
NOTHING_DOWNLOADED = (
    "Nothing is downloaded here: a job starts from the architecture's initialisation, or "
    "from a weights file the operator placed in the weights directory "
    "(advanced_config.weights, by file name). pretrained_weights names the weights "
    "published upstream, which the operator may provide."
)

# Hand-written names and descriptions of the models seed 002's list always showed first
# (timm: parameter counts and input sizes come from the generated catalogue).
FEATURED_TIMM: dict[str, tuple[str, str]] = {
    "resnet10t": ("ResNet-10-T", "ResNet-10-T, a small ResNet for quick experiments"),
    "resnet18": ("ResNet18", "ResNet-18 architecture"),
    "resnet50": ("ResNet50", "ResNet-50 architecture: a deep residual network with 50 layers"),
    "mobilenetv3_small_100": (
        "MobileNetV3 Small",
        "MobileNetV3 Small, for CPUs and edge devices",
    ),
    "efficientnet_b0": ("EfficientNet-B0", "EfficientNet-B0"),
    "vit_tiny_patch16_224": ("ViT-Tiny/16", "Vision Transformer, tiny"),
    "convnext_atto": ("ConvNeXt Atto", "ConvNeXt Atto"),
}
# model, name, parameters of its detection network for 80 classes, as built here (counted
# with ultralytics 8.4.190: DetectionModel("<model>.yaml", nc=80))
_ULTRALYTICS: list[tuple[str, str, int]] = [
    ("yolov8n", "YOLOv8 Nano", 3_157_200),
    ("yolov8s", "YOLOv8 Small", 11_166_560),
    ("yolov8m", "YOLOv8 Medium", 25_902_640),
    ("yolo11n", "YOLO11 Nano", 2_624_080),
    ("yolo11s", "YOLO11 Small", 9_458_752),
    ("yolo11m", "YOLO11 Medium", 20_114_688),
    ("yolo26n", "YOLO26 Nano", 2_572_280),
    ("yolo26s", "YOLO26 Small", 10_009_784),
]
_TORCHAUDIO: list[dict[str, Any]] = [
    {
        "model_id": "rnn-t",
        "name": "Conformer RNN-T",
        "parameters": "~2-12M (dim, layers)",
        "description": "Conformer encoder with an LSTM prediction network and joiner (RNN-T loss, greedy decoding)",
        "documentation_url": "https://docs.pytorch.org/audio/stable/generated/torchaudio.models.RNNT.html",
    },
    {
        "model_id": "conformer",
        "name": "Conformer (CTC)",
        "parameters": "~1-10M (dim, layers)",
        "description": "Conformer encoder with a CTC head and greedy decoding (log-mel input, 16 kHz)",
        "documentation_url": "https://docs.pytorch.org/audio/stable/generated/torchaudio.models.Conformer.html",
    },
]

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
CONFIG_FIELDS: dict[str, list[dict[str, Any]]] = {
    "timm": [
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
        "description": "Seconds between last-checkpoint saves (one is also saved at the end "
        "and when the job is stopped); without it, the operator's CRUCIBLE_CHECKPOINT_INTERVAL_S",
        "default": 600,
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
            "advanced_config": {"optimizer": {"type": "adamw", "weight_decay": 0.01}},
        },
        "standard": {
            "epochs": 50,
            "batch_size": 64,
            "learning_rate": 5e-4,
            "advanced_config": {
                "optimizer": {"type": "adamw", "weight_decay": 0.05},
                "scheduler": {"type": "cosine", "warmup_epochs": 2, "warmup_lr": 1e-5},
                "augmentation": {"enabled": True, "random_flip": True},
            },
        },
        "aggressive": {
            "epochs": 100,
            "batch_size": 128,
            "learning_rate": 2e-3,
            "advanced_config": {
                "optimizer": {"type": "adamw", "weight_decay": 0.1},
                "scheduler": {"type": "cosine", "warmup_epochs": 5, "warmup_lr": 1e-6},
                "augmentation": {
                    "enabled": True,
                    "random_flip": True,
                    "color_jitter": True,
                    "brightness": 0.2,
                    "contrast": 0.2,
                },
                "mixed_precision": True,
                "gradient_clip_value": 1.0,
            },
        },
    },
}


_LABELS = {"T_max": "Schedule length (epochs)", "eta_min": "Final learning rate"}


def knob_fields(framework: str) -> list[dict[str, Any]]:
    """Seed 002's schema fields of the knobs ``framework`` honours (shared/training_options)."""
    defaults = training_options.DEFAULTS[framework]
    out = []
    for name, does in training_options.HONOURED[framework].items():
        kind, *rule = training_options.KNOBS[name]
        leaf = name.rpartition(".")[2]
        default = defaults.get(name, 0.001 if name == "optimizer.learning_rate" else None)
        field: dict[str, Any] = {
            "name": name,
            "label": _LABELS.get(leaf, leaf.replace("_", " ").capitalize()),
            "description": does,
            "default": list(default) if isinstance(default, tuple) else default,
        }
        if kind == "choice":
            refused = training_options.REFUSED_VALUES.get(framework, {}).get(name, ())
            field["type"] = "select"
            field["options"] = [
                {"value": v, "label": v, "description": ""} for v in rule[0] if v not in refused
            ]
        elif kind == "bool":
            field["type"] = "boolean"
        elif kind == "betas":
            field["type"] = "array"
        else:
            low, high = rule
            field.update(type="number", min=low, max=high, step=1 if kind == "int" else None)
            if kind != "int":
                del field["step"]
        out.append(field)
    return out


def config_schema(framework: str, task_type: str | None) -> dict[str, Any]:
    """Seed 002's config schema: the knobs the framework honours (``knobs`` says what each
    does, and which it refuses), then its own settings, and presets."""
    if framework not in FRAMEWORKS:
        raise InvalidInput(f"framework must be one of {', '.join(FRAMEWORKS)}", field="framework")
    tasks = FRAMEWORKS[framework]["tasks"]
    task = task_type or next(iter(tasks))
    if task not in tasks:
        raise InvalidInput(f"{framework} trains {', '.join(tasks)}", field="task_type")
    return {
        "framework": framework,
        "task_type": task,
        "schema": {"fields": [*knob_fields(framework), *CONFIG_FIELDS[framework]]},
        "knobs": training_options.honoured(framework),
        "presets": PRESETS[framework],
    }


# --- the catalogue: one record a model ---------------------------------------------------


def _fmt_params(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.2f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.0f}K"


@cache
def timm_catalogue() -> dict[str, Any]:
    """The generated timm catalogue: ``timm_version`` and ``architectures`` (name ->
    module, input_size [h, w, c], fixed_input_size, tags, default_tag, hf_hub_id, license,
    paper_ids, has_weights, parameter_count or None)."""
    try:
        data = json.loads(TIMM_CATALOGUE_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:  # a packaging mistake, not a request's
        raise RuntimeError(
            f"{TIMM_CATALOGUE_PATH.name} is missing: run `make catalogue` and commit it"
        ) from exc
    if not isinstance(data.get("architectures"), dict) or not data["architectures"]:
        raise RuntimeError(f"{TIMM_CATALOGUE_PATH.name} lists no architectures")
    return data


def _timm_record(arch: str, e: dict[str, Any], version: str) -> dict[str, Any]:
    count = e.get("parameter_count")
    h, w, ch = e["input_size"]
    name, description = FEATURED_TIMM.get(arch, (arch, ""))
    facts = [f"{_fmt_params(count)} parameters"] if count else []
    facts.append(("fixed " if e.get("fixed_input_size") else "") + f"{h}x{w} input")
    module = e.get("module") or ""
    if not description:
        description = f"timm {module or 'model'} architecture"
    hub = e.get("hf_hub_id")
    doc = (
        f"https://huggingface.co/{hub}"
        if hub
        else f"https://github.com/huggingface/pytorch-image-models/blob/v{version}/timm/models/{module}.py"
        if module
        else "https://huggingface.co/docs/timm"
    )
    return {
        "model_id": arch,
        "name": name,
        "framework": "timm",
        "task_types": ["image_classification"],
        "parameter_count": count,
        "parameters": _fmt_params(count) if count else None,
        "input_size": [h, w, ch],
        "default_image_size": h,
        "fixed_input_size": bool(e.get("fixed_input_size")),
        "pretrained_weights": list(e.get("tags") or []),
        "description": f"{description} ({', '.join(facts)})",
        "documentation_url": doc,
        "license": e.get("license"),
        "family": module or None,
        "featured": arch in FEATURED_TIMM,
    }


@cache
def _records() -> tuple[dict[str, Any], ...]:
    """Every model (shared records: read, never modify), featured ones first (seed 002's
    order), then the rest of timm's by name."""
    data = timm_catalogue()
    version = str(data.get("timm_version", "main"))
    timm = [_timm_record(a, e, version) for a, e in data["architectures"].items()]
    featured = {r["model_id"]: r for r in timm if r["featured"]}
    ultralytics = [
        {
            "model_id": model,
            "name": name,
            "framework": "ultralytics",
            "task_types": ["object_detection", "image_classification"],
            "parameter_count": count,
            "parameters": _fmt_params(count),
            "input_size": [640, 640, 3],
            "default_image_size": 640,
            "fixed_input_size": False,
            "pretrained_weights": ["coco", "imagenet"],
            "description": f"{name}, built from its model YAML (detection, or its -cls "
            f"variant for classification); {_fmt_params(count)} parameters as a detector",
            "documentation_url": "https://docs.ultralytics.com/models/"
            + re.sub(r"[nsmlx]$", "", model)
            + "/",
            "license": "agpl-3.0",
            "family": re.sub(r"[nsmlx]$", "", model),
            "featured": True,
        }
        for model, name, count in _ULTRALYTICS
    ]
    audio = [
        {
            **m,
            "framework": "torchaudio",
            "task_types": ["speech_recognition"],
            "parameter_count": None,
            "input_size": None,
            "default_image_size": None,
            "fixed_input_size": False,
            "pretrained_weights": [],
            "license": None,
            "family": "conformer",
            "featured": True,
        }
        for m in _TORCHAUDIO
    ]
    rest = sorted((r for r in timm if not r["featured"]), key=lambda r: r["model_id"])
    return (
        *(featured[m] for m in FEATURED_TIMM if m in featured),
        *ultralytics,
        *audio,
        *rest,
    )


@cache
def _by_id() -> dict[str, dict[str, Any]]:
    return {r["model_id"]: r for r in _records()}


def catalogue_task(task_type: str | None) -> str | None:
    """The catalogue's name of a task type in either vocabulary (``classification`` ->
    ``image_classification``); :class:`InvalidInput` for one neither knows."""
    if task_type is None or task_type == "":
        return None
    found = TASK_TYPES.get(task_type.strip().lower())
    if found is None:
        known = ", ".join(sorted({*SEED003_TASKS.values(), "segmentation"}))
        raise InvalidInput(f"task_type must be one of {known}", field="task_type")
    return found


def seed003_tasks(task_types: list[str]) -> list[str]:
    """Task types in seed 003's words (``object_detection`` -> ``detection``)."""
    return [SEED003_TASKS.get(t, t) for t in task_types]


def canonical_name(model_name: object) -> str | None:
    """The catalogue's spelling of ``model_name`` (exact, else case-insensitive; a timm
    ``arch.tag`` keeps a tag the architecture has), or None if it has no such model."""
    if not isinstance(model_name, str) or not model_name.strip() or len(model_name) > 200:
        return None
    by_id = _by_id()
    if model_name in by_id:
        return model_name
    name = model_name.strip().lower()
    if name in by_id:
        return name
    arch, _, tag = name.partition(".")
    rec = by_id.get(arch)
    if rec is not None and rec["framework"] == "timm" and tag in rec["pretrained_weights"]:
        return f"{arch}.{tag}"
    return None


def get_model(model_id: object) -> dict[str, Any] | None:
    """The catalogue's record of ``model_id`` (see :func:`canonical_name`; a timm
    ``arch.tag`` is its architecture's record), or None."""
    name = canonical_name(model_id)
    return _by_id()[name.partition(".")[0]] if name else None


def framework_of(model_name: str) -> str | None:
    """The framework that trains ``model_name`` here (model names are unique across them)."""
    rec = get_model(model_name)
    return rec["framework"] if rec else None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def search_models(
    search: str | None = None, task_type: str | None = None, framework: str | None = None
) -> list[dict[str, Any]]:
    """Records matching all the filters: ``search`` in the id, name, family or description
    (case, spaces and punctuation ignored: ``ResNet-50`` finds ``resnet50``), ranked exact,
    then prefix, then anywhere; ``task_type`` in either vocabulary; ``framework`` exactly
    (an unknown one matches nothing)."""
    task = catalogue_task(task_type)
    rows = [
        r
        for r in _records()
        if (not framework or r["framework"] == framework.strip().lower())
        and (task is None or task in r["task_types"])
    ]
    needle = _norm(search or "")
    if not needle:
        return rows
    ranked = []
    for i, r in enumerate(rows):
        ident = _norm(r["model_id"])
        names = (ident, _norm(r["name"]))
        if needle in names:
            rank = 0
        elif any(n.startswith(needle) for n in names):
            rank = 1
        elif any(needle in n for n in names) or needle in _norm(r["family"] or ""):
            rank = 2
        elif needle in _norm(r["description"]):
            rank = 3
        else:
            continue
        ranked.append((rank, i, r))
    return [r for _, _, r in sorted(ranked, key=lambda x: x[:2])]


def suggest(
    name: object, framework: str | None = None, task_type: str | None = None, n: int = 5
) -> list[str]:
    """Catalogue names closest to ``name`` (for "did you mean"), of ``framework`` and
    ``task_type`` where given (catalogue vocabulary); featured models first among equals."""
    text = _norm(str(name))[:100]
    if not text:
        return []
    pool = [
        r
        for r in _records()
        if (framework is None or r["framework"] == framework)
        and (task_type is None or task_type in r["task_types"])
    ]
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(text)
    scored = []
    for r in pool:
        ident = _norm(r["model_id"])
        matcher.set_seq1(ident)
        if matcher.real_quick_ratio() < 0.6 or matcher.quick_ratio() < 0.6:
            continue
        score = matcher.ratio()
        if score >= 0.6:  # a shared beginning (the family: resnet, yolo) counts for more
            shared = next(
                (i for i, (a, b) in enumerate(zip(ident, text, strict=False)) if a != b), None
            )
            score += 0.2 * (min(len(ident), len(text)) if shared is None else shared) / len(text)
            scored.append((-round(score, 2), not r["featured"], len(r["model_id"]), r["model_id"]))
    return [s[3] for s in sorted(scored)[:n]]


def list_models(framework: str | None, task_type: str | None) -> list[dict[str, Any]]:
    """Seed 002's model list (its shape and task vocabulary), filtered by framework and
    task type: every model of the catalogue."""
    task = TASK_TYPES.get((task_type or "").strip().lower(), task_type) if task_type else None
    return [
        {
            "model_name": r["model_id"],
            "framework": r["framework"],
            "task_types": list(r["task_types"]),
            "default_image_size": r["default_image_size"],
            "parameters": r["parameters"],
            "pretrained": False,
            "description": r["description"],
        }
        for r in _records()
        if (framework is None or r["framework"] == framework)
        and (task is None or task in r["task_types"])
    ]


# What a job may start from. Model names are catalogue names (timm: an architecture name
# from the generated catalogue, with an optional pretrained tag of it), never a path, URL
# or hub id; starting weights are the bare file name of a file in the operator's weights
# directory (CRUCIBLE_WEIGHTS_DIR), which only the trainer resolves. Loaders that fetch
# or unpickle never see a user string.
WEIGHTS_SUFFIXES: dict[str, tuple[str, ...]] = {
    "timm": (".pt", ".pth", ".safetensors"),
    "ultralytics": (".pt",),
}
_TIMM_NAME = re.compile(r"[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_]{1,100})?")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


class UnknownModel(InvalidInput):
    """A well-formed model name the catalogue does not have; ``suggestions`` are the
    nearest it does (also in ``details``, seed 003's error details)."""

    def __init__(self, detail: str, *, field: str, reason: str, suggestions: list[str]) -> None:
        super().__init__(detail, field=field)
        self.suggestions = suggestions
        self.details = {"reason": reason, "available_models": suggestions}


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def unknown_model(
    model_name: object,
    framework: str | None = None,
    task_type: str | None = None,
    field: str = "config.model_name",
) -> UnknownModel:
    """The error for a model the catalogue does not have, with the nearest names it does
    (of ``framework`` and ``task_type`` if any are near, else of any)."""
    near = suggest(model_name, framework, task_type) or suggest(model_name)
    where = f"the {framework} catalogue" if framework else "the model catalogue"
    reason = f"Model '{_shown(model_name)}' not found in {where}"
    hint = (
        f": did you mean {', '.join(near)}?"
        if near
        else " (GET /api/v1/models lists what trains here)"
    )
    return UnknownModel(reason + hint, field=field, reason=reason, suggestions=near)


def check_model(
    framework: str, task_type: str, model_name: str, advanced_config: dict[str, Any] | None
) -> None:
    """Raise :class:`InvalidInput` unless ``model_name`` is one the catalogue offers for
    ``framework`` and ``task_type`` (:class:`UnknownModel`, with near-miss suggestions,
    for a well-formed name it does not have), and ``advanced_config["weights"]``, if
    given, is the bare file name of a weights file of a kind the framework starts from."""
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
        if re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", model_name):
            raise unknown_model(model_name, framework, task_type)
        raise InvalidInput(
            f"Model '{_shown(model_name)}' is not available: {framework} trains "
            f"{', '.join(models)} here",
            field="config.model_name",
        )
    if models is None:
        if not _TIMM_NAME.fullmatch(model_name):
            raise InvalidInput(
                f"Model '{_shown(model_name)}' is not a {framework} architecture name (such "
                "as resnet18): a name from the model list, not a path, URL or hub id",
                field="config.model_name",
            )
        arch, _, tag = model_name.partition(".")
        entry = timm_catalogue()["architectures"].get(arch)
        if entry is None:
            raise unknown_model(arch, framework, task_type)
        if tag and tag not in entry["tags"]:
            tags = entry["tags"]
            raise InvalidInput(
                f"'{_shown(tag)}' is not a pretrained tag of {arch}: "
                + (f"one of {', '.join(tags[:10])}" if tags else f"{arch} has none; use {arch}"),
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


def operator_weights(
    framework: str, model_id: str, weights_dir: str | None, requested: str | None = None
) -> dict[str, Any]:
    """What the operator's weights directory holds for ``model_id`` (a catalogue name)
    and whether ``requested`` (a file name :func:`check_model` accepted) is there, by the
    trainer's rule: a regular file that resolves, links followed, inside the directory.
    Files "for" a model are those named ``<model>.<suffix>``, ``<model>.<anything>.<suffix>``
    or ``<model>-<anything>.<suffix>``. Reads only the directory's listing; never opens a
    file, and no caller's string becomes a path but a checked bare file name."""
    out: dict[str, Any] = {"directory_configured": bool(weights_dir), "files": []}
    if requested:
        out["requested"] = {"file": requested, "available": False}
    suffixes = WEIGHTS_SUFFIXES.get(framework, ())
    if not weights_dir or not suffixes:
        return out
    root = Path(weights_dir).resolve()
    if not root.is_dir():
        return out

    def inside(path: Path) -> bool:
        try:
            real = path.resolve()
        except OSError:
            return False
        return real.parent == root and real.is_file()

    if requested:
        out["requested"]["available"] = inside(root / requested)
    lower = model_id.lower()
    found = []
    try:
        entries = sorted(p.name for p in root.iterdir())
    except OSError:
        return out
    for name in entries:
        low = name.lower()
        if not low.endswith(suffixes):
            continue
        stem = low[: low.rfind(".")]
        if (stem == lower or stem.startswith((lower + ".", lower + "-"))) and inside(root / name):
            found.append(name)
        if len(found) >= 50:
            break
    out["files"] = found
    return out
