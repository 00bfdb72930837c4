"""S3 "Object Created" (delivered by EventBridge): tell a user their upload arrived.

Upload keys name their kind and owner; the copies the platform keeps of what it
inspected are not uploads (both told apart by :mod:`shared.keys`).
This handler publishes a ``status`` event on ``user:<id>``; the work each kind
starts has its own rule and handler (shared/routing.py: ``audio/`` ->
functions/events/analysis.py). Duplicated events publish once: the event id
derives from the object's key and S3's sequencer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from functions.events.runtime import container
from functions.observability import logger
from shared import keys
from shared.events import ProgressEvent, event_id_for
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ev = S3EventBridgeNotificationEvent(event)
    bucket, obj = ev.detail.bucket.name, ev.detail.object
    # The platform's own copy of what it inspected is not an upload: the user hears
    # nothing of it (they heard of the arrival).
    if keys.is_stored_copy(obj.key):
        return {"status": "ignored", "key": obj.key}
    upload = keys.parse_upload(obj.key)
    if upload is None:
        logger.warning("ignoring object outside <kind>/<user id>/: s3://%s/%s", bucket, obj.key)
        return {"status": "ignored", "key": obj.key}
    user_id, kind = upload.user_id, upload.kind
    published = c.push.publish(
        ProgressEvent(
            topic=f"user:{user_id}",
            kind="status",
            event_id=event_id_for("s3", bucket, obj.key, obj.sequencer or obj.etag),
            data={
                "status": "object_received",
                "kind": kind,
                "bucket": bucket,
                "key": obj.key,
                "size": obj.size,
                "message": f"Received {kind} upload ({obj.size} bytes)",
            },
        )
    )
    return {"status": "published" if published else "duplicate", "key": obj.key, "kind": kind}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
