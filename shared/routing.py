"""Which events go to which handler: EventBridge rules as data.

The CDK app turns each route into a rule targeting the handler's Lambda; the local
stack turns each into a rule targeting a queue of its own, which the dispatcher polls
and hands to the same handler. Patterns are EventBridge's own, so both match alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.settings import ResourceNames


@dataclass(frozen=True)
class EventRoute:
    name: str
    handler: str  # module of functions/events with handle(event, container) and handler(event, ctx)
    pattern: Callable[[ResourceNames], dict[str, Any]]


def _object_created(prefix: str | None = None) -> Callable[[ResourceNames], dict[str, Any]]:
    def pattern(names: ResourceNames) -> dict[str, Any]:
        detail: dict[str, Any] = {"bucket": {"name": [names.uploads_bucket]}}
        if prefix:
            detail["object"] = {"key": [{"prefix": prefix}]}
        return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}

    return pattern


ROUTES: tuple[EventRoute, ...] = (
    EventRoute("object-created", "functions.events.s3_object", _object_created()),
    EventRoute("audio-uploaded", "functions.events.analysis", _object_created("audio/")),
    EventRoute("dataset-uploaded", "functions.events.datasets", _object_created("datasets/")),
    EventRoute(
        "analysis-requested",
        "functions.events.analysis",
        lambda _: {"source": ["crucible.api"], "detail-type": ["Analysis Requested"]},
    ),
    EventRoute(
        "batch-job-state-change",
        "functions.events.batch_state",
        lambda _: {
            "source": ["aws.batch", "crucible.local-batch"],
            "detail-type": ["Batch Job State Change"],
        },
    ),
)
