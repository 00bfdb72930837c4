"""The job spec every framework trains from: a training job's fields and the options
all trainers share, typed and read once from its ``advanced_config``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.models import TrainingJob

SHARED_OPTIONS = ("seed", "resume_from", "checkpoint_interval_s", "image_size")


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    framework: str
    model_name: str
    task_type: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    resume_from: str | None = None  # an artifacts key: a checkpoint to continue from
    checkpoint_interval_s: float = 60.0  # "last" is saved at most this often (and at the end)
    image_size: int | None = None  # None: the framework's default
    extras: Mapping[str, Any] = field(default_factory=dict)  # framework-specific options

    @classmethod
    def from_job(cls, job: TrainingJob) -> JobSpec:
        cfg = job.advanced_config or {}
        return cls(
            job_id=job.id,
            framework=job.framework,
            model_name=job.model_name,
            task_type=job.task_type,
            epochs=job.total_epochs,
            batch_size=job.batch_size,
            learning_rate=job.learning_rate,
            seed=int(cfg.get("seed", 0)),
            resume_from=cfg.get("resume_from") or None,
            checkpoint_interval_s=float(cfg.get("checkpoint_interval_s", 60)),
            image_size=int(cfg["image_size"]) if "image_size" in cfg else None,
            extras={k: v for k, v in cfg.items() if k not in SHARED_OPTIONS},
        )
