"""Validation results of 1,000 classes: the per-class metrics and the confusion matrix go
to an S3 object, and no DynamoDB item (400 KB) and no pushed message, rendered in every
format (128 KB a WebSocket frame), passes its limit; seed 002's /validation/results,
over HTTP, answers with the same shapes as before, read from the objects and bounded."""

import hashlib
import json
import random
import uuid
from decimal import Decimal

import pytest
from crucible_trainer.metrics import confusion_metrics

from shared.adapters.dynamodb.jobs import DynamoJobRecords, DynamoJobs
from shared.errors import InvalidInput
from shared.events import FORMATS, render
from shared.models import TrainingJob
from shared.services.reporting import TOP_CONFUSIONS, Reporter
from tests.conftest import api_get

pytestmark = pytest.mark.integration

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit
FRAME_LIMIT = 128 * 1024  # API Gateway's WebSocket frame limit
CLASSES = 1000


def item_size(value, name: str = "") -> int:
    """An upper bound of an attribute's DynamoDB size: its name's UTF-8 bytes and its
    value's (a number at most 21 bytes, a map or list 3 bytes and 1 per element)."""
    size = len(name.encode())
    if isinstance(value, str):
        return size + len(value.encode())
    if isinstance(value, bool) or value is None:
        return size + 1
    if isinstance(value, int | float | Decimal):
        return size + 21
    if isinstance(value, dict):
        return size + 3 + sum(1 + item_size(v, str(k)) for k, v in value.items())
    if isinstance(value, list):
        return size + 3 + sum(1 + item_size(v) for v in value)
    raise TypeError(type(value))


def validation(epoch: int) -> dict:
    """A 1,000-class validation: long class names, a diagonal and scattered mistakes."""
    rng = random.Random(epoch)
    names = [f"class-{i:04d}-" + "n" * 240 for i in range(CLASSES)]
    cm = [[0] * CLASSES for _ in range(CLASSES)]
    for t in range(CLASSES):
        cm[t][t] = rng.randint(20, 60)
        for _ in range(25):
            cm[t][rng.randrange(CLASSES)] += rng.randint(1, 9)
    return {"val_loss": 1.0 / epoch, **confusion_metrics(cm, names)}


@pytest.fixture(scope="module")
def owner(container):
    return container.auth.register(email=f"{uuid.uuid4().hex[:10]}@example.com", password="pw-" * 4)


@pytest.fixture(scope="module")
def reported(container, owner):
    """A job whose trainer reported three epochs of 1,000 classes each."""
    job = DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=owner.id,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
            total_epochs=3,
        )
    )
    reporter = Reporter(
        container.push,
        container.job_repository,
        job,
        container.job_records,
        artifacts=container.artifacts,
        throttle_s=0,
    )
    sent = {}
    for epoch in (1, 2, 3):
        sent[epoch] = validation(epoch)
        reporter.on_epoch_end(epoch, 2.0 / epoch, dict(sent[epoch]), 0.01)
    return job, sent


