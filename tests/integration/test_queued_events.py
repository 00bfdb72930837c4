"""The queued handlers (analysis, dataset ingest) against the emulator, in both shapes
they are given: in AWS a batch of SQS messages whose bodies are the EventBridge events
(the rule targets the handler's queue), locally and on replay the EventBridge event
itself. Each message succeeds or fails on its own, and only the failed ones are named
back for redelivery; a duplicate delivery changes nothing."""

import json
import time
import uuid

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.events import analysis, datasets
from functions.events.runtime import each_event
from shared.models import Principal

pytestmark = pytest.mark.integration


def object_created(bucket: str, key: str, size: int) -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "000000000000",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": "e", "sequencer": "01"},
            "reason": "PutObject",
        },
    }


def sqs_batch(*bodies: dict) -> dict:
    """What the event source mapping hands the function: one record per message."""
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:crucible-t-datasets",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def presigned_dataset(container) -> tuple[Principal, dict]:
    owner = Principal(user_id=710_000 + time.time_ns() % 1000, role="user")
    return owner, container.datasets.presign(owner, name="queued", size=1000)


def test_an_sqs_batch_names_only_its_failed_messages(container):
    """Three messages: an arrival (its object gone: the dataset ends failed, which is the
    event handled), the same arrival again (a duplicate: nothing changes), and a body
    that is no S3 event (it raises): only the last comes back."""
    owner, grant = presigned_dataset(container)
    bucket = container.settings.names.uploads_bucket
    arrival = object_created(bucket, grant["key"], 1000)
    broken = {**arrival, "detail": {"bucket": {"name": bucket}}}  # no object

    answer = each_event(datasets.handle, sqs_batch(arrival, arrival, broken), c=container)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    d = container.datasets.get(owner, grant["dataset_id"])
    assert d.status == "failed"


def test_a_batch_whose_every_message_failed_fails_the_invocation(container):
    bucket = container.settings.names.uploads_bucket
    broken = {**object_created(bucket, "datasets/x", 1), "detail": {}}
    with pytest.raises(BatchProcessingError):
        each_event(datasets.handle, sqs_batch(broken, broken), c=container)


def test_a_plain_eventbridge_event_is_handled_as_before(container):
    """The local dispatcher's shape (and a replayed event): the handler's own answer."""
    owner, grant = presigned_dataset(container)
    arrival = object_created(container.settings.names.uploads_bucket, grant["key"], 1000)
    assert each_event(datasets.handle, arrival, c=container)["status"] == "failed"
    # again, as a duplicate delivery: the dataset has ended, and stays as it ended
    assert each_event(datasets.handle, arrival, c=container)["status"] == "failed"
    assert container.datasets.get(owner, grant["dataset_id"]).status == "failed"


def test_the_analysis_handler_takes_both_shapes(container):
    """An arrival nobody asked for (no upload intent): ignored, in either shape."""
    key = f"audio/{710_000 + time.time_ns() % 1000}/{uuid.uuid4().hex}/a.wav"
    arrival = object_created(container.settings.names.uploads_bucket, key, 10)
    assert each_event(analysis.handle, arrival, c=container)["status"] == "ignored"
    assert each_event(analysis.handle, sqs_batch(arrival), c=container) == {"batchItemFailures": []}
