"""timm training on tiny real data, in process, reporting into the emulator's table and
storing its checkpoints there: seed 002's knobs change the run (its optimizer, its
learning rate epoch by epoch, its augmentation, precision and clipping, as its log and
checkpoint show), and a job resumed from its own last checkpoint with more epochs
trains only the epochs after it, numbering them on, and says so in its log."""

import io
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from crucible_trainer.frameworks import timm_classifier  # noqa: E402
from crucible_trainer.run import Checkpoints, Run  # noqa: E402
from crucible_trainer.spec import JobSpec  # noqa: E402

from shared import keys  # noqa: E402
from shared.adapters.dynamodb.jobs import DynamoJobs  # noqa: E402
from shared.archives import extract  # noqa: E402
from shared.models import TrainingJob  # noqa: E402
from shared.services.reporting import Reporter  # noqa: E402
from tests import datasets as make  # noqa: E402

pytestmark = pytest.mark.integration
OWNER = 4343


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    (root / "shapes.zip").write_bytes(make.imagefolder(per_class=6))
    return Path(extract(str(root / "shapes.zip"), str(root / "data")))


def new_job(container, epochs: int, **advanced) -> TrainingJob:
    return DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=OWNER,
            framework="timm",
            model_name="test_resnet",  # timm's own tiny test network
            task_type="image_classification",
            epochs=epochs,
            total_epochs=epochs,
            batch_size=8,
            learning_rate=0.01,
            advanced_config={"image_size": 32, **advanced},
        )
    )


def train(container, job: TrainingJob, data: Path, work: Path) -> list[str]:
    """Train ``job`` as the entrypoint does; the log lines this run wrote."""
    work.mkdir(exist_ok=True)
    spec = JobSpec.from_job(job)
    reporter = Reporter(
        container.push,
        container.job_repository,
        job,
        container.job_records,
        artifacts=container.artifacts,
    )
    checkpoints = Checkpoints(container.artifacts, job.id, work, reporter)
    before = {r["SK"] for r in container.job_records.logs(job.id, 10_000)}
    outcome = timm_classifier.train(spec, data, Run(spec, reporter, checkpoints, threading.Event()))
    checkpoints.flush()
    assert outcome == "completed"
    return [
        r["message"] for r in container.job_records.logs(job.id, 10_000) if r["SK"] not in before
    ]


def last_checkpoint(container, job_id: int) -> dict:
    return torch.load(
        io.BytesIO(container.artifacts.get(keys.last_checkpoint(job_id))),
        map_location="cpu",
        weights_only=True,
    )


