from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from functions.events import batch_state
from shared.adapters.dynamodb.push import DynamoEventLog
from shared.adapters.dynamodb.table import _to_ddb
from shared.events import ProgressEvent, event_id_for, render

TS = datetime(2025, 10, 17, 10, 5, tzinfo=UTC)


def ev(kind, **data):
    return ProgressEvent(topic="job:7", kind=kind, event_id="e1", timestamp=TS, data=data)


def test_seed000_messages():
    assert render(ev("progress", epoch=1, loss=0.5), "seed000") == {
        "type": "progress",
        "payload": {"epoch": 1, "loss": 0.5},
    }
    assert render(ev("validation", epoch=1, val_loss=0.1), "seed000")["type"] == "validation_result"
    assert render(ev("error", message="CUDA out of memory."), "seed000") == {
        "type": "error",
        "payload": {"message": "CUDA out of memory."},
    }
    assert render(ev("checkpoint", path="s3://b/k"), "seed000")["type"] == "log"


def test_seed003_messages():
    msg = render(ev("progress", epoch=45), "seed003")
    assert msg == {
        "type": "training_progress",
        "workflow_id": "7",
        "timestamp": "2025-10-17T10:05:00Z",
        "data": {"epoch": 45},
    }
    assert render(ev("status", status="completed"), "seed003")["type"] == "training_complete"
    assert render(ev("status", status="failed"), "seed003")["type"] == "training_error"
    assert render(ev("error", message="x"), "seed003")["type"] == "training_error"
    assert render(ev("checkpoint", path="p"), "seed003")["type"] == "checkpoint_saved"


def test_native_format_is_the_event():
    assert render(ev("log", level="INFO"), "crucible")["kind"] == "log"


def test_topic_is_validated():
    with pytest.raises(ValidationError):
        ProgressEvent(topic="../etc", kind="log", event_id="x")


def test_event_ids_are_deterministic():
    assert event_id_for("s3", "b", "k", 1) == event_id_for("s3", "b", "k", 1)
    assert event_id_for("s3", "b", "k", 1) != event_id_for("s3", "b", "k", 2)


event_of = DynamoEventLog.inserted


def test_stream_records_yield_only_inserted_events():
    item = {
        "PK": "EVENTS#job:7",
        "SK": "x",
        "type": "event",
        **ev("log", n=1.5).model_dump(mode="json"),
    }
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": _to_ddb(item)}}
    got = event_of(record)
    assert got is not None and got.data == {"n": 1.5} and got.topic == "job:7"
    assert event_of({**record, "eventName": "MODIFY"}) is None
    other = {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": _to_ddb({"PK": "USER#1", "type": "user"})},
    }
    assert event_of(other) is None


def batch_event(**detail):
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "detail": detail,
    }


def test_batch_events_without_a_known_status_or_a_job_id_are_ignored():
    unused = None  # ignored events never reach the services
    assert batch_state.handle(batch_event(jobId="b1", status="DELETED"), unused) == {
        "status": "ignored"
    }
    assert batch_state.handle(batch_event(status="RUNNING"), unused) == {"status": "ignored"}
    assert batch_state.handle(batch_event(jobId="b1", status="RUNNING"), unused) == {
        "status": "ignored",
        "batch_job_id": "b1",
    }


def test_dead_letter_replay_matches_the_rules_as_eventbridge_does():
    from functions.events.reconciler import matches
    from shared.routing import ROUTES
    from shared.settings import ResourceNames

    (route,) = [r for r in ROUTES if r.name == "batch-job-state-change"]
    pattern = route.pattern(ResourceNames.for_stage("dev"), cloud=True)

    def change(queue: str) -> dict:
        arn = f"arn:aws:batch:eu-west-1:123456789012:job-queue/{queue}"
        return {
            "source": "aws.batch",
            "detail-type": "Batch Job State Change",
            "detail": {"jobQueue": arn, "status": "RUNNING"},
        }

    assert matches(pattern, change("crucible-dev-gpu"))
    assert matches(pattern, change("crucible-dev-cpu"))
    assert not matches(pattern, change("crucible-staging-gpu"))  # another stage's job
    assert not matches(pattern, {**change("crucible-dev-gpu"), "source": "crucible.local-batch"})
    with pytest.raises(ValueError, match="wildcard"):
        matches({"a": [{"wildcard": "*"}]}, {"a": "x"})
