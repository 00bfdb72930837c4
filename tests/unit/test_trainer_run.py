"""The trainer's pure pieces: the typed job spec (checked against the catalogue, its
starting weights resolved only in the operator's directory), validation metrics, and the
checkpoint policy every state-dict trainer shares (resume, best, interval saves, save on
stop)."""

import threading

import pytest
from crucible_trainer.metrics import classification_metrics, error_rates
from crucible_trainer.run import Run
from crucible_trainer.spec import JobSpec, Refused

from shared.errors import InvalidInput
from shared.models import TrainingJob


def job(**cfg) -> TrainingJob:
    return TrainingJob(
        id=3,
        owner_id=1,
        framework="timm",
        model_name="resnet10t",
        task_type="image_classification",
        total_epochs=4,
        advanced_config=cfg,
    )


def test_spec_types_the_shared_options_and_keeps_the_rest():
    spec = JobSpec.from_job(job(seed="7", image_size=32, resume_from="", weight_decay=0.1))
    assert (spec.job_id, spec.epochs, spec.seed, spec.image_size) == (3, 4, 7, 32)
    assert spec.resume_from is None and spec.checkpoint_interval_s == 600.0  # the setting's
    assert JobSpec.from_job(job(), checkpoint_interval_s=120).checkpoint_interval_s == 120
    own = JobSpec.from_job(job(checkpoint_interval_s=30), checkpoint_interval_s=120)
    assert own.checkpoint_interval_s == 30  # the job's own wins over the operator's
    assert dict(spec.extras) == {}  # weight_decay is a knob's older name
    assert spec.knobs["optimizer.weight_decay"] == 0.1 and spec.knobs["optimizer.type"] == "adamw"
    assert JobSpec.from_job(job()).image_size is None  # the framework's default
    fast = JobSpec.from_job(job(optimizer={"type": "sgd", "learning_rate": 0.05}))
    assert fast.learning_rate == 0.05 and fast.knobs["optimizer.type"] == "sgd"


def test_spec_refuses_knobs_its_framework_does_not_honour():
    """A job item that did not come through the API's check is checked again here."""
    with pytest.raises(InvalidInput) as err:
        JobSpec.from_job(job(gradient_clip="1"))
    assert err.value.field == "config.advanced_config.gradient_clip"


def test_spec_refuses_what_the_catalogue_does_not_offer():
    bad = job().model_copy(update={"framework": "ultralytics", "model_name": "https://x/y.pt"})
    with pytest.raises(InvalidInput) as err:
        JobSpec.from_job(bad.model_copy(update={"task_type": "object_detection"}))
    assert err.value.field == "config.model_name"
    with pytest.raises(InvalidInput) as err:
        JobSpec.from_job(job(weights="/etc/x.pth"))
    assert err.value.field == "config.advanced_config.weights"


def test_weights_resolve_only_to_a_file_in_the_operators_directory(tmp_path):
    weights, outside = tmp_path / "weights", tmp_path / "outside"
    weights.mkdir()
    outside.mkdir()
    (weights / "r18.pth").write_bytes(b"w")
    (outside / "x.pth").write_bytes(b"x")
    (weights / "out.pth").symlink_to(outside / "x.pth")
    (weights / "dir.pth").mkdir()
    spec = JobSpec.from_job(job(weights="r18.pth"), weights_dir=str(weights))
    assert spec.weights == (weights / "r18.pth").resolve() and "weights" not in spec.extras
    assert JobSpec.from_job(job(), weights_dir=str(weights)).weights is None
    for name in ("out.pth", "dir.pth", "missing.pth"):
        with pytest.raises(Refused, match="not a file in the operator's weights directory"):
            JobSpec.from_job(job(weights=name), weights_dir=str(weights))
    with pytest.raises(Refused, match="CRUCIBLE_WEIGHTS_DIR"):
        JobSpec.from_job(job(weights="r18.pth"))


def test_metrics():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert error_rates(["hello world"], ["hello word"]) == (0.5, 1 / 11)


