"""The one event contract for everything pushed to clients.

Containers, event handlers and services publish a :class:`ProgressEvent` on a
topic (``user:<id>``, ``job:<id>``, ``file:<id>``); it is stored in DynamoDB (the
source of truth) and the stream handler fans it out to the topic's WebSocket
subscribers, rendered into the format each connection asked for:

* ``crucible`` — the event itself;
* ``seed000`` — seed 000's ``{"type", "payload"}`` messages on ``/ws``;
* ``seed003`` — seed 003's ``{"type", "workflow_id", "timestamp", "data"}`` on
  ``/ws/workflows/{id}``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from shared.models import utcnow

EventKind = Literal["progress", "log", "validation", "status", "error", "checkpoint"]
FORMATS: tuple[str, ...] = ("crucible", "seed000", "seed003")

TOPIC_RE = re.compile(r"^(user|job|file|workflow|dataset|submission):[A-Za-z0-9_-]{1,64}$")


def event_id_for(*parts: object) -> str:
    """A deterministic id: publishing the same source twice yields one event."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class ProgressEvent(BaseModel):
    """Progress, log, validation, status, error or checkpoint news about one topic."""

    topic: str
    kind: EventKind
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str
    timestamp: datetime = Field(default_factory=utcnow)
    # Further topics whose followers get it too, e.g. the owner's ``user:<id>`` (seed
    # 000's /ws follows all of a user's training, not one job).
    also: list[str] = Field(default_factory=list)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not TOPIC_RE.match(v):
            raise ValueError("topic must look like 'job:<id>', 'file:<id>' or 'user:<id>'")
        return v

    @field_validator("also")
    @classmethod
    def _also(cls, v: list[str]) -> list[str]:
        for topic in v:
            cls._topic(topic)
        return v


_SEED000_TYPES = {"validation": "validation_result", "checkpoint": "log"}


def render(event: ProgressEvent, fmt: str) -> dict[str, Any]:
    """Render an event into the message shape a client asked for."""
    if fmt == "seed000":
        payload = dict(event.data)
        if event.kind == "checkpoint":
            payload = {
                "level": "INFO",
                "message": f"Checkpoint saved: {event.data.get('path', '')}",
            }
        return {"type": _SEED000_TYPES.get(event.kind, event.kind), "payload": payload}
    if fmt == "seed003":
        return {
            "type": _seed003_type(event),
            "workflow_id": event.topic.split(":", 1)[1],
            "timestamp": event.timestamp.isoformat().replace("+00:00", "Z"),
            "data": event.data,
        }
    return event.model_dump(mode="json")


def _seed003_type(event: ProgressEvent) -> str:
    status = event.data.get("status")
    if event.kind == "progress":
        return "training_progress"
    if event.kind == "checkpoint":
        return "checkpoint_saved"
    if event.kind == "error" or (event.kind == "status" and status == "failed"):
        return "training_error"
    if event.kind == "status" and status == "completed":
        return "training_complete"
    return f"training_{event.kind}"
