"""The job spec every framework trains from: a training job's fields, the options all
trainers share and seed 002's knobs (:mod:`shared.training_options`: optimizer,
scheduler, augmentation, mixed precision, gradient clipping), typed and read once from
its ``advanced_config``, after the job is checked against the catalogue and the knobs
its framework honours (again: a job item may predate the API's check, or not have come
through the API at all)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.catalogue import check_model
from shared.models import TrainingJob
from shared.settings import Settings
from shared.training_options import OWN, Options, options

SHARED_OPTIONS = ("seed", "resume_from", "checkpoint_interval_s", "image_size", "weights")
# The operator's default (CRUCIBLE_CHECKPOINT_INTERVAL_S), where no setting is passed in.
DEFAULT_CHECKPOINT_INTERVAL_S: float = Settings.model_fields["checkpoint_interval_s"].default


class Refused(ValueError):
    """The job cannot run as written; the message says why, for its owner."""


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    framework: str
    model_name: str  # a catalogue name, never a path or URL (check_model)
    task_type: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    resume_from: str | None = None  # an artifacts key: a checkpoint to continue from
    # "last" is saved at most this often (and at the end, and when stopped)
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S
    image_size: int | None = None  # None: the framework's default
    weights: Path | None = None  # starting weights: a file in the operator's weights directory
    extras: Mapping[str, Any] = field(default_factory=dict)  # framework-specific options
    options: Options | None = None  # seed 002's knobs, as this run uses them

    @classmethod
    def from_job(
        cls,
        job: TrainingJob,
        weights_dir: str | None = None,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    ) -> JobSpec:
        """The job's spec; :class:`shared.errors.InvalidInput` if the catalogue does not
        offer its model, :class:`Refused` if its weights are not in ``weights_dir``. The
        job's own ``checkpoint_interval_s`` wins over the operator's (the argument)."""
        cfg = job.advanced_config or {}
        check_model(job.framework, job.task_type, job.model_name, cfg)
        knobs = options(
            job.framework, cfg, learning_rate=job.learning_rate, epochs=job.total_epochs
        )
        return cls(
            job_id=job.id,
            framework=job.framework,
            model_name=job.model_name,
            task_type=job.task_type,
            epochs=job.total_epochs,
            batch_size=job.batch_size,
            learning_rate=knobs.learning_rate,
            seed=int(cfg.get("seed", 0)),
            resume_from=cfg.get("resume_from") or None,
            checkpoint_interval_s=float(cfg.get("checkpoint_interval_s", checkpoint_interval_s)),
            image_size=int(cfg["image_size"]) if "image_size" in cfg else None,
            weights=operator_weights(cfg.get("weights") or None, weights_dir),
            extras={
                k: v for k, v in cfg.items() if k in OWN[job.framework] and k not in SHARED_OPTIONS
            },
            options=knobs,
        )

    @property
    def knobs(self) -> Options:
        if self.options is None:
            raise RuntimeError("a spec made by from_job carries its knobs")
        return self.options


def operator_weights(name: str | None, weights_dir: str | None) -> Path | None:
    """The weights file called ``name`` (a bare file name, as check_model allows) in the
    operator's weights directory (CRUCIBLE_WEIGHTS_DIR): it must exist there, and resolve
    (links followed) to a file inside it. Nothing else is ever opened as starting weights."""
    if name is None:
        return None
    if not weights_dir:
        raise Refused(
            f"weights '{name}' cannot be used: no weights directory is configured here "
            "(the operator sets CRUCIBLE_WEIGHTS_DIR); leave weights out to train from scratch"
        )
    root = Path(weights_dir).resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        raise Refused(
            f"weights '{name}' is not a file in the operator's weights directory; "
            "ask the operator which weights are available, or leave weights out"
        )
    return path