def test_no_item_and_no_message_passes_its_limit(container, reported):
    job, sent = reported
    rows = DynamoJobRecords(container.table).metrics(job.id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert item_size(row) < ITEM_LIMIT / 10, row.keys()
        assert "confusion_matrix" not in row and "per_class" not in row
        assert row["classes"] == CLASSES and len(row["top_confusions"]) == TOP_CONFUSIONS
        ref = row["details"]
        body = container.artifacts.get(ref["key"])
        assert ref["size"] == len(body) > ITEM_LIMIT  # what could never have fit the item
        assert ref["sha256"] == hashlib.sha256(body).hexdigest()
        stored = json.loads(body)
        assert stored["confusion_matrix"] == sent[row["epoch"]]["confusion_matrix"]
        assert stored["per_class"] == json.loads(json.dumps(sent[row["epoch"]]["per_class"]))
    # The most frequent mistake is the matrix's largest off-diagonal cell.
    cm = sent[3]["confusion_matrix"]
    worst = max(cm[t][p] for t in range(CLASSES) for p in range(CLASSES) if t != p)
    assert rows[-1]["top_confusions"][0]["count"] == worst

    events = [
        e for e in container.push.events.recent(f"job:{job.id}", limit=50) if e.kind == "validation"
    ]
    assert sorted(e.data["epoch"] for e in events) == [1, 2, 3]
    for event in events:
        assert event.data["details"] == rows[event.data["epoch"] - 1]["details"]
        for fmt in FORMATS:
            frame = json.dumps(render(event, fmt)).encode()
            assert len(frame) < FRAME_LIMIT / 10, (fmt, len(frame))


def test_validation_results_read_the_objects_within_a_bound(container, owner, reported):
    job, sent = reported
    listed, one = api_get(
        container,
        owner,
        f"/validation/results/{job.id}",
        f"/validation/results/{job.id}?epoch=1",
    )
    assert listed.status_code == 200, listed.text
    results = listed.json()["results"]
    assert [r["epoch"] for r in results] == [1, 2, 3]
    # Newest first while they fit 4 MiB: the latest epoch comes in full...
    latest = results[-1]
    assert latest["details_omitted"] is False
    assert latest["confusion_matrix"] == sent[3]["confusion_matrix"]
    assert list(latest["per_class_metrics"]) == list(sent[3]["per_class"])
    assert latest["metrics"]["accuracy"] == pytest.approx(sent[3]["accuracy"])
    # ...and an epoch past the bound comes without its details, with a link to them.
    assert len(listed.content) < 6 * 2**20  # Lambda's response limit
    first = results[0]
    assert first["details_omitted"] is True
    assert first["confusion_matrix"] == [] and first["per_class_metrics"] == {}
    assert f"validation/details-{1:06d}.json" in first["details_url"]
    # Asked for alone, that epoch comes in full.
    assert one.status_code == 200, one.text
    (alone,) = one.json()["results"]
    assert alone["epoch"] == 1 and alone["details_omitted"] is False
    assert alone["confusion_matrix"] == sent[1]["confusion_matrix"]


def test_rows_written_before_details_moved_to_objects_still_read(container, owner):
    job = DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=owner.id,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
        )
    )
    old = confusion_metrics([[3, 1], [0, 4]], ["cat", "dog"])
    DynamoJobRecords(container.table).put_metrics(
        job.id,
        1,
        {
            "loss": 0.5,
            "accuracy": old["accuracy"],
            "extra_metrics": {},
            "per_class": old["per_class"],
            "confusion_matrix": old["confusion_matrix"],
        },
    )
    (answer,) = api_get(container, owner, f"/validation/results/{job.id}")
    (result,) = answer.json()["results"]
    assert result["confusion_matrix"] == [[3, 1], [0, 4]] and result["details_omitted"] is False
    assert result["per_class_metrics"]["dog"]["recall"] == pytest.approx(1.0)


def test_a_malformed_matrix_from_the_callback_is_refused_and_nothing_is_stored(container, owner):
    job = DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=owner.id,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
        )
    )
    data = {"epoch": 1, "loss": 0.4, "accuracy": 0.5, "confusion_matrix": [[1, 2, 3]]}
    with pytest.raises(InvalidInput) as refused:
        container.training.callback(job.id, "epoch_complete", data)
    assert refused.value.field == "confusion_matrix"
    assert DynamoJobRecords(container.table).metrics(job.id) == []
    assert not container.artifacts.exists(f"jobs/{job.id}/validation/details-000001.json")

    good = {**data, "confusion_matrix": [[3, 1], [0, 4]], "per_class": {"a": {}, "b": {}}}
    container.training.callback(job.id, "epoch_complete", good)
    (row,) = DynamoJobRecords(container.table).metrics(job.id)
    assert row["top_confusions"] == [{"true": "a", "predicted": "b", "count": 1}]
    assert json.loads(container.artifacts.get(row["details"]["key"]))["per_class"] == {
        "a": {},
        "b": {},
    }
