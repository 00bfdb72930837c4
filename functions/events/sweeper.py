"""The sweeper, on a schedule (EventBridge Scheduler in AWS, a timer in the local stack):
ends every leaderboard job still pending or running past its deadline (its resource
class's time limit plus a grace period), whatever became of its evaluator, so that
every job reaches an end with a reason."""

from __future__ import annotations

from typing import Any

from functions.events.runtime import container
from functions.observability import logger
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ended = c.evaluations.sweep()
    if ended:
        logger.warning("ended %d job(s) past their deadline: %s", len(ended), ", ".join(ended))
    return {"ended": ended}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
