"""S3 "Object Created" under ``datasets/``: inspect a presigned dataset upload (safe
extraction checks, format, statistics, all bounded) and record it ready or failed, once,
keeping the inspected bytes where no client can write; a later arrival for the same
dataset is deleted unread.
In AWS the events come through a queue, a bounded number at once
(``ingest_max_concurrency``; runtime.each_event)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from functions.events.runtime import each_event
from functions.observability import logger
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    obj = S3EventBridgeNotificationEvent(event).detail.object
    d = c.datasets.ingest(obj.key, obj.size)
    if d is None:
        return {"status": "ignored", "key": obj.key}
    return {"status": d.status, "dataset_id": d.id}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> Any:
    return each_event(handle, event, context)
