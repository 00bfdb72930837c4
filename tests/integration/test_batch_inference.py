"""Seed 003's batch inference against the emulator: whatever becomes of its handler, a
batch reaches an end."""

from __future__ import annotations

import time

import pytest

from shared.models import Principal

pytestmark = pytest.mark.integration


def user() -> Principal:
    return Principal(user_id=int(time.time_ns() % 10**12), role="user")


def test_a_batch_whose_handler_died_ends_failed_with_a_reason(container):
    """Seed 003's batch inference: a batch its handler never finished (every retry failed)
    is settled failed once past its deadline, keeping the results it has."""
    import json
    from datetime import timedelta

    from shared import keys
    from shared.models import TrainingJob, utcnow

    owner = user()
    job = container.job_repository.create(
        TrainingJob(
            id=0,
            owner_id=owner.user_id,
            framework="timm",
            model_name="resnet10t",
            task_type="image_classification",
        )
    )
    batch_id = keys.new_batch_id()
    asked = (utcnow() - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    record = {
        "batch_id": batch_id,
        "workflow_id": job.id,
        "owner_id": owner.user_id,
        "checkpoint": keys.best_checkpoint(job.id),
        "model_version": "v",
        "options": {},
        "created_at": asked,
        "estimated_completion_time": asked,
        "images": [{}, {}],
    }
    container.artifacts.put(keys.batch_request(job.id, batch_id), json.dumps(record).encode())
    out = container.inference.batch_status(owner, str(job.id), batch_id)
    assert out["status"] == "failed" and "did not finish" in out["error"], out
    assert out["completed_images"] == 0 and out["total_images"] == 2
    # settled for good: a late run of its handler finds it ended
    assert container.inference.run_batch(job.id, batch_id)["status"] == "duplicate"
