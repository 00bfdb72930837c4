"""Each of seed 002's knobs changes what the trainer builds and does (CPU, tiny models):
the optimizer's class and hyperparameters, the learning rate epoch by epoch (warm-up,
cosine, step) and after a resume, the training transforms, gradient clipping bounding
the norm, bfloat16 autocast for mixed precision (both ASR models included), and the
arguments ultralytics is given."""

import pytest

torch = pytest.importorskip("torch")

from crucible_trainer.optim import Stepper, optimizer, resume, schedule  # noqa: E402

from shared.training_options import options  # noqa: E402


def knobs(framework="timm", lr=0.1, epochs=6, **advanced):
    return options(framework, advanced, learning_rate=lr, epochs=epochs)


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


@pytest.mark.parametrize(
    ("given", "cls", "hyper"),
    [
        ({}, torch.optim.AdamW, {"weight_decay": 0.01, "betas": (0.9, 0.999)}),
        ({"type": "adam", "betas": [0.8, 0.99]}, torch.optim.Adam, {"betas": (0.8, 0.99)}),
        (
            {"type": "sgd", "momentum": 0.5, "weight_decay": 0.1},
            torch.optim.SGD,
            {"momentum": 0.5, "weight_decay": 0.1},
        ),
        ({"type": "sgd", "learning_rate": 0.02}, torch.optim.SGD, {"lr": 0.02, "momentum": 0.9}),
    ],
)
def test_the_optimizer_built_is_the_one_asked_for(given, cls, hyper):
    opt = optimizer(model().parameters(), knobs(optimizer=given))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert {k: group[k] for k in hyper} == hyper


def test_the_learning_rate_follows_warm_up_and_the_schedule_epoch_by_epoch():
    o = knobs(
        scheduler={
            "type": "step",
            "step_size": 2,
            "gamma": 0.5,
            "warmup_epochs": 2,
            "warmup_lr": 0.01,
        }
    )
    net = model()
    opt = optimizer(net.parameters(), o)
    sched = schedule(opt, o)
    seen = []
    for _ in range(6):
        seen.append(round(opt.param_groups[0]["lr"], 6))
        net(torch.randn(4, 8)).sum().backward()
        opt.step()
        sched.step()
    assert seen == [0.01, 0.055, 0.1, 0.1, 0.05, 0.05]  # warm-up, then x0.5 every 2 epochs

    # A resume puts both at the next epoch by this job's schedule (epochs may have changed).
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    longer = knobs(epochs=10, scheduler={"type": "cosine", "warmup_epochs": 2, "warmup_lr": 0.01})
    opt2 = optimizer(model().parameters(), longer)
    sched2 = schedule(opt2, longer)
    resume(opt2, sched2, longer, state, 5)
    assert opt2.state_dict()["state"][0]["exp_avg"].shape == (16, 8)  # AdamW's moments, restored
    assert opt2.param_groups[0]["lr"] == pytest.approx(longer.lr_at(5))
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(longer.lr_at(6))

    # A checkpoint written before the knobs (another kind of schedule) still resumes.
    old = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
    opt3 = optimizer(model().parameters(), longer)
    sched3 = schedule(opt3, longer)
    resume(opt3, sched3, longer, {"optimizer": None, "scheduler": old.state_dict()}, 3)
    assert opt3.param_groups[0]["lr"] == pytest.approx(longer.lr_at(3))


def test_augmentation_puts_its_transforms_in_training_only():
    pytest.importorskip("torchvision")
    from crucible_trainer.frameworks.timm_classifier import transform
    from torchvision import transforms

    def kinds(tf):
        return [type(t) for t in tf.transforms]

    plain = kinds(transform(32, knobs()))  # timm: no augmentation unless asked
    assert transforms.RandomHorizontalFlip not in plain and transforms.ColorJitter not in plain
    on = transform(
        32,
        knobs(
            augmentation={
                "random_flip_prob": 0.3,
                "color_jitter": True,
                "brightness": 0.4,
                "contrast": 0.1,
            }
        ),
    )
    flip, jitter = on.transforms[1], on.transforms[2]
    assert isinstance(flip, transforms.RandomHorizontalFlip) and flip.p == 0.3
    assert isinstance(jitter, transforms.ColorJitter)
    assert jitter.brightness == (0.6, 1.4) and jitter.contrast == (0.9, 1.1)
    off = transform(32, knobs(augmentation={"enabled": False, "color_jitter": True}))
    assert kinds(off) == plain
    assert kinds(transform(32)) == plain  # validation and predictions never augment


