"""Seed 003's workflows without AWS: a workflow config onto a job's, ids, statuses, the
detail's estimate, and what a trainer's progress messages carry (eta_minutes, metrics so
far, GPU figures only where measured)."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import InvalidInput, NotFound
from shared.models import TrainingJob, utcnow
from shared.services import workflows as wf
from shared.services.reporting import Reporter


def test_seed_config_maps_onto_a_job_config():
    cfg = wf.training_config(
        {
            "task_type": "classification",
            "model": "ResNet50",
            "dataset_id": "ds_123",
            "hyperparameters": {
                "epochs": 100,
                "batch_size": 32,
                "learning_rate": 0.001,
                "image_size": 64,
            },
        }
    )
    assert cfg == {
        "framework": "timm",
        "model_name": "resnet50",
        "task_type": "image_classification",
        "dataset_id": "ds_123",
        "epochs": 100,
        "batch_size": 32,
        "learning_rate": 0.001,
        "advanced_config": {"image_size": 64},
    }


def test_chat_training_config_is_taken_too():
    cfg = wf.training_config(
        {
            "task_type": "detection",
            "model_name": "YOLO11s",
            "model_source": "ultralytics",
            "num_classes": 2,
            "class_names": ["car", "bus"],
            "dataset": {"source": "uploaded", "dataset_id": "abc"},
            "hyperparameters": {"epochs": 3, "optimizer": "adam"},
        }
    )
    assert (cfg["framework"], cfg["model_name"], cfg["task_type"]) == (
        "ultralytics",
        "yolo11s",
        "object_detection",
    )
    assert cfg["dataset_id"] == "abc" and cfg["epochs"] == 3
    assert cfg["advanced_config"] == {"optimizer": "Adam"}  # as ultralytics names it
    # the framework follows from the model when not named
    assert wf.training_config({"model": "yolov8n", "dataset_id": "d"})["framework"] == "ultralytics"
    assert (
        wf.training_config({"model": "conformer", "dataset_id": "d"})["framework"] == "torchaudio"
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dataset_id": "d"}, "config.model"),
        ({"model": "resnet18"}, "config.dataset_id"),
        ({"model": "resnet18", "dataset_id": "d", "hyperparameters": {"epochs": 0}}, "epochs"),
        ({"model": "resnet18", "dataset_id": "d", "hyperparameters": {"epochs": 2.5}}, "epochs"),
        ({"model": "resnet18", "dataset_id": "d", "hyperparameters": {"epochs": True}}, "epochs"),
        (
            {"model": "resnet18", "dataset_id": "d", "hyperparameters": {"learning_rate": 0}},
            "learning_rate",
        ),
        (
            {"model": "resnet18", "dataset_id": "d", "hyperparameters": {"batch_size": "x"}},
            "batch_size",
        ),
        ({"model": "resnet18", "dataset_id": "d", "hyperparameters": []}, "hyperparameters"),
    ],
)
def test_bad_configs_name_their_field(config, field):
    with pytest.raises(InvalidInput) as err:
        wf.training_config(config)
    assert err.value.field.endswith(field)


def test_workflow_ids_and_statuses():
    assert wf.job_id_of("17") == wf.job_id_of("wf_17") == 17
    for bad in ("wf_", "wf_x", "abc", "-1", "1" * 13, "wf_789xyz"):
        with pytest.raises(NotFound):
            wf.job_id_of(bad)
    assert wf.STATUS_OF == {
        "pending": "pending",
        "queued": "pending",
        "running": "training",
        "stopping": "training",
        "completed": "completed",
        "failed": "failed",
        "stopped": "cancelled",
    }


def job(**kw) -> TrainingJob:
    base = {
        "id": 5,
        "owner_id": 1,
        "framework": "timm",
        "model_name": "resnet10t",
        "task_type": "image_classification",
        "total_epochs": 10,
    }
    return TrainingJob(**{**base, **kw})


def test_estimated_completion_from_the_pace_of_its_epochs():
    start = datetime(2025, 10, 17, 10, 0, tzinfo=UTC)
    rows = [
        {"epoch": e, "created_at": (start + timedelta(minutes=2 * e)).isoformat()}
        for e in (1, 2, 3)
    ]
    running = job(status="running", started_at=start, current_epoch=3)
    # three epochs in six minutes: seven left end fourteen minutes after the third
    assert wf._eta(running, rows) == start + timedelta(minutes=20)
    assert wf._eta(running, []) is None
    assert wf._eta(running.model_copy(update={"status": "completed"}), rows) is None
    assert wf._percent(running) == 30
    assert wf._percent(running.model_copy(update={"status": "completed"})) == 100
    assert wf._started(job(status="queued", started_at=start)) is None


def test_flat_metric_entries():
    row = {
        "epoch": 2,
        "step": 6,
        "loss": 0.5,
        "accuracy": 0.75,
        "val_loss": 0.6,
        "learning_rate": 0.001,
        "extra_metrics": {"precision": 0.7, "note": "x"},
        "per_class": {"a": {}},
        "created_at": "2025-10-17T10:05:00+00:00",
    }
    assert wf._flat(row) == {
        "timestamp": datetime(2025, 10, 17, 10, 5, tzinfo=UTC),
        "epoch": 2,
        "step": 6,
        "loss": 0.5,
        "accuracy": 0.75,
        "val_loss": 0.6,
        "learning_rate": 0.001,
        "precision": 0.7,
    }


class Pushed(list):
    def publish(self, event, *, while_job_open=None):
        self.append(event)


class Jobs:
    def update(self, job_id, fields):
        return None


class Records:
    def put_metrics(self, job_id, epoch, row):
        self.row = row

    def put_log(self, *args):
        pass


def reporter(device=None, **kw):
    pushed = Pushed()
    return pushed, Reporter(
        pushed, Jobs(), job(total_epochs=2, **kw), Records(), throttle_s=0, device=device
    )


def test_progress_carries_eta_and_the_metrics_so_far(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("shared.services.reporting.time.time", lambda: clock[0])
    pushed, rep = reporter()
    clock[0] += 30  # set-up: data, model
    rep.on_step(1, 1, 4, 2.0, 0.01)
    first = pushed[-1].data
    # a quarter epoch in 30 s (set-up included): 1.75 epochs left take 210 s
    assert first["eta_minutes"] == 3.5 and first["metrics"] == {"loss": 2.0}
    assert "gpu_utilization" not in first and "memory_usage_gb" not in first
    clock[0] += 10
    rep.on_step(1, 4, 4, 1.0, 0.01)  # three quarters in 10 s from the first step: one left
    assert pushed[-1].data["eta_minutes"] == round(10 / 0.75 * 1 / 60, 2)
    rep.on_epoch_end(1, 1.2, {"val_loss": 0.9, "accuracy": 0.5, "per_class": {}}, 0.01)
    assert rep.records.row["step"] == 4
    clock[0] += 5
    rep.on_step(2, 2, 4, 0.8, 0.01)
    data = pushed[-1].data
    assert data["metrics"] == {"val_loss": 0.9, "accuracy": 0.5, "loss": 0.8}
    assert data["eta_minutes"] == round(15 / 1.25 * 0.5 / 60, 2)


def test_a_reporter_made_for_one_callback_times_from_the_jobs_start(monkeypatch):
    now = datetime(2025, 10, 17, 10, 10, tzinfo=UTC)
    monkeypatch.setattr("shared.services.reporting.time.time", lambda: now.timestamp())
    pushed, rep = reporter(started_at=now - timedelta(minutes=10), status="running")
    rep.on_step(2, 1, 2, 0.5, 0.01)  # one and a half epochs in ten minutes
    assert pushed[-1].data["eta_minutes"] == round(10 / 1.5 * 0.5, 2)


def test_gpu_figures_only_where_measured():
    pushed, rep = reporter(device=lambda: {"gpu_utilization": 85.0, "memory_usage_gb": 12.5})
    rep.on_step(1, 1, 2, 1.0, 0.1)
    assert pushed[-1].data["gpu_utilization"] == 85.0
    assert pushed[-1].data["memory_usage_gb"] == 12.5
    for measure in (dict, lambda: {"gpu_utilization": None}, lambda: 1 / 0):
        pushed, rep = reporter(device=measure)
        rep.on_step(1, 1, 2, 1.0, 0.1)
        assert not {"gpu_utilization", "memory_usage_gb"} & set(pushed[-1].data)


# --- the service over in-memory ports ---------------------------------------------------


class MemoryJobs:
    """The job repository's contract in memory: ids in order, slots taken with the write
    that stores or moves a job, and only while under the cap."""

    def __init__(self):
        self.items: dict[int, TrainingJob] = {}
        self.held: dict[int, set[str]] = {}

    def _count(self, owner_id: int, counter: str) -> int:
        return sum(
            1 for i, s in self.held.items() if counter in s and self.items[i].owner_id == owner_id
        )

    def create(self, job, *, acquire=None):
        for counter, cap in (acquire or {}).items():
            if cap is not None and self._count(job.owner_id, counter) >= cap:
                return None
        job = job.model_copy(update={"id": len(self.items) + 1})
        self.items[job.id] = job
        if acquire:
            self.held[job.id] = set(acquire)
        return job

    def get(self, job_id):
        return self.items.get(job_id)

    def list(self, *, owner_id, skip, limit):
        from shared.models import Page

        mine = [j for j in self.items.values() if owner_id is None or j.owner_id == owner_id]
        return Page[TrainingJob](total=len(mine), items=mine[skip : skip + limit])

    def update(self, job_id, fields):
        self.items[job_id] = self.items[job_id].model_copy(update=fields)
        return self.items[job_id]

    def transition(self, job_id, to, allowed_from, fields=None, *, acquire=None, release=False):
        job = self.items.get(job_id)
        if job is None or job.status not in allowed_from:
            return None
        if release:
            self.held.pop(job_id, None)
        return self.update(job_id, {"status": to, **(fields or {})})

    def active(self, owner_id):
        return {"jobs": self._count(owner_id, "jobs")}

    def set_runner(self, job_id, attempt, runner_job_id):
        job = self.items.get(job_id)
        if job is None or job.attempt != attempt or job.runner_job_id:
            return None
        return self.update(job_id, {"runner_job_id": runner_job_id})


class Deadlines:
    def __init__(self):
        self.put_ = []

    def put(self, kind, ref, at, **data):
        self.put_.append((kind, ref))


class MemoryRecords:
    def __init__(self):
        self.rows: dict[int, list[dict]] = {}
        self.lines: dict[int, list[dict]] = {}

    def metrics(self, job_id, limit=1000):
        return self.rows.get(job_id, [])[:limit]

    def logs(self, job_id, limit=500):
        return self.lines.get(job_id, [])[:limit]


class Datasets:
    def __init__(self, *datasets):
        self.by_id = {d.id: d for d in datasets}

    def get(self, actor, dataset_id):
        d = self.by_id.get(dataset_id)
        if d is None or not (d.visibility == "public" or actor.can_read(d.owner_id)):
            raise NotFound("Dataset not found", code="DATASET_NOT_FOUND")
        return d


class Runner:
    def __init__(self):
        self.submitted, self.terminated = [], []

    def submit(self, job_id, *, job_type, queue, limits=None, attempt=None, owner=None):
        self.submitted.append(job_id)
        return f"run-{job_id}"

    def terminate(self, runner_job_id, reason):
        self.terminated.append(runner_job_id)


class Users:
    def current(self, user_id):
        from shared.models import User

        return User(id=user_id, email=f"{user_id}@x.org") if user_id in (1, 2) else None


@pytest.fixture
def service():
    from shared.models import Dataset
    from shared.services.jobs import JobBounds, JobLimits, JobStates
    from shared.services.training import TrainingService

    jobs, records, runner = MemoryJobs(), MemoryRecords(), Runner()
    mine = Dataset(
        id="mine", owner_id=1, name="shapes", status="ready", format="imagefolder", key="k"
    )
    public = Dataset(
        id="public",
        owner_id=2,
        name="open",
        status="ready",
        format="imagefolder",
        key="k",
        visibility="public",
    )
    training = TrainingService(
        JobStates(jobs),
        jobs,
        records,
        Datasets(mine, public),
        None,
        runner,
        Pushed(),
        None,
        projects=None,
        limits=JobLimits(2),
        max_inference_bytes=1,
        deadlines=Deadlines(),
        bounds=JobBounds(),
    )
    return wf.WorkflowService(training, Users()), jobs, records, runner


def test_create_starts_and_a_refusal_stores_nothing(service):
    from shared.errors import Conflict
    from shared.models import Principal

    svc, jobs, _, runner = service
    alice = Principal(user_id=1, role="user")
    first = svc.create(alice, {"model": "resnet10t", "dataset_id": "mine"}, name="one")
    assert (first["workflow_id"], first["status"], first["queue_position"]) == ("1", "pending", 0)
    assert first["name"] == "one" and first["estimated_duration_minutes"] >= 1
    assert jobs.get(1).status == "queued" and runner.submitted == ["1"]
    second = svc.create(alice, {"model": "resnet10t", "dataset_id": "mine"})
    assert second["queue_position"] == 1 and second["name"] == "resnet10t on shapes"
    with pytest.raises(Conflict) as err:  # two at once is this user's cap
        svc.create(alice, {"model": "resnet10t", "dataset_id": "mine"})
    assert err.value.code == "ACTIVE_JOB_LIMIT" and len(jobs.items) == 2
    # a dataset anyone may read is still not this user's to train a workflow on
    with pytest.raises(NotFound) as err:
        svc.create(alice, {"model": "resnet10t", "dataset_id": "public"})
    assert err.value.field == "config.dataset_id" and len(jobs.items) == 2
    # a bad model is refused before its dataset is looked at
    with pytest.raises(InvalidInput) as err:
        svc.create(alice, {"model": "x/y", "dataset_id": "public"})
    assert err.value.field == "config.model"
    with pytest.raises(NotFound):
        svc.create_for(99, {"model": "resnet10t", "dataset_id": "mine"})
    # the orchestrator acts as the user named, with a user's rights
    bob = svc.create_for(2, {"model": "resnet10t", "dataset_id": "public"}, name="theirs")
    assert jobs.get(int(bob["workflow_id"])).owner_id == 2


def test_estimate_from_the_users_last_run_of_the_model(service):
    from shared.models import Principal

    svc, jobs, _, _ = service
    alice = Principal(user_id=1, role="user")
    svc.create(
        alice, {"model": "resnet10t", "dataset_id": "mine", "hyperparameters": {"epochs": 4}}
    )
    start = datetime(2025, 10, 17, 10, 0, tzinfo=UTC)
    jobs.update(
        1,
        {"status": "completed", "started_at": start, "completed_at": start + timedelta(minutes=10)},
    )
    jobs.held.clear()
    again = svc.create(
        alice, {"model": "resnet10t", "dataset_id": "mine", "hyperparameters": {"epochs": 8}}
    )
    assert again["estimated_duration_minutes"] == 20 and again["queue_position"] == 0


def test_list_get_metrics_logs_and_cancel(service, monkeypatch):
    from shared.errors import Conflict
    from shared.models import Principal

    svc, jobs, records, runner = service
    alice, bob = Principal(user_id=1, role="user"), Principal(user_id=2, role="user")
    for name in ("b", "a"):
        svc.create(alice, {"model": "resnet10t", "dataset_id": "mine"}, name=name)
    jobs.update(1, {"status": "completed", "current_epoch": 10})
    jobs.held.pop(1)
    page = svc.list(alice, status=None, page=1, limit=1, sort="-created_at")
    assert [w["workflow_id"] for w in page["workflows"]] == ["2"] and page["has_next"]
    assert page["total"] == 2
    by_name = svc.list(alice, status=None, page=1, limit=5, sort="name")["workflows"]
    assert [w["name"] for w in by_name] == ["a", "b"]
    assert svc.list(alice, status="completed", page=1, limit=5, sort="created_at")["total"] == 1
    assert svc.list(bob, status=None, page=1, limit=5, sort="created_at")["total"] == 0
    with pytest.raises(InvalidInput):
        svc.list(alice, status=None, page=1, limit=5, sort="id")

    records.rows[2] = [
        {
            "epoch": 1,
            "step": 3,
            "loss": 1.0,
            "accuracy": 0.5,
            "created_at": "2025-10-17T10:00:00+00:00",
        },
        {
            "epoch": 2,
            "step": 6,
            "loss": 0.5,
            "accuracy": 0.7,
            "created_at": "2025-10-17T10:01:00+00:00",
        },
    ]
    records.lines[2] = [
        {"level": "INFO", "message": f"line {i}", "created_at": "2025-10-17T10:00:00+00:00"}
        for i in range(5)
    ]
    detail = svc.get(alice, "wf_2")
    assert detail["metrics"] == {"loss": 0.5, "accuracy": 0.7}
    assert detail["progress"] == {"current_epoch": 0, "total_epochs": 10, "percentage": 0}
    since = datetime(2025, 10, 17, 10, 0, 30)  # no zone: UTC
    only = svc.metrics(alice, "2", names=["loss"], since=since)["metrics"]
    assert only == [
        {"timestamp": datetime(2025, 10, 17, 10, 1, tzinfo=UTC), "epoch": 2, "step": 6, "loss": 0.5}
    ]
    logs = svc.logs(alice, "2", tail=2)
    assert logs["total_lines"] == 5 and [x["message"] for x in logs["logs"]] == ["line 3", "line 4"]
    for call in (svc.get, lambda a, w: svc.logs(a, w, tail=1), svc.cancel):
        with pytest.raises(NotFound):
            call(bob, "2")

    with pytest.raises(Conflict):  # a completed one cannot be cancelled
        svc.cancel(alice, "1")
    monkeypatch.setattr(wf, "CANCEL_WAIT_S", 0.0)
    answer = svc.cancel(alice, "2")  # its trainer was asked to stop, and has not yet
    assert answer["status"] == "training" and answer["cancel_requested"] and runner.terminated
    assert svc.get(alice, "2")["cancel_requested"] is True
    jobs.transition(2, "stopped", frozenset({"stopping"}), {"completed_at": utcnow()}, release=True)
    again = svc.cancel(alice, "2")
    assert again["status"] == "cancelled" and again["cancelled_at"] is not None


# --- what a trainer measures of its device (no GPU here: torch.cuda stood in for) -------


class Cuda:
    """torch.cuda as it is on a one-GPU machine, where NVML may or may not be readable."""

    def __init__(self, *, held: int, initialized: bool = True, nvml: bool = True):
        self.held, self.initialized, self.nvml, self.asked = held, initialized, nvml, 0

    def is_available(self):
        return True

    def is_initialized(self):
        return self.initialized

    def device_count(self):
        return 1

    def memory_allocated(self, device=None):
        return self.held

    def utilization(self, device=None):
        self.asked += 1
        if not self.nvml:
            raise ModuleNotFoundError("pynvml")
        return 85

    def get_device_properties(self, device):
        from types import SimpleNamespace

        return SimpleNamespace(name="NVIDIA H200", total_memory=141 * 2**30)


def test_gpu_figures_are_measured_or_left_out(monkeypatch):
    torch = pytest.importorskip("torch")
    from crucible_trainer.run import describe, device_probe, resources

    cuda = Cuda(held=3 * 2**29)
    monkeypatch.setattr(torch, "cuda", cuda)
    assert device_probe()() == {"memory_usage_gb": 1.5, "gpu_utilization": 85.0}
    given = resources()
    assert (given["device"], given["gpu_type"], given["gpu_count"]) == ("cuda", "NVIDIA H200", 1)
    assert describe(given).startswith("Resources: 1 x NVIDIA H200 (141.0 GiB each), ")
    # without NVML: memory only, and utilization is not asked again
    cuda = Cuda(held=2**30, nvml=False)
    monkeypatch.setattr(torch, "cuda", cuda)
    probe = device_probe()
    assert probe() == probe() == {"memory_usage_gb": 1.0} and cuda.asked == 1
    # a process that trains on the CPU holds nothing on the GPU: nothing to report
    for idle in (Cuda(held=0), Cuda(held=2**30, initialized=False)):
        monkeypatch.setattr(torch, "cuda", idle)
        assert device_probe()() == {}


def test_no_cuda_no_probe():
    pytest.importorskip("torch")
    import torch
    from crucible_trainer.run import device_probe, resources

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert device_probe() is None
    given = resources()
    assert given["device"] == "cpu" and given["cpu_count"] >= 1 and "gpu_type" not in given


@pytest.mark.parametrize("odd", ["²", "wf_²", "①", "٣", "-1", "wf_wf_1", "1" * 13, ""])
def test_a_workflow_id_that_is_not_ascii_digits_is_not_found(odd):
    from shared.errors import NotFound
    from shared.services.workflows import job_id_of

    with pytest.raises(NotFound):
        job_id_of(odd)
