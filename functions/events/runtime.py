"""What every event Lambda shares: its services, built on first use (and once per process),
and the entry point of the handlers that read a queue."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import SQSRecord

from shared.settings import load_settings
from shared.wiring import Container, build

Handle = Callable[[dict[str, Any], Container], Any]  # one EventBridge event


@cache
def container() -> Container:
    return build(load_settings())


def each_event(
    handle: Handle, event: dict[str, Any], context: Any = None, c: Container | None = None
) -> Any:
    """Run ``handle`` on what reached a queued handler (analysis, dataset ingest).

    In AWS their EventBridge rules target an SQS queue (infra/constructs/events.py), so
    the function gets a batch of messages whose bodies are the EventBridge events: each
    is handled on its own, and the answer names the messages that failed
    (``batchItemFailures``), so that only those come back after the visibility timeout,
    and end in the dead-letter queue if they keep failing. A batch in which every
    message failed raises, as a failed invocation. Anything else is one EventBridge
    event, handled as such: the local dispatcher's, a replayed one."""
    c = c or container()
    if not _is_sqs(event):
        return handle(event, c)

    def one(record: SQSRecord) -> Any:  # Powertools passes it as ``record=``
        return handle(record.json_body, c)

    return process_partial_response(
        event=event,
        record_handler=one,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records
    )
