"""Seed 003's workflows: a training job seen through seed 003's vocabulary.

A workflow *is* a training job (its id is the job's; ``wf_<n>`` is accepted for ``<n>``),
so everything the training service checks and the job lifecycle does applies unchanged:
the catalogue's model check, the dataset's owner, the caps of the owner's plan, the
trainer, its reports and the push path. This module maps the seed's request (``config``
with ``model``, ``dataset_id`` and ``hyperparameters``, or the chat's ``training_config``)
onto a job, and the job, its metric rows and log lines back onto the seed's answers.

Statuses: pending (pending, queued), training (running, stopping), completed, failed,
cancelled (stopped). A workflow is created queued and submitted in one step: stored
holding its slot in the owner's active jobs, or (a cap, a used-up quota, any bad field)
not stored at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.catalogue import FRAMEWORKS, check_model
from shared.errors import Conflict, CrucibleError, InvalidInput, NotFound
from shared.models import Dataset, JobStatus, Principal, TrainingJob, utcnow
from shared.ports import UserRepository
from shared.services.training import TrainingService

# Seed 003's statuses, and the job statuses each stands for.
STATUSES: dict[str, tuple[JobStatus, ...]] = {
    "pending": ("pending", "queued"),
    "training": ("running", "stopping"),
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("stopped",),
}
STATUS_OF: dict[str, str] = {job: wf for wf, jobs in STATUSES.items() for job in jobs}

# The seed's task names (and the chat's) -> the catalogue's.
TASKS = {
    "classification": "image_classification",
    "image_classification": "image_classification",
    "detection": "object_detection",
    "object_detection": "object_detection",
    "speech_recognition": "speech_recognition",
    "asr": "speech_recognition",
}
# hyperparameters that are a job's own fields; every other one goes to advanced_config
JOB_FIELDS = {"epochs": (1, 1000), "batch_size": (1, 4096), "learning_rate": (0.0, 1.0)}
ULTRALYTICS_OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}
SORTS = {"created_at", "started_at", "name"}
# How long DELETE waits for a running trainer to stop (save its checkpoint, exit)
# before it answers; a trainer that takes longer is still stopping, and its workflow
# becomes cancelled when it has.
CANCEL_WAIT_S = 5.0
# Without a finished run of the same model to go by, a rough pace: seconds per image
# per epoch on the trainer, and the start-up (image, data, model) before the first epoch.
SECONDS_PER_IMAGE = {"timm": 0.05, "ultralytics": 0.2, "torchaudio": 0.2}
STARTUP_S = 60.0
WORKFLOW_NOT_FOUND = "Workflow not found"
# the training service's field names -> the seed's, in errors about a workflow's config
FIELDS = {"config.model_name": "config.model"}
T = TypeVar("T")


def iso(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def job_id_of(workflow_id: str | int) -> int:
    """The job id a workflow id names: ``<n>`` or ``wf_<n>``; anything else is not found."""
    text = str(workflow_id)
    text = text.removeprefix("wf_")
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise NotFound(WORKFLOW_NOT_FOUND, code="WORKFLOW_NOT_FOUND")
    return int(text)


def framework_of(model: str) -> str:
    """The framework that trains ``model``: the one whose model list names it, else timm
    (whose names the catalogue checks when the job is made)."""
    for name, spec in FRAMEWORKS.items():
        if model in (spec.get("models") or ()):
            return name
    return "timm"


def training_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Seed 002's job config from seed 003's workflow ``config`` (``model``, ``dataset_id``,
    ``hyperparameters``, optional ``framework`` and ``task_type``) or the chat's
    ``training_config`` (``model_name``, ``model_source``, ``dataset.dataset_id``):
    ``epochs``, ``batch_size`` and ``learning_rate`` are the job's own, every other
    hyperparameter (``image_size``, ``optimizer``, ...) joins ``advanced_config``.
    ``num_classes`` and ``class_names`` are the dataset's to say, and not read."""
    if not isinstance(config, Mapping):
        raise InvalidInput("config must be an object", field="config")
    model = config.get("model") or config.get("model_name")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput(
            "config.model is required (a name from GET /models)", field="config.model"
        )
    model = model.strip().lower()  # "ResNet50", "YOLO11s": the catalogue's names are lower-case
    dataset = config.get("dataset")
    dataset_id = config.get("dataset_id") or (
        dataset.get("dataset_id") if isinstance(dataset, Mapping) else dataset
    )
    if not isinstance(dataset_id, str) or not dataset_id:
        raise InvalidInput("config.dataset_id is required", field="config.dataset_id")
    framework = config.get("framework") or config.get("model_source") or framework_of(model)
    task = config.get("task_type")
    if task is not None:
        task = TASKS.get(str(task).lower(), str(task))
    hyper = config.get("hyperparameters")
    hyper = {} if hyper is None else hyper
    advanced = config.get("advanced_config")
    advanced = {} if advanced is None else advanced
    if not isinstance(hyper, Mapping) or not isinstance(advanced, Mapping):
        raise InvalidInput(
            "config.hyperparameters and config.advanced_config must be objects",
            field="config.hyperparameters",
        )
    cfg: dict[str, Any] = {
        "framework": str(framework),
        "model_name": model,
        "task_type": task,
        "dataset_id": dataset_id,
        "advanced_config": {
            **advanced,
            **{k: v for k, v in hyper.items() if k not in JOB_FIELDS and v is not None},
        },
    }
    optimizer = cfg["advanced_config"].get("optimizer")
    if framework == "ultralytics" and isinstance(optimizer, str):  # its names are cased
        cfg["advanced_config"]["optimizer"] = ULTRALYTICS_OPTIMIZERS.get(
            optimizer.lower(), optimizer
        )
    for name, (low, high) in JOB_FIELDS.items():
        value = hyper.get(name, config.get(name))
        if value is None:
            continue
        try:
            number = int(value) if name != "learning_rate" else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if (
            isinstance(value, bool)
            or not math.isfinite(number)
            or (number != value and name != "learning_rate")
            or not (low < number <= high if name == "learning_rate" else low <= number <= high)
        ):
            raise InvalidInput(
                f"{name} must be a number from {low} to {high}"
                + (" (above 0)" if name == "learning_rate" else ""),
                field=f"config.hyperparameters.{name}",
            )
        cfg[name] = number
    return cfg


