"""S3 "Object Created" (delivered by EventBridge): tell a user their upload arrived.

Upload keys follow ``<kind>/<user id>/<...>`` (``audio/``, ``datasets/``, ...); the
copies the platform keeps of what it inspected (``.../stored/...``) are not uploads.
This handler publishes a ``status`` event on ``user:<id>``; the work each kind
starts has its own rule and handler (shared/routing.py: ``audio/`` ->
functions/events/analysis.py). Duplicated events publish once: the event id
derives from the object's key and S3's sequencer.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from functions.events.runtime import container
from functions.observability import logger
from shared.events import ProgressEvent, event_id_for
from shared.wiring import Container

KEY_RE = re.compile(r"^(?P<kind>[a-z-]+)/(?P<user_id>\d+)/(?P<rest>.+)$")
# The platform's own copy of what it inspected (``<kind>/<user>/<id>/stored/...``): not
# an upload, so the user hears nothing of it (they heard of the arrival).
STORED_RE = re.compile(r"^[a-z-]+/\d+/[^/]+/stored/")


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ev = S3EventBridgeNotificationEvent(event)
    bucket, obj = ev.detail.bucket.name, ev.detail.object
    if STORED_RE.match(obj.key):
        return {"status": "ignored", "key": obj.key}
    match = KEY_RE.match(obj.key)
    if not match:
        logger.warning("ignoring object outside <kind>/<user id>/: s3://%s/%s", bucket, obj.key)
        return {"status": "ignored", "key": obj.key}
    user_id, kind = int(match["user_id"]), match["kind"]
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
