"""The analysis Lambda (a container image with parselmouth and numpy in AWS; the same
handler through the local dispatcher): registers arriving audio and runs analyses.
In AWS both events reach it through its queue, a bounded number at once
(``analysis_max_concurrency``; runtime.each_event), each message one of:

* S3 "Object Created" under ``audio/``: register the file (presigned uploads have
  only an intent until now: sized, probed, the probed bytes kept where no client can
  write) and run its first analysis. A replayed event finds the file analysed or
  running and starts nothing; a second arrival for a registered file, or one nobody
  asked for, is deleted unread.
* "Analysis Requested" (published by ``POST /analysis/{id}/start``): run that task.
  A duplicate finds the task claimed and does nothing; a superseded one is skipped.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import (
    EventBridgeEvent,
    S3EventBridgeNotificationEvent,
)

from functions.events.runtime import each_event
from functions.observability import logger
from shared.services.audio import ANALYSIS_REQUESTED
from shared.wiring import Container


def handle(event: dict[str, Any], c: Container) -> dict[str, Any]:
    ev = EventBridgeEvent(event)
    if ev.detail_type == ANALYSIS_REQUESTED:
        detail = ev.detail
        status = c.audio.run(int(detail["file_id"]), str(detail["task_id"]))
        return {"status": status, "file_id": detail["file_id"]}
    obj = S3EventBridgeNotificationEvent(event).detail.object
    f = c.audio_uploads.register_object(obj.key, obj.size)
    if f is None:
        return {"status": "ignored", "key": obj.key}
    queued = c.audio.first_analysis(f)
    if queued is None:
        return {"status": "already-analysed" if f.task_id else f.status, "file_id": f.id}
    return {"status": c.audio.run(f.id, queued.task_id), "file_id": f.id}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> Any:
    return each_event(handle, event, context)