def _mapped(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, its errors naming the seed's fields (``config.model``)."""
    try:
        return call(*args)
    except CrucibleError as exc:
        if exc.field in FIELDS:
            exc.field = FIELDS[exc.field]  # the same error (its code, its details), renamed
        raise


class WorkflowService:
    def __init__(self, training: TrainingService, users: UserRepository) -> None:
        self.training = training
        self.users = users

    # --- create ---------------------------------------------------------------------
    def create(
        self,
        actor: Principal,
        config: Mapping[str, Any],
        *,
        name: str | None = None,
        description: str | None = None,
        project_id: int | None = None,
    ) -> dict[str, Any]:
        """Create and start a workflow of ``actor``'s (seed 003's POST /workflows, the
        chat's start_training, the orchestrator): the seed's answer, with
        ``estimated_duration_minutes`` and ``queue_position``."""
        cfg = training_config(config)
        # what the request says is checked before what it names: a bad model is a 400
        # whatever its dataset
        framework = cfg["framework"]
        task = cfg["task_type"] or next(iter(FRAMEWORKS.get(framework, {}).get("tasks", {})), "")
        _mapped(check_model, framework, task, cfg["model_name"], cfg["advanced_config"])
        dataset = self._own_dataset(actor, cfg["dataset_id"])
        meta = {
            "experiment_name": (name or "").strip() or f"{cfg['model_name']} on {dataset.name}",
            "description": description,
            "project_id": project_id,
        }
        job = self._launch(actor, cfg, meta)
        mine = self.training.jobs.list(owner_id=actor.user_id, skip=0, limit=10_000).items
        return {
            "workflow_id": str(job.id),
            "name": job.experiment_name,
            "status": STATUS_OF[job.status],
            "created_at": job.created_at,
            "estimated_duration_minutes": self._estimate(job, dataset, mine),
            "queue_position": sum(
                1 for j in mine if j.id < job.id and j.status in ("queued", "running", "stopping")
            ),
        }

    def create_for(
        self, user_id: int, config: Mapping[str, Any], *, name: str | None = None, **meta: Any
    ) -> dict[str, Any]:
        """The orchestrator's create-workflow: as POST /workflows by ``user_id`` (who must
        exist; acting with a user's rights, so the dataset must be theirs)."""
        user = self.users.current(user_id)
        if user is None:
            raise NotFound("User not found", field="user_id", code="USER_NOT_FOUND")
        return self.create(Principal(user_id=user.id, role="user"), config, name=name, **meta)

    def _own_dataset(self, actor: Principal, dataset_id: str) -> Dataset:
        """The dataset, if it is ``actor``'s own (a workflow trains on its owner's data);
        any other answers as a missing one."""
        try:
            dataset = self.training.datasets.get(actor, dataset_id)
        except NotFound:
            dataset = None
        if dataset is None or dataset.owner_id != actor.user_id:
            raise NotFound("Dataset not found", field="config.dataset_id", code="DATASET_NOT_FOUND")
        return dataset

    def _launch(self, actor: Principal, cfg: dict[str, Any], meta: dict[str, Any]) -> TrainingJob:
        """Store the job already queued, holding its slots (the owner's plan's caps, taken
        in the same transaction), and submit it; a refusal stores nothing. This is
        ``TrainingService.create`` and ``start`` in one write, as its seed 000 path does."""
        t = self.training
        new = _mapped(t._new, actor, cfg, meta)
        new = new.model_copy(update={"status": "queued", "started_at": utcnow()})
        slots = t._slots(new)  # the plan's limits may refuse here (a used-up quota)
        job = t.jobs.create(new, acquire=slots)
        if job is None:
            cap = t.limits.active_jobs(actor.user_id)
            raise Conflict(
                f"Too many active workflows: at most {cap} may be pending or training at "
                "once; cancel one or wait for one to finish",
                code="ACTIVE_JOB_LIMIT",
            )
        return t._submit(job)

    def _estimate(self, job: TrainingJob, dataset: Dataset, mine: list[TrainingJob]) -> int:
        """Minutes: the pace of the owner's latest finished run of the same model (on the
        same dataset if there is one), scaled to this one's epochs; else a rough pace per
        image of the dataset."""
        done = [
            j
            for j in mine
            if j.id != job.id
            and j.status == "completed"
            and (j.framework, j.model_name) == (job.framework, job.model_name)
            and j.started_at
            and j.completed_at
            and j.total_epochs
        ]
        done.sort(key=lambda j: (j.dataset_id == job.dataset_id, j.id))
        if done:
            last = done[-1]
            seconds = (last.completed_at - last.started_at).total_seconds()
            seconds *= job.total_epochs / last.total_epochs
        else:
            per_image = SECONDS_PER_IMAGE.get(job.framework, 0.1)
            seconds = STARTUP_S + job.total_epochs * max(dataset.file_count, 1) * per_image
        return max(1, math.ceil(seconds / 60))

    # --- read -----------------------------------------------------------------------
    def get_job(self, actor: Principal, workflow_id: str | int) -> TrainingJob:
        try:
            return self.training.get(actor, job_id_of(workflow_id))
        except NotFound:
            raise NotFound(WORKFLOW_NOT_FOUND, code="WORKFLOW_NOT_FOUND") from None

    def list(
        self, actor: Principal, *, status: str | None, page: int, limit: int, sort: str
    ) -> dict[str, Any]:
        """The caller's workflows, filtered by seed status, sorted (``created_at``,
        ``started_at`` or ``name``; ``-`` first for descending) and paged."""
        key = sort.removeprefix("-")
        if key not in SORTS:
            raise InvalidInput(
                f"sort must be one of {', '.join(sorted(SORTS))}, optionally with a leading '-'",
                field="sort",
            )
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
        jobs = self.training.jobs.list(owner_id=actor.user_id, skip=0, limit=10_000).items
        if status is not None:
            jobs = [j for j in jobs if j.status in STATUSES[status]]

        def order(j: TrainingJob) -> tuple:
            if key == "name":
                return (_name(j).lower(), j.id)
            if key == "started_at":
                started = _started(j)
                return (started is not None, started or j.created_at, j.id)
            return (j.created_at, j.id)

        jobs.sort(key=order, reverse=sort.startswith("-"))
        start = (page - 1) * limit
        return {
            "workflows": [_summary(j) for j in jobs[start : start + limit]],
            "total": len(jobs),
            "page": page,
            "limit": limit,
            "has_next": start + limit < len(jobs),
        }

    def get(self, actor: Principal, workflow_id: str | int) -> dict[str, Any]:
        """The seed's detail: progress, latest metrics, resources, times and, while it
        trains, when it should end (from the pace of its epochs so far)."""
        job = self.get_job(actor, workflow_id)
        rows = self.training.records.metrics(job.id, 10_000)
        latest = _flat(rows[-1]) if rows else {}
        latest.pop("timestamp", None)
        latest.pop("epoch", None)
        latest.pop("step", None)
        out = {
            **_summary(job),
            "description": getattr(job, "description", None),
            "progress": {
                "current_epoch": job.current_epoch,
                "total_epochs": job.total_epochs,
                "percentage": _percent(job),
            },
            "metrics": latest,
            "resources": getattr(job, "resources", None) or None,
            "estimated_completion_at": _eta(job, rows),
            "config": {
                "framework": job.framework,
                "task_type": job.task_type,
                "model": job.model_name,
                "dataset_id": job.dataset_id,
                "hyperparameters": {
                    "epochs": job.total_epochs,
                    "batch_size": job.batch_size,
                    "learning_rate": job.learning_rate,
                    **{k: v for k, v in job.advanced_config.items() if k != "resume_from"},
                },
            },
            "project_id": job.project_id,
            "error": job.error,
        }
        if job.status == "stopping":
            out["cancel_requested"] = True
        return out

    def metrics(
        self,
        actor: Principal,
        workflow_id: str | int,
        *,
        names: list[str] | None = None,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        """The metric history, one entry per epoch (``timestamp``, ``epoch``, ``step`` and
        the metrics), only ``names`` if given, only from ``since`` if given."""
        job = self.get_job(actor, workflow_id)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=utcnow().tzinfo)  # a time without a zone is UTC
        out = []
        for row in self.training.records.metrics(job.id, 10_000):
            entry = _flat(row)
            if since is not None and entry["timestamp"] and entry["timestamp"] < since:
                continue
            if names:
                keep = {"timestamp", "epoch", "step", *names}
                entry = {k: v for k, v in entry.items() if k in keep}
            out.append(entry)
        return {"workflow_id": str(job.id), "metrics": out}

    def logs(self, actor: Principal, workflow_id: str | int, *, tail: int) -> dict[str, Any]:
        """The last ``tail`` log lines, oldest first, and how many there are in all."""
        job = self.get_job(actor, workflow_id)
        rows = self.training.records.logs(job.id, 1_000_000)
        return {
            "workflow_id": str(job.id),
            "logs": [
                {
                    "timestamp": iso(r.get("created_at")),
                    "level": r.get("level", "INFO"),
                    "message": r.get("message", ""),
                }
                for r in rows[-tail:]
            ],
            "total_lines": len(rows),
        }

    # --- cancel ---------------------------------------------------------------------
    def cancel(self, actor: Principal, workflow_id: str | int) -> dict[str, Any]:
        """Stop a pending or training workflow (its trainer saves a checkpoint and exits);
        waits up to ``CANCEL_WAIT_S`` for it to have stopped. A cancelled one answers as
        such again; a completed or failed one cannot be cancelled (409)."""
        job = self.get_job(actor, workflow_id)
        if job.status not in ("stopping", "stopped"):
            try:
                job = self.training.stop(actor, job.id)
            except Conflict:
                now = self.training.jobs.get(job.id) or job
                if now.status not in ("stopping", "stopped"):
                    raise Conflict(
                        f"The workflow is {STATUS_OF[now.status]}; only pending or training "
                        "workflows can be cancelled",
                        code="INVALID_STATUS",
                    ) from None
                job = now
        deadline = time.monotonic() + CANCEL_WAIT_S
        while job.status == "stopping" and time.monotonic() < deadline:
            time.sleep(0.25)
            job = self.training.jobs.get(job.id) or job
        if job.status == "stopped":
            return {
                "workflow_id": str(job.id),
                "status": "cancelled",
                "cancelled_at": job.completed_at,
            }
        return {
            "workflow_id": str(job.id),
            "status": STATUS_OF[job.status],
            "cancelled_at": None,
            "cancel_requested": True,
            "message": "Cancellation requested: the trainer is saving a checkpoint and "
            "stopping; the workflow becomes cancelled when it has",
        }


# --- shapes ---------------------------------------------------------------------------


def _name(job: TrainingJob) -> str:
    return job.experiment_name or f"{job.model_name} #{job.id}"


def _started(job: TrainingJob) -> datetime | None:
    """When it began training (a queued job's start is only when it was queued)."""
    return None if job.status in ("pending", "queued") else job.started_at


def _percent(job: TrainingJob) -> int:
    if job.status == "completed":
        return 100
    return min(100, round(100 * job.current_epoch / max(job.total_epochs, 1)))


def _summary(job: TrainingJob) -> dict[str, Any]:
    return {
        "workflow_id": str(job.id),
        "name": _name(job),
        "status": STATUS_OF[job.status],
        "progress": _percent(job),
        "created_at": job.created_at,
        "started_at": _started(job),
        "completed_at": job.completed_at,
    }


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metric row as the seed's flat entry: timestamp, epoch, step, then every metric."""
    entry: dict[str, Any] = {
        "timestamp": iso(row.get("created_at")),
        "epoch": row.get("epoch"),
        "step": row.get("step"),
    }
    for key in ("loss", "accuracy", "val_loss", "learning_rate"):
        if row.get(key) is not None:
            entry[key] = row[key]
    for key, value in (row.get("extra_metrics") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            entry.setdefault(key, value)
    return entry


def _eta(job: TrainingJob, rows: list[dict[str, Any]]) -> datetime | None:
    """While it trains: the last epoch's end plus the epochs left at the pace of this run
    (its epochs so far over the time since it started); None before its first epoch ends,
    and once it has ended."""
    if job.status != "running" or not rows or job.started_at is None:
        return None
    last = iso(rows[-1].get("created_at"))
    if last is None:
        return None
    epochs_run = rows[-1]["epoch"] - rows[0]["epoch"] + 1
    per_epoch = (last - job.started_at).total_seconds() / max(epochs_run, 1)
    left = max(0, job.total_epochs - rows[-1]["epoch"])
    return last + timedelta(seconds=max(per_epoch, 0.0) * left)