def test_knobs_change_the_run(container, data, tmp_path):
    job = new_job(
        container,
        3,
        optimizer={"type": "sgd", "momentum": 0.8, "weight_decay": 0.001},
        scheduler={"type": "cosine", "warmup_epochs": 2, "warmup_lr": 0.001},
        augmentation={"random_flip": True, "color_jitter": True, "brightness": 0.3},
        mixed_precision=True,
        gradient_clip_value=1.0,
    )
    logs = train(container, job, data, tmp_path / "run")
    assert (
        "Optimizer: SGD; mixed precision: bfloat16 autocast on the CPU, gradients clipped to "
        "norm 1; augmentation: RandomHorizontalFlip, ColorJitter"
    ) in logs
    rows = container.job_records.metrics(job.id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # warm-up from warmup_lr to the base rate over two epochs, then cosine
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.001, 0.0055, 0.01])
    group = last_checkpoint(container, job.id)["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["weight_decay"]) == (0.8, 0.001)


def test_a_job_resumed_from_its_own_checkpoint_trains_only_the_epochs_after_it(
    container, data, tmp_path
):
    job = new_job(container, 2)
    first = train(container, job, data, tmp_path / "first")
    assert not any("Resumed" in m for m in first)
    saved = last_checkpoint(container, job.id)
    assert saved["epoch"] == 2 and saved["scheduler"]["last_epoch"] == 2

    # What the API's start?resume=true does: the same job, its epochs raised, resumed
    # from its own last checkpoint.
    key = keys.last_checkpoint(job.id)
    resumed = DynamoJobs(container.table).update(
        job.id,
        {
            "total_epochs": 4,
            "epochs": 4,
            "advanced_config": {**job.advanced_config, "resume_from": key},
        },
    )
    second = train(container, resumed, data, tmp_path / "second")
    assert f"Resumed from checkpoint {key} at epoch 2: epochs 3-4 to go" in second
    rows = container.job_records.metrics(job.id)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # epochs 3 and 4 added, numbered on
    schedule = JobSpec.from_job(resumed).knobs  # cosine over the 4 epochs now
    assert [float(r["learning_rate"]) for r in rows[2:]] == pytest.approx(
        [schedule.lr_at(3), schedule.lr_at(4)]
    )
    assert container.job_repository.get(job.id).current_epoch == 4
    assert last_checkpoint(container, job.id)["epoch"] == 4


def test_speech_recognition_trains_with_its_knobs(container, tmp_path):
    pytest.importorskip("torchaudio")
    from crucible_trainer.frameworks import torchaudio_asr

    (tmp_path / "lj.zip").write_bytes(make.ljspeech(3))
    data = Path(extract(str(tmp_path / "lj.zip"), str(tmp_path / "lj")))
    job = DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=OWNER,
            framework="torchaudio",
            model_name="conformer",
            task_type="speech_recognition",
            epochs=3,
            total_epochs=3,
            batch_size=2,
            learning_rate=0.01,
            advanced_config={
                "dim": 32,
                "layers": 1,
                "optimizer": {"type": "sgd"},
                "scheduler": {"type": "step", "step_size": 1, "gamma": 0.5},
                "mixed_precision": True,
                "gradient_clip_value": 0.5,
            },
        )
    )
    spec = JobSpec.from_job(job)
    reporter = Reporter(
        container.push, container.job_repository, job, container.job_records, artifacts=None
    )
    checkpoints = Checkpoints(container.artifacts, job.id, tmp_path, reporter)
    run = Run(spec, reporter, checkpoints, threading.Event())
    assert torchaudio_asr.train(spec, data, run) == "completed"
    checkpoints.flush()
    logs = [r["message"] for r in container.job_records.logs(job.id, 1000)]
    assert (
        "Optimizer: SGD; mixed precision: bfloat16 autocast on the CPU, gradients clipped to "
        "norm 0.5"
    ) in logs
    rows = container.job_records.metrics(job.id)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.01, 0.005, 0.0025])


def test_a_new_job_keeps_seed_002s_fields(container):
    from functions.api.routers.training_schemas import TrainingJobIn, TrainingJobOut
    from shared.models import Principal

    owner = Principal(user_id=OWNER, role="user")
    dataset = container.datasets.upload(
        owner, [("shapes.zip", io.BytesIO(make.imagefolder(per_class=2)))], name="shapes"
    )
    project = container.projects.create(owner, "My Project", None)
    body = TrainingJobIn.model_validate(
        {
            "session_id": 7,
            "project_id": project.id,
            "tags": ["baseline"],
            "notes": "first try",
            "config": {
                "framework": "timm",
                "model_name": "resnet10t",
                "dataset_id": dataset.id,
                "num_classes": 2,
                "advanced_config": {"optimizer": {"type": "sgd", "learning_rate": 0.05}},
            },
        }
    )
    job = container.training.create(owner, body.config.model_dump(), body.meta())
    out = TrainingJobOut.of(container.job_repository.get(job.id)).model_dump()
    assert {k: out[k] for k in ("session_id", "tags", "notes", "project_name")} == {
        "session_id": 7,
        "tags": ["baseline"],
        "notes": "first try",
        "project_name": "My Project",
    }
    assert (out["num_classes"], out["dataset_format"], out["dataset_path"]) == (
        2,
        "imagefolder",
        dataset.id,
    )
    assert out["learning_rate"] == 0.05 and out["output_dir"] == f"jobs/{job.id}/checkpoints/"
