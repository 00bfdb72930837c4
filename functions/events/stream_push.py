"""DynamoDB stream -> WebSocket: deliver each newly stored event to its topic's subscribers.

Only inserts of ``type = event`` items matter; everything else on the stream is
skipped. Records that fail are reported back as partial batch failures, so the
stream retries just those (with bisect-on-error in AWS).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from functions.events.runtime import container
from functions.observability import logger
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

    def deliver(record: DynamoDBRecord) -> int:
        ev = c.push.events.inserted(record.raw_event)
        return c.push.deliver(ev) if ev else 0

    return process_partial_response(event=event, record_handler=deliver, processor=processor)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
