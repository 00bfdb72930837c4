"""The local event path with real AWS event JSON: a real upload to the emulator's S3 ->
EventBridge -> SQS -> dispatcher -> handler -> DynamoDB event -> stream -> push."""

import contextlib
import json
import queue
import time
import uuid

import pytest

from shared.adapters.runners import LOCAL_QUEUE_ARN
from shared.models import Principal, Subscription

pytestmark = pytest.mark.integration


def listen(container, topic_user: int | None = None, topic: str | None = None, fmt="crucible"):
    """Register a connection in the local hub and the registry; return its inbox."""
    inbox: queue.Queue = queue.Queue()
    cid = uuid.uuid4().hex[:16]
    container.hub.register(cid, lambda text: inbox.put(json.loads(text)) or True)
    if topic_user is not None:
        container.push.connect(Principal(user_id=topic_user, role="user"), cid, fmt=fmt)
    if topic is not None:
        container.push.registry.subscribe(
            Subscription(connection_id=cid, topic=topic, user_id=0, format=fmt)
        )
    return cid, inbox


def a_user(container) -> int:
    """A real account: deliveries re-check that each follower's user still exists."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    return container.auth.register(email=email, password="password123").id


def drain(inbox: queue.Queue, wait: float) -> list[dict]:
    out, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            out.append(inbox.get(timeout=0.1))
    return out


def test_real_upload_reaches_the_owner_over_the_push_path(container, dispatcher):
    user_id = a_user(container)
    _, inbox = listen(container, topic_user=user_id)
    key = f"scratch/{user_id}/{uuid.uuid4().hex}/notes.txt"
    container.client("s3").put_object(
        Bucket=container.settings.names.uploads_bucket, Key=key, Body=b"RIFF...."
    )
    msg = inbox.get(timeout=15)
    assert msg["kind"] == "status" and msg["topic"] == f"user:{user_id}"
    assert msg["data"]["key"] == key and msg["data"]["size"] == 8
    assert msg["data"]["status"] == "object_received"


def test_duplicate_and_foreign_objects(container, dispatcher):
    from functions.events import s3_object

    user_id = a_user(container)
    _, inbox = listen(container, topic_user=user_id)
    event = {
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
            "bucket": {"name": container.settings.names.uploads_bucket},
            "object": {
                "key": f"users/{user_id}/datasets/x.zip",
                "size": 3,
                "etag": "e",
                "sequencer": "01",
            },
            "reason": "PutObject",
        },
    }
    assert dispatcher.dispatch("object-created", event)
    assert dispatcher.dispatch("object-created", dict(event, id=str(uuid.uuid4())))
    assert len(drain(inbox, 1.5)) == 1  # a replay is the same S3 event: one message
    assert s3_object.handle(event, container)["status"] == "duplicate"
    foreign = json.loads(json.dumps(event))
    foreign["detail"]["object"]["key"] = "stray/file.bin"
    assert s3_object.handle(foreign, container)["status"] == "ignored"


def test_batch_state_changes_reach_job_followers_once(container, dispatcher):
    job = f"j{uuid.uuid4().hex[:8]}"
    _, inbox = listen(container, topic=f"job:{job}", fmt="seed003")
    events = container.client("events")

    def emit(status, queue=container.settings.names.gpu_queue):
        detail = {
            "jobId": f"batch-{job}",
            "jobName": job,
            "jobQueue": LOCAL_QUEUE_ARN.format(queue),
            "status": status,
            "parameters": {"job_id": job},
        }
        events.put_events(
            Entries=[
                {
                    "Source": "crucible.local-batch",
                    "DetailType": "Batch Job State Change",
                    "Detail": json.dumps(detail),
                }
            ]
        )

    # another stage's runner jobs share the default bus: its rule does not take them
    emit("FAILED", queue="crucible-otherstage-gpu")
    for status in ("RUNNABLE", "RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"):
        emit(status)
    got = drain(inbox, 3)
    assert [m["data"]["batch_status"] for m in got] == ["RUNNABLE", "RUNNING", "SUCCEEDED"]
    assert got[-1]["type"] == "training_complete" and got[-1]["workflow_id"] == job


def test_gone_connections_are_dropped_on_delivery(container, dispatcher):
    user_id = a_user(container)
    cid, _ = listen(container, topic_user=user_id)
    container.hub.unregister(cid)  # the socket went away without $disconnect
    from shared.events import ProgressEvent

    sent = container.push.deliver(ProgressEvent(topic=f"user:{user_id}", kind="log", event_id="x"))
    assert sent == 0
    assert container.push.registry.get(cid) is None
