"""Putting events on EventBridge: Crucible's own (e.g. "Analysis Requested"), and locally
the job runner's "Batch Job State Change" events, which AWS Batch sends itself."""

from __future__ import annotations

import json
from typing import Any

SOURCE = "crucible.api"


class EventBridgeBus:
    """Puts one event on a bus (a custom one, or the account's default)."""

    def __init__(self, client: Any, bus: str = "default") -> None:
        self.client = client
        self.bus = bus

    def put_event(self, detail_type: str, detail: dict[str, Any], *, source: str = SOURCE) -> None:
        out = self.client.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": self.bus,
                }
            ]
        )
        if out.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the event: {out['Entries']}")
