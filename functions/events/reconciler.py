"""The reconciler, on a schedule (EventBridge Scheduler in AWS, the local dispatcher's
timer): settles whatever overstayed its bound, asking the runner first
(shared/services/reconciler.py): analyses stuck ``processing``, training jobs queued
without a runner job or whose runner ended or forgot them, leaderboard jobs and datasets
past their deadline. Each end carries its reason and is pushed to its followers.

Also here, for operators: :func:`replay_dead_letters`, which hands what the dead-letter
queue holds back to the handlers it was meant for (README, "Operations").
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from functions.events.runtime import container
from functions.observability import logger
from shared.routing import ROUTES
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    report = c.reconciler.run()
    if report:
        logger.warning("reconciled: %s", report)
    return report


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())


# --- the dead-letter queue ----------------------------------------------------------------
def matches(pattern: Any, value: Any) -> bool:
    """Whether ``value`` matches an EventBridge pattern of the forms shared/routing.py
    uses: nested objects, lists of exact values, ``{"prefix": ...}`` and ``{"suffix": ...}``
    (any other operator is refused rather than guessed at)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(p, value[k]) for k, p in pattern.items()
        )
    return any(_matches_one(p, value) for p in pattern)


def _matches_one(p: Any, value: Any) -> bool:
    if not isinstance(p, dict):
        return p == value
    ((op, arg),) = p.items()
    if op == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if op == "suffix":
        return isinstance(value, str) and value.endswith(arg)
    raise ValueError(f"an EventBridge operator this replay does not know: {op}")


def dead_letter_event(body: dict[str, Any]) -> dict[str, Any] | None:
    """The event a dead letter carries: an EventBridge target's is the event itself; a
    Lambda asynchronous invocation's failure record holds it as ``requestPayload``.
    None for what has no event to replay (a scheduler tick: the next one does its work;
    a stream batch's pointers: the events stay in the table, the push is best effort)."""
    event = body.get("requestPayload", body)
    if not isinstance(event, dict) or "detail-type" not in event:
        return None
    if event.get("source") == "aws.scheduler":
        return None
    return event


def replay_dead_letters(c: Container, *, limit: int = 100) -> dict[str, int]:
    """Hand up to ``limit`` messages of the stage's dead-letter queue to the handlers
    whose routes match their events (handlers are idempotent: an event already handled
    changes nothing). A message is deleted once every handler took it, or when it holds
    nothing to replay; one whose handler fails again stays, for later."""
    sqs = c.client("sqs")
    url = sqs.get_queue_url(QueueName=c.settings.names.events_dlq)["QueueUrl"]
    handlers = {r.name: importlib.import_module(r.handler).handle for r in ROUTES}
    # the rules as deployed: in AWS (jobs on Batch) the local runner's source is not one
    cloud = c.settings.job_runner == "batch"
    counts = {"replayed": 0, "dropped": 0, "failed": 0}
    while sum(counts.values()) < limit:
        out = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, limit), WaitTimeSeconds=1
        )
        if not out.get("Messages"):
            break
        for msg in out["Messages"]:
            event = dead_letter_event(json.loads(msg["Body"]))
            outcome = "dropped"
            if event is not None:
                outcome = "replayed"
                for route in ROUTES:
                    if matches(route.pattern(c.settings.names, cloud=cloud), event):
                        try:
                            handlers[route.name](event, c)
                        except Exception:
                            logger.exception(
                                "replaying to %s failed; the message stays", route.name
                            )
                            outcome = "failed"
            counts[outcome] += 1
            if outcome != "failed":
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    return counts
