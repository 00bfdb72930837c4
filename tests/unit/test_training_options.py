"""Seed 002's knobs as the API checks them and the trainer reads them: what each framework
honours, what it refuses (a 400 naming each knob), the values each knob takes, the
learning-rate schedule, and the config schema listing exactly what is honoured."""

import math

import pytest

from shared.catalogue import PRESETS, config_schema
from shared.errors import InvalidInput
from shared.training_options import HONOURED, KNOBS, options

SEED_EXAMPLE = {  # seed 002's create request's advanced_config, as written there
    "optimizer": {
        "type": "adamw",
        "learning_rate": 0.001,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
    },
    "scheduler": {
        "type": "cosine",
        "T_max": 50,
        "eta_min": 1e-6,
        "warmup_epochs": 5,
        "warmup_lr": 1e-6,
    },
    "augmentation": {
        "enabled": True,
        "random_flip": True,
        "random_flip_prob": 0.5,
        "color_jitter": True,
        "brightness": 0.2,
        "contrast": 0.2,
    },
    "mixed_precision": True,
    "gradient_clip_value": 1.0,
}


def refused(framework, advanced, **kw):
    with pytest.raises(InvalidInput) as err:
        options(framework, advanced, learning_rate=kw.get("lr", 1e-3), epochs=kw.get("epochs", 10))
    return err.value


def test_timm_honours_the_whole_seed_example():
    o = options("timm", SEED_EXAMPLE, learning_rate=1e-3, epochs=50)
    assert o["optimizer.betas"] == (0.9, 0.999) and o["scheduler.T_max"] == 50
    assert (
        o["augmentation.color_jitter"] and o["mixed_precision"] and o["gradient_clip_value"] == 1.0
    )
    assert set(o.given) == {
        k for k in KNOBS if k != "optimizer.momentum" and "step" not in k and k != "scheduler.gamma"
    }
    params = o.params()
    assert params["optimizer.type"] == "adamw" and params["optimizer.betas"] == [0.9, 0.999]


def test_each_framework_refuses_what_it_does_not_honour_by_name():
    audio = refused("torchaudio", SEED_EXAMPLE)
    assert audio.field == "config.advanced_config.augmentation.enabled"
    for knob in ("augmentation.random_flip", "augmentation.color_jitter", "augmentation.contrast"):
        assert knob in audio.detail
    assert "audio as recorded" in audio.detail and "optimizer" not in audio.detail

    yolo = refused("ultralytics", SEED_EXAMPLE)
    for knob in (
        "optimizer.betas",
        "scheduler.T_max",
        "scheduler.warmup_lr",
        "augmentation.contrast",
        "gradient_clip_value",
    ):
        assert knob in yolo.detail
    assert (
        "mixed_precision" not in yolo.detail
        and yolo.field == "config.advanced_config.optimizer.betas"
    )
    step = refused("ultralytics", {"scheduler": {"type": "step"}})
    assert step.field == "config.advanced_config.scheduler.type" and "step" in step.detail

    typo = refused("timm", {"optimiser": "sgd", "mixed_precision": True})
    assert (
        typo.field == "config.advanced_config.optimiser" and "not a setting of timm" in typo.detail
    )


@pytest.mark.parametrize(
    ("advanced", "field"),
    [
        ({"optimizer": {"type": "lamb"}}, "optimizer.type"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"optimizer": {"learning_rate": 0}}, "optimizer.learning_rate"),
        ({"optimizer": {"betas": [0.9]}}, "optimizer.betas"),
        ({"optimizer": {"betas": [0.9, 1.0]}}, "optimizer.betas"),
        ({"scheduler": {"warmup_epochs": 1.5}}, "scheduler.warmup_epochs"),
        ({"scheduler": {"eta_min": 0.5}}, "scheduler.eta_min"),  # above the learning rate
        ({"augmentation": {"random_flip_prob": 2}}, "augmentation.random_flip_prob"),
        ({"mixed_precision": "yes"}, "mixed_precision"),
        ({"gradient_clip_value": -1}, "gradient_clip_value"),
        ({"gradient_clip_value": float("nan")}, "gradient_clip_value"),
        ({"weight_decay": 0.1, "optimizer": {"weight_decay": 0.2}}, "optimizer.weight_decay"),
    ],
)
def test_values_are_checked(advanced, field):
    assert refused("timm", advanced).field == f"config.advanced_config.{field}"


