"""Which events go to which handler: EventBridge rules as data.

The CDK app turns each route into a rule targeting the handler's Lambda; the local
stack turns each into a rule targeting a queue of its own, which the dispatcher polls
and hands to the same handler. Patterns are EventBridge's own, so both match alike,
except for the sources only the local stack has: its job runner reports Batch state
changes as ``crucible.local-batch``, which in AWS anyone allowed to put events could
forge, so the cloud rules (``cloud=True``) take ``aws.batch`` alone.

Batch reports every job of the account on the default bus, so a stage's rule takes only
the state changes of its own job queues: dev's handler never applies staging's runner
jobs to dev's job ids (the local runner names its queues the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import keys
from shared.settings import ResourceNames

# The source of the local job runner's "Batch Job State Change" events (shared/adapters/runners.py).
LOCAL_BATCH_SOURCE = "crucible.local-batch"

Pattern = Callable[[ResourceNames, bool], dict[str, Any]]  # (names, cloud) -> event pattern


@dataclass(frozen=True)
class EventRoute:
    name: str
    handler: str  # module of functions/events with handle(event, container) and handler(event, ctx)
    build: Pattern

    def pattern(self, names: ResourceNames, *, cloud: bool) -> dict[str, Any]:
        """The rule's EventBridge pattern: in AWS (``cloud``), or in the local stack."""
        return self.build(names, cloud)


def _object_created(prefix: str | None = None) -> Pattern:
    def pattern(names: ResourceNames, cloud: bool) -> dict[str, Any]:
        detail: dict[str, Any] = {"bucket": {"name": [names.uploads_bucket]}}
        if prefix:
            detail["object"] = {"key": [{"prefix": prefix}]}
        return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}

    return pattern


ROUTES: tuple[EventRoute, ...] = (
    EventRoute("object-created", "functions.events.s3_object", _object_created()),
    EventRoute("audio-uploaded", "functions.events.analysis", _object_created(keys.AUDIO)),
    EventRoute("dataset-uploaded", "functions.events.datasets", _object_created(keys.DATASETS)),
    EventRoute(
        "analysis-requested",
        "functions.events.analysis",
        lambda _names, _cloud: {"source": ["crucible.api"], "detail-type": ["Analysis Requested"]},
    ),
    EventRoute(
        "batch-job-state-change",
        "functions.events.batch_state",
        lambda names, cloud: {
            "source": ["aws.batch"] if cloud else ["aws.batch", LOCAL_BATCH_SOURCE],
            "detail-type": ["Batch Job State Change"],
            # the queue's ARN, arn:aws:batch:<region>:<account>:job-queue/<name>
            "detail": {
                "jobQueue": [{"suffix": f":job-queue/{q}"} for q in names.job_queues.values()]
            },
        },
    ),
    EventRoute(  # seed 003's batches (shared/services/inference.py)
        "batch-inference-requested",
        "functions.events.batch_inference",
        lambda _names, _cloud: {
            "source": ["crucible.api"],
            "detail-type": ["Batch Inference Requested"],
        },
    ),
)


@dataclass(frozen=True)
class Schedule:
    """A handler run on a timer: EventBridge Scheduler in AWS, the dispatcher locally."""

    name: str
    handler: str  # module of functions/events, as for routes
    rate_s: int  # how often, in AWS (whole minutes); locally the dispatcher may run it sooner


SCHEDULES: tuple[Schedule, ...] = (
    # Settles whatever overstayed its bound (shared/services/reconciler.py).
    Schedule("reconciler", "functions.events.reconciler", 60),
)
