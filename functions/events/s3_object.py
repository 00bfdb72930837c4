"""S3 "Object Created" (delivered by EventBridge): register what arrived under a user's prefix.

Upload keys follow ``users/<user id>/<kind>/<...>``. The handler tells the
owner the object arrived (a ``status`` event on ``user:<id>``); the work each
kind starts (audio analysis, dataset ingestion, submission intake) is routed
from here. Duplicated events publish once: the event id derives from the
object's key and S3's sequencer.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from functions.events.runtime import container, logger
from shared.events import ProgressEvent, event_id_for
from shared.wiring import Container

KEY_RE = re.compile(r"^users/(?P<user_id>\d+)/(?P<kind>[a-z-]+)/(?P<rest>.+)$")


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ev = S3EventBridgeNotificationEvent(event)
    bucket, obj = ev.detail.bucket.name, ev.detail.object
    match = KEY_RE.match(obj.key)
    if not match:
        logger.warning("ignoring object outside users/<id>/<kind>/: s3://%s/%s", bucket, obj.key)
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