def test_names_and_aliases():
    o = options("timm", {"optimizer": "SGD", "weight_decay": 0.1}, learning_rate=0.01, epochs=3)
    assert (o["optimizer.type"], o["optimizer.weight_decay"], o.learning_rate) == ("sgd", 0.1, 0.01)
    flat = options(
        "timm", {"optimizer.type": "adam", "scheduler.type": "step"}, learning_rate=1e-3, epochs=3
    )
    assert (flat["optimizer.type"], flat["scheduler.type"]) == ("adam", "step")
    yolo = options(
        "ultralytics",
        {"optimizer": "AdamW", "warmup_epochs": 0, "momentum": 0.8, "mosaic": 0.0},
        learning_rate=1e-3,
        epochs=3,
    )
    assert (yolo["scheduler.warmup_epochs"], yolo["optimizer.momentum"]) == (0, 0.8)
    assert yolo["scheduler.eta_min"] == pytest.approx(1e-5)  # ultralytics' lrf 0.01
    # the knobs' learning rate overrides the job's
    assert (
        options(
            "timm", {"optimizer": {"learning_rate": 0.05}}, learning_rate=1e-3, epochs=3
        ).learning_rate
        == 0.05
    )


def test_the_schedule_warms_up_then_decays():
    def lrs(scheduler, epochs=6, lr=0.1):
        o = options("timm", {"scheduler": scheduler}, learning_rate=lr, epochs=epochs)
        return [round(o.lr_at(e), 6) for e in range(1, epochs + 1)]

    warm = lrs({"type": "cosine", "warmup_epochs": 2, "warmup_lr": 0.01})
    assert warm[:3] == [0.01, 0.055, 0.1]  # linear warm-up, then the base rate
    assert (
        warm[3] == pytest.approx(0.05 + 0.05 * math.cos(math.pi / 4), abs=1e-6)
        and warm[-1] < warm[3]
    )
    assert lrs({"type": "step", "step_size": 2, "gamma": 0.5}) == [
        0.1,
        0.1,
        0.05,
        0.05,
        0.025,
        0.025,
    ]
    assert lrs({"type": "linear", "eta_min": 0.0}, epochs=5) == [0.1, 0.08, 0.06, 0.04, 0.02]
    assert lrs({"type": "none"}) == [0.1] * 6
    assert lrs({}, epochs=2) == [0.1, 0.05]  # timm's default: cosine over the epochs


def test_presets_are_honoured_and_the_schema_lists_exactly_what_is():
    for framework, presets in PRESETS.items():
        for preset in presets.values():
            options(
                framework,
                preset["advanced_config"],
                learning_rate=preset["learning_rate"],
                epochs=preset["epochs"],
            )
        schema = config_schema(framework, None)
        names = [f["name"] for f in schema["schema"]["fields"]]
        knobs = [n for n in names if n in KNOBS]
        assert knobs == list(HONOURED[framework]) == list(schema["knobs"]["honoured"])
        assert set(schema["knobs"]["refused"]) == set(KNOBS) - set(HONOURED[framework])
    yolo = config_schema("ultralytics", None)
    kinds = {f["name"]: f for f in yolo["schema"]["fields"]}
    assert [o["value"] for o in kinds["scheduler.type"]["options"]] == ["cosine", "linear", "none"]
    assert kinds["mixed_precision"]["type"] == "boolean"