def test_gradient_clipping_bounds_the_norm():
    def norm_after_step(clip):
        m = model()
        o = knobs(**({"gradient_clip_value": clip} if clip else {}))
        stepper = Stepper(list(m.parameters()), optimizer(m.parameters(), o), o)
        x = torch.randn(32, 8) * 100
        stepper.step((m(x) ** 2).mean())  # a huge loss: huge gradients
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters()]))
        return float(total), stepper.last_norm

    unclipped, _ = norm_after_step(None)
    clipped, before = norm_after_step(0.5)
    assert unclipped > 10 and before == pytest.approx(unclipped, rel=1e-4)
    assert clipped <= 0.5 + 1e-5


def test_mixed_precision_autocasts_to_bfloat16_on_the_cpu():
    m = model()
    on, off = knobs(mixed_precision=True), knobs()
    stepper = Stepper(list(m.parameters()), optimizer(m.parameters(), on), on)
    with stepper.autocast():
        assert m(torch.randn(2, 8)).dtype is torch.bfloat16
    assert "bfloat16 autocast on the CPU" in stepper.describe()
    plain = Stepper(list(m.parameters()), optimizer(m.parameters(), off), off)
    with plain.autocast():
        assert m(torch.randn(2, 8)).dtype is torch.float32
    assert plain.describe() == "Optimizer: AdamW; float32"


@pytest.mark.parametrize("kind", ["conformer", "rnn-t"])
def test_both_asr_models_train_a_step_under_mixed_precision(kind):
    pytest.importorskip("torchaudio")
    from crucible_trainer.frameworks.torchaudio_asr import asr_model

    torch.manual_seed(0)
    net = asr_model(kind, vocab_size=6, dim=32, layers=1, heads=2)
    o = knobs("torchaudio", lr=1e-3, mixed_precision=True, gradient_clip_value=1.0)
    stepper = Stepper(list(net.parameters()), optimizer(net.parameters(), o), o)
    audio, lengths = torch.randn(2, 4000), torch.tensor([4000, 3200])
    targets, target_lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    with stepper.autocast():
        loss = net.loss(audio, lengths, targets, target_lengths)
    assert torch.isfinite(loss)
    stepper.step(loss)
    assert stepper.last_norm is not None and stepper.last_norm > 0


def test_ultralytics_is_given_the_knobs_as_its_own_arguments():
    from crucible_trainer.frameworks.ultralytics_yolo import knob_args

    args, notes = knob_args(knobs("ultralytics", lr=0.01), cuda=False)
    assert (
        args
        == {
            "optimizer": "AdamW",
            "lr0": 0.01,
            "weight_decay": 0.0005,
            "momentum": 0.937,
            "cos_lr": False,
            "lrf": pytest.approx(0.01),
            "warmup_epochs": 3,
            "amp": False,
        }
        and notes == []
    )
    o = knobs(
        "ultralytics",
        lr=0.01,
        optimizer={"type": "sgd", "momentum": 0.8},
        scheduler={"type": "cosine", "eta_min": 0.001, "warmup_epochs": 0},
        augmentation={"random_flip_prob": 0.2, "color_jitter": False},
        mixed_precision=True,
    )
    args, notes = knob_args(o, cuda=False)
    assert (args["optimizer"], args["momentum"], args["cos_lr"]) == ("SGD", 0.8, True)
    assert args["lrf"] == pytest.approx(0.1) and args["warmup_epochs"] == 0
    assert (args["fliplr"], args["hsv_v"], args["hsv_s"]) == (0.2, 0.0, 0.0)
    assert args["amp"] is False and "trains in float32 on the CPU" in notes[0]
    off, _ = knob_args(knobs("ultralytics", augmentation={"enabled": False}), cuda=False)
    assert off["mosaic"] == off["fliplr"] == off["hsv_v"] == off["erasing"] == 0.0
    assert knob_args(knobs("ultralytics", scheduler={"type": "none"}), cuda=False)[0]["lrf"] == 1.0
    # ultralytics takes every one of those arguments and values
    pytest.importorskip("ultralytics")
    from ultralytics.cfg import get_cfg

    for given in (args, off):
        get_cfg(overrides=dict(given))