class Weights(dict):
    """Stands in for a tensor: what the policy does with the best weights."""

    def detach(self):
        return self

    def clone(self):
        return Weights(self)


class Saved:
    def __init__(self):
        self.saves: list[tuple[int, dict, dict | None]] = []
        self.resume: dict | None = None

    def save(self, state, epoch, *, best=None):
        self.saves.append((epoch, state, best))

    def load(self, key):
        return self.resume


class Reported:
    def __init__(self):
        self.epochs = []
        self.logs = []

    def log(self, message):
        self.logs.append(message)

    def on_epoch_end(self, epoch, train_loss, val, lr):
        self.epochs.append((epoch, val))


def make_run(interval_s=60.0, **cfg):
    spec = JobSpec.from_job(job(checkpoint_interval_s=interval_s, **cfg))
    saved, reported = Saved(), Reported()
    run = Run(spec, reported, saved, threading.Event())
    state = lambda epoch: {  # noqa: E731
        "model": {"w": Weights(epoch=epoch)},
        "optimizer": {"lr": 1},
        "epoch": epoch,
        "best": run.best,
    }
    return run, state, saved, reported


def test_best_waits_in_memory_until_last_is_saved_at_the_end():
    run, state, saved, reported = make_run()
    assert run.begin(state, monitor="cer", mode="min") is None
    for epoch, cer in zip(run.epochs(), [0.5, 0.3, 0.4, 0.35], strict=True):
        run.on_epoch_end(epoch, 1.0, {"cer": cer}, 1e-3)
    assert [e for e, _ in reported.epochs] == [1, 2, 3, 4]
    [(epoch, last, best)] = saved.saves  # one save: the final epoch's
    assert epoch == 4 and last["best"] == 0.3
    assert best["epoch"] == 2 and best["optimizer"] is None and "scheduler" not in best


def test_interval_zero_saves_every_epoch_and_a_stop_saves_the_epoch_before():
    run, state, saved, _ = make_run(interval_s=0)
    run.begin(state, monitor="accuracy", mode="max")
    run.on_epoch_end(1, 1.0, {"accuracy": 0.5}, 1e-3)
    run.on_epoch_end(2, 1.0, {"accuracy": 0.4}, 1e-3)
    run.stop.set()
    assert run.stopping
    run.checkpoint(2)
    assert [(e, b is not None) for e, _, b in saved.saves] == [(1, True), (2, False), (2, False)]


def test_resume_goes_on_from_the_checkpoint():
    run, state, saved, _ = make_run(resume_from="jobs/1/checkpoints/last.pt")
    saved.resume = {"epoch": 2, "best": 0.7}
    assert run.begin(state, monitor="accuracy", mode="max") == saved.resume
    assert list(run.epochs()) == [3, 4] and run.best == 0.7
    assert run.reporter.logs == [
        "Resumed from checkpoint jobs/1/checkpoints/last.pt at epoch 2: epochs 3-4 to go"
    ]
    run.on_epoch_end(3, 1.0, {"accuracy": 0.6}, 1e-3)  # not better than the resumed best
    run.on_epoch_end(4, 1.0, {"accuracy": 0.8}, 1e-3)
    assert [(e, b["epoch"] if b else None) for e, _, b in saved.saves] == [(4, 4)]


def test_an_upload_that_is_not_an_image_stays_bad_input_once_ultralytics_is_loaded(tmp_path):
    """ultralytics replaces PIL's Image.open with one that answers an unidentified file by
    installing a HEIF plugin; predictions of any framework run in the same process."""
    pytest.importorskip("ultralytics")
    from crucible_trainer.frameworks.ultralytics_yolo import offline
    from crucible_trainer.inputs import BadInput, image

    offline(tmp_path)  # no installs, whatever happens
    import ultralytics.utils.patches  # noqa: F401  (the replacement happens on import)

    with pytest.raises(BadInput, match="Not an image file"):
        image(b"not an image")
