"""Seed 003's "Batch Inference Requested" (published by ``POST
/inference/{workflow_id}/batch``): run each image of the stored batch through the
workflow's model (the Predictor: the inference Lambda, or in-process locally) and record
its predictions or its own error (shared/services/inference.py). A replay resumes where
the batch stopped, or finds it done and changes nothing. Each delivery first writes the
batch's deadline, so a batch whose handler keeps failing is ended by the reconciler."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from functions.events.runtime import container
from functions.observability import logger
from shared import keys
from shared.services.inference import BATCH_DEADLINE
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    detail = EventBridgeEvent(event).detail or {}
    try:
        workflow_id, batch_id = int(detail["workflow_id"]), str(detail["batch_id"])
    except (KeyError, TypeError, ValueError):
        logger.warning("ignoring a batch event without workflow_id and batch_id: %s", detail)
        return {"status": "ignored"}
    # First, when the reconciler settles it if it never ends (shared/services/reconciler.py).
    if keys.is_batch_id(batch_id):
        at = time.time() + BATCH_DEADLINE.total_seconds()
        c.deadlines.put("batch", f"{workflow_id}/{batch_id}", at)
    return c.inference.run_batch(workflow_id, batch_id)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, container())
