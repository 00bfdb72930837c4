"""Seed 002's training knobs (``advanced_config``): optimizer, scheduler, augmentation,
mixed precision and gradient clipping; which each framework honours, their values
checked, and what a run of a job actually uses. Pure data and functions: the API checks
a job with :func:`options` when it is created (a knob a framework does not honour is a
400 naming it), the trainer reads the same :class:`Options` to build its optimizer,
schedule, transforms and precision, and records :meth:`Options.params` in MLflow;
``/training/config-schema`` lists :func:`honoured`.

``advanced_config`` may nest the knobs as the seed does (``{"optimizer": {"type":
"sgd"}}``) or name them flat (``"optimizer.type"``); ``optimizer`` may also be the
optimizer's name (``"adamw"``, ``"SGD"``), and a few older flat names stay as aliases
(``weight_decay``; ultralytics' ``warmup_epochs`` and ``momentum``). Any other key is a
framework's own setting (:data:`OWN`) or refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidInput
from shared.models import Dataset, Project

# name -> (kind, low, high) for numbers; (kind, choices) for choices; kind "bool"/"betas"
_NUMBER, _INT, _BOOL, _CHOICE, _BETAS = "number", "int", "bool", "choice", "betas"
KNOBS: dict[str, tuple[Any, ...]] = {
    "optimizer.type": (_CHOICE, ("adamw", "adam", "sgd")),
    "optimizer.learning_rate": (_NUMBER, 1e-8, 1.0),
    "optimizer.weight_decay": (_NUMBER, 0.0, 1.0),
    "optimizer.betas": (_BETAS,),
    "optimizer.momentum": (_NUMBER, 0.0, 0.999),
    "scheduler.type": (_CHOICE, ("cosine", "step", "linear", "none")),
    "scheduler.T_max": (_INT, 1, 10_000),
    "scheduler.eta_min": (_NUMBER, 0.0, 1.0),
    "scheduler.step_size": (_INT, 1, 10_000),
    "scheduler.gamma": (_NUMBER, 1e-6, 1.0),
    "scheduler.warmup_epochs": (_INT, 0, 1000),
    "scheduler.warmup_lr": (_NUMBER, 0.0, 1.0),
    "augmentation.enabled": (_BOOL,),
    "augmentation.random_flip": (_BOOL,),
    "augmentation.random_flip_prob": (_NUMBER, 0.0, 1.0),
    "augmentation.color_jitter": (_BOOL,),
    "augmentation.brightness": (_NUMBER, 0.0, 1.0),
    "augmentation.contrast": (_NUMBER, 0.0, 1.0),
    "mixed_precision": (_BOOL,),
    "gradient_clip_value": (_NUMBER, 1e-6, 1e6),
}
GROUPS = ("optimizer", "scheduler", "augmentation")
_OPTIMIZER_NAMES = {"adamw": "adamw", "adam": "adam", "sgd": "sgd"}

# What each framework does with each knob it honours (in words, for the schema); a knob
# not listed for a framework is refused, with the reason in REFUSED where there is one.
_TORCH_OPTIMIZER = {
    "optimizer.type": "torch.optim.AdamW, Adam or SGD",
    "optimizer.learning_rate": "the base learning rate (overrides learning_rate)",
    "optimizer.weight_decay": "the optimizer's weight decay",
    "optimizer.betas": "Adam/AdamW betas",
    "optimizer.momentum": "SGD momentum",
    "scheduler.type": "per-epoch schedule after warm-up: cosine to eta_min, step "
    "(x gamma every step_size epochs), linear to eta_min, or none (constant)",
    "scheduler.T_max": "cosine/linear length in epochs after warm-up (default: the rest)",
    "scheduler.eta_min": "the cosine/linear schedule's final learning rate",
    "scheduler.step_size": "epochs between step decays",
    "scheduler.gamma": "the step decay factor",
    "scheduler.warmup_epochs": "epochs of linear warm-up from warmup_lr to the base rate",
    "scheduler.warmup_lr": "the first epoch's learning rate during warm-up",
    "mixed_precision": "torch.autocast: bfloat16 on the CPU, float16 with a GradScaler "
    "on a GPU without bfloat16",
    "gradient_clip_value": "the gradients' total norm is clipped to at most this",
}
HONOURED: dict[str, dict[str, str]] = {
    "timm": {
        **_TORCH_OPTIMIZER,
        "augmentation.enabled": "training images are augmented (validation never)",
        "augmentation.random_flip": "torchvision RandomHorizontalFlip",
        "augmentation.random_flip_prob": "its probability",
        "augmentation.color_jitter": "torchvision ColorJitter",
        "augmentation.brightness": "ColorJitter brightness",
        "augmentation.contrast": "ColorJitter contrast",
    },
    "torchaudio": dict(_TORCH_OPTIMIZER),
    "ultralytics": {
        "optimizer.type": "ultralytics optimizer AdamW, Adam or SGD",
        "optimizer.learning_rate": "lr0 (overrides learning_rate)",
        "optimizer.weight_decay": "weight_decay (ultralytics scales it by batch size / nbs)",
        "optimizer.momentum": "momentum (SGD momentum, Adam beta1)",
        "scheduler.type": "cosine (cos_lr), linear (ultralytics' default) or none",
        "scheduler.eta_min": "the final learning rate (lrf = eta_min / lr0)",
        "scheduler.warmup_epochs": "warmup_epochs",
        "augmentation.enabled": "false turns ultralytics' augmentation off (flips, HSV, "
        "mosaic, translate, scale, erasing)",
        "augmentation.random_flip": "fliplr",
        "augmentation.random_flip_prob": "fliplr's probability",
        "augmentation.color_jitter": "HSV augmentation (false: hsv_h, hsv_s, hsv_v = 0)",
        "augmentation.brightness": "hsv_v",
        "mixed_precision": "amp, which ultralytics applies on a GPU only (a CPU run trains "
        "in float32, and says so in its log)",
    },
}
REFUSED: dict[str, dict[str, str]] = {
    "torchaudio": {
        k: "speech recognition trains on the audio as recorded"
        for k in KNOBS
        if k.startswith("augmentation.")
    },
    "ultralytics": {
        "optimizer.betas": "ultralytics sets Adam's beta1 from momentum and beta2 to 0.999",
        "scheduler.T_max": "ultralytics' schedule spans all the epochs",
        "scheduler.step_size": "ultralytics schedules cosine or linear, not step",
        "scheduler.gamma": "ultralytics schedules cosine or linear, not step",
        "scheduler.warmup_lr": "ultralytics warms up from 0 (its biases from warmup_bias_lr)",
        "augmentation.contrast": "ultralytics' colour augmentation is HSV (brightness: hsv_v)",
        "gradient_clip_value": "ultralytics clips the gradients' norm at 10 itself",
    },
}
# Values a framework refuses of a knob it honours.
REFUSED_VALUES: dict[str, dict[str, tuple[Any, ...]]] = {
    "ultralytics": {"scheduler.type": ("step",)},
}
# Each framework's own settings (not knobs): the trainer reads them as they are.
COMMON = ("seed", "checkpoint_interval_s", "resume_from")
OWN: dict[str, tuple[str, ...]] = {
    "timm": (*COMMON, "image_size", "weights"),
    "torchaudio": (*COMMON, "dim", "layers"),
    "ultralytics": (
        *COMMON,
        "image_size",
        "weights",
        "device",
        "workers",
        "patience",
        "mosaic",
        "fliplr",
        "close_mosaic",
        "nbs",
    ),
}
# Older flat names of knobs, per framework.
ALIASES: dict[str, dict[str, str]] = {
    "timm": {"weight_decay": "optimizer.weight_decay"},
    "torchaudio": {"weight_decay": "optimizer.weight_decay"},
    "ultralytics": {
        "weight_decay": "optimizer.weight_decay",
        "warmup_epochs": "scheduler.warmup_epochs",
        "momentum": "optimizer.momentum",
    },
}
# What a run uses where the job does not say (None: the run's learning rate).
DEFAULTS: dict[str, dict[str, Any]] = {
    "timm": {
        "optimizer.type": "adamw",
        "optimizer.weight_decay": 0.01,
        "optimizer.betas": (0.9, 0.999),
        "optimizer.momentum": 0.9,
        "scheduler.type": "cosine",
        "scheduler.T_max": None,  # the epochs after warm-up
        "scheduler.eta_min": 0.0,
        "scheduler.step_size": 30,
        "scheduler.gamma": 0.1,
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_lr": 0.0,
        "augmentation.enabled": False,
        "augmentation.random_flip": True,
        "augmentation.random_flip_prob": 0.5,
        "augmentation.color_jitter": False,
        "augmentation.brightness": 0.2,
        "augmentation.contrast": 0.2,
        "mixed_precision": False,
        "gradient_clip_value": None,
    },
    "ultralytics": {
        "optimizer.type": "adamw",
        "optimizer.weight_decay": 0.0005,
        "optimizer.momentum": 0.937,
        "scheduler.type": "linear",
        "scheduler.warmup_epochs": 3,
        "augmentation.enabled": True,
        "augmentation.random_flip": True,
        "augmentation.random_flip_prob": 0.5,
        "augmentation.color_jitter": True,
        "augmentation.brightness": 0.4,
        "mixed_precision": False,
    },
}
DEFAULTS["torchaudio"] = {
    **{k: v for k, v in DEFAULTS["timm"].items() if not k.startswith("augmentation.")},
    "scheduler.type": "none",
    "gradient_clip_value": 5.0,
}


@dataclass(frozen=True)
class Options:
    """The knobs of one run: the job's values, else its framework's defaults."""

    framework: str
    epochs: int
    values: Mapping[str, Any]  # every knob the framework honours -> its value
    given: frozenset[str] = field(default_factory=frozenset)  # those the job set

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def learning_rate(self) -> float:
        return float(self.values["optimizer.learning_rate"])

    def params(self) -> dict[str, Any]:
        """The effective values, for MLflow (``None`` shown as ``none``)."""
        return {
            k: ("none" if v is None else list(v) if isinstance(v, tuple) else v)
            for k, v in sorted(self.values.items())
        }

    def lr_at(self, epoch: int) -> float:
        """The learning rate of (1-based) ``epoch``: linear warm-up from ``warmup_lr``
        over ``warmup_epochs`` epochs, then the schedule (epoch-wise)."""
        base, t = self.learning_rate, epoch - 1
        warmup = int(self.get("scheduler.warmup_epochs") or 0)
        if t < warmup:
            start = float(self.get("scheduler.warmup_lr") or 0.0)
            return start + (base - start) * t / warmup
        t -= warmup
        kind = self.get("scheduler.type", "none")
        low = float(self.get("scheduler.eta_min") or 0.0)
        span = int(self.get("scheduler.T_max") or max(1, self.epochs - warmup))
        if kind == "cosine":
            return low + (base - low) * (1 + math.cos(math.pi * min(t, span) / span)) / 2
        if kind == "linear":
            return base - (base - low) * min(t, span) / span
        if kind == "step":
            return base * float(self["scheduler.gamma"]) ** (t // int(self["scheduler.step_size"]))
        return base


def flatten(advanced: Mapping[str, Any]) -> dict[str, Any]:
    """``advanced_config``'s keys with the knob groups flattened (``optimizer.type``); a
    group that is not an object stays as it is (``optimizer: "sgd"`` is read later)."""
    out: dict[str, Any] = {}
    for key, value in advanced.items():
        if key in GROUPS and isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[str(key)] = value
    return out


def _field(name: str) -> str:
    return f"config.advanced_config.{name}"


def _check(name: str, value: Any) -> Any:
    """``value`` as the knob ``name`` takes it, or :class:`InvalidInput`."""
    kind, *rule = KNOBS[name]
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise InvalidInput(f"advanced_config.{name} must be true or false", field=_field(name))
        return value
    if kind == _CHOICE:
        if not isinstance(value, str) or value.lower() not in rule[0]:
            raise InvalidInput(
                f"advanced_config.{name} must be one of {', '.join(rule[0])}", field=_field(name)
            )
        return value.lower()
    if kind == _BETAS:
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                for b in value
            )
        )
        if not ok:
            raise InvalidInput(
                f"advanced_config.{name} must be two numbers from 0 to below 1, e.g. [0.9, 0.999]",
                field=_field(name),
            )
        return (float(value[0]), float(value[1]))
    low, high = rule
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if (
        number is None
        or not math.isfinite(number)
        or not low <= number <= high
        or (kind == _INT and number != int(number))
    ):
        what = "a whole number" if kind == _INT else "a number"
        raise InvalidInput(
            f"advanced_config.{name} must be {what} from {low:g} to {high:g}", field=_field(name)
        )
    return int(number) if kind == _INT else float(number)


def options(
    framework: str, advanced: Mapping[str, Any] | None, *, learning_rate: float, epochs: int
) -> Options:
    """The knobs a job of ``framework`` runs with: ``advanced``'s (checked), else the
    framework's defaults. :class:`InvalidInput` names every key the framework does not
    honour (and why, where there is a reason), or the first value it cannot take."""
    if framework not in HONOURED:
        raise InvalidInput(f"unknown framework '{framework}'", field="config.framework")
    honoured, aliases = HONOURED[framework], ALIASES.get(framework, {})
    flat = flatten(advanced or {})
    given: dict[str, Any] = {}
    refused: list[str] = []
    for key, value in flat.items():
        if key == "optimizer" and isinstance(value, str):  # the optimizer by name
            name = _OPTIMIZER_NAMES.get(value.lower())
            if name is None:
                raise InvalidInput(
                    f"advanced_config.optimizer must be one of {', '.join(_OPTIMIZER_NAMES)} "
                    "(or an object with type, learning_rate, weight_decay, ...)",
                    field=_field("optimizer"),
                )
            key, value = "optimizer.type", name
        key = aliases.get(key, key)
        if key in OWN.get(framework, ()):
            continue
        if key not in honoured:
            refused.append(key)
            continue
        if key in given and given[key] != _check(key, value):
            raise InvalidInput(
                f"advanced_config names {key} twice, with different values; send it once",
                field=_field(key),
            )
        given[key] = _check(key, value)
    if refused:
        why = REFUSED.get(framework, {})
        shown = [k if len(k) <= 60 else k[:57] + "..." for k in refused[:10]]
        reasons = "; ".join(
            f"{k} ({why[k]})" if k in why else f"{k} (not a setting of {framework})" for k in shown
        )
        more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
        raise InvalidInput(
            f"{framework} does not honour advanced_config {reasons}{more}. "
            f"GET /training/config-schema?framework={framework} lists what it does",
            field=_field(shown[0]),
        )
    for key, bad in REFUSED_VALUES.get(framework, {}).items():
        if given.get(key) in bad:
            raise InvalidInput(
                f"{framework} does not honour advanced_config.{key} = {given[key]}: "
                f"{HONOURED[framework][key]}",
                field=_field(key),
            )
    values = {k: v for k, v in DEFAULTS[framework].items() if k in honoured}
    values.update(given)
    if "augmentation.enabled" in values and "augmentation.enabled" not in given:
        # asking for an augmentation turns augmentation on, unless enabled says otherwise
        values["augmentation.enabled"] = values["augmentation.enabled"] or any(
            k.startswith("augmentation.") for k in given
        )
    values.setdefault("optimizer.learning_rate", float(learning_rate))
    if framework == "ultralytics" and "scheduler.eta_min" not in values:
        values["scheduler.eta_min"] = 0.01 * values["optimizer.learning_rate"]  # lrf 0.01
    if values.get("scheduler.eta_min", 0.0) > values["optimizer.learning_rate"]:
        raise InvalidInput(
            "advanced_config.scheduler.eta_min must not exceed the learning rate",
            field=_field("scheduler.eta_min"),
        )
    return Options(framework, int(epochs), values, frozenset(given))


def honoured(framework: str) -> dict[str, Any]:
    """What ``/training/config-schema`` says of the knobs: honoured (with what each
    does), refused (with why) and the defaults."""
    return {
        "honoured": dict(HONOURED[framework]),
        "refused": {
            k: REFUSED.get(framework, {}).get(k, f"not a setting of {framework}")
            for k in KNOBS
            if k not in HONOURED[framework]
        },
        "refused_values": {k: list(v) for k, v in REFUSED_VALUES.get(framework, {}).items()},
        "defaults": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in DEFAULTS[framework].items()
            if k in HONOURED[framework]
        },
        "own_settings": [k for k in OWN[framework] if k != "resume_from"],
        "aliases": dict(ALIASES.get(framework, {})),
    }


# Dataset formats a request may name that mean "whatever the dataset is" (seed 002's
# example says "dice").
ANY_FORMAT = ("auto", "dice")


def new_job(
    framework: str,
    cfg: Mapping[str, Any],
    meta: Mapping[str, Any],
    dataset: Dataset,
    project: Project | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A seed 002 create request's ``cfg`` and ``meta`` as the new job stores them: its
    knobs checked (:func:`options`; ``learning_rate`` becomes the one the run uses), and
    the seed's fields that are the dataset's and project's to say (``num_classes``,
    ``dataset_format``, ``dataset_path``, ``project_name``), refused where the request
    says otherwise."""
    epochs = int(cfg.get("epochs", 10))
    opts = options(
        framework,
        cfg.get("advanced_config") or {},
        learning_rate=float(cfg.get("learning_rate", 1e-3)),
        epochs=epochs,
    )
    fmt = cfg.get("dataset_format")
    if fmt not in (None, "", *ANY_FORMAT) and fmt != dataset.format:
        raise InvalidInput(
            f"The dataset is {dataset.format}, not {fmt}: leave dataset_format out, or send "
            f"{dataset.format}",
            field="config.dataset_format",
        )
    classes = dataset.num_classes or None
    asked = cfg.get("num_classes")
    if asked is not None and asked != classes:
        raise InvalidInput(
            f"The dataset has {classes} classes, so the model is built with {classes}: leave "
            "num_classes out, or send that"
            if classes
            else "This dataset has no classes: leave num_classes out",
            field="config.num_classes",
        )
    out = {
        **meta,
        "num_classes": classes,
        "dataset_format": dataset.format,
        "dataset_path": dataset.id,
        "project_name": project.name if project else None,
    }
    return {**cfg, "learning_rate": opts.learning_rate}, out
