"""DynamoDB stream -> WebSocket: deliver each newly stored event to its topic's subscribers.

Only inserts of ``type = event`` items matter; everything else on the stream is
skipped. The batch is delivered as a whole (``PushService.deliver_all``): a progress
event superseded by a newer one of its topic in the same batch is not sent, each event
goes to its followers in parallel, and the work stops ``MARGIN_S`` before the function
would time out. The records not settled by then, from the first one not fully served
on, are reported as partial batch failures, so the stream hands over just those again
(in order: nothing later overtakes them), and their followers already served are not
served again. Powertools' BatchProcessor is not used: it handles records one by one,
and coalescing and stopping in order need the batch.
"""

from __future__ import annotations

import time
from typing import Any

from functions.events.runtime import container
from functions.observability import logger
from shared.wiring import Container

# Kept from the function's remaining time for giving back unfinished parts and answering.
MARGIN_S = 3.0


def handle(event: dict[str, Any], c: Container, *, remaining_s: float | None = None) -> dict:
    """Deliver a batch of stream records; ``remaining_s``: the time the function has left
    (None: no bound, as the local dispatcher runs it)."""
    started = time.monotonic()
    records = event.get("Records") or []
    events, positions = [], []
    for i, record in enumerate(records):
        try:
            ev = c.push.events.inserted(record)
        except ValueError:  # stored by a newer or broken writer: kept in the table, not sent
            logger.exception("stream record %s is not an event", _sequence(record))
            continue
        if ev is not None:
            events.append(ev)
            positions.append(i)
    deadline = None if remaining_s is None else started + remaining_s - MARGIN_S
    out = c.push.deliver_all(events, deadline=deadline)
    first_unsettled = positions[out.done] if out.done < len(events) else len(records)
    failures = [{"itemIdentifier": _sequence(r)} for r in records[first_unsettled:]]
    logger.info(
        "push batch",
        extra={
            "records": len(records),
            "events": len(events),
            "sent": out.sent,
            "retried": len(failures),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return {"batchItemFailures": failures}


def _sequence(record: dict[str, Any]) -> str:
    return (record.get("dynamodb") or {}).get("SequenceNumber", "")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container(), remaining_s=context.get_remaining_time_in_millis() / 1000)
