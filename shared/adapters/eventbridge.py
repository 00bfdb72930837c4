"""Publishing Crucible's own events (e.g. "Analysis Requested") to EventBridge."""

from __future__ import annotations

import json
from typing import Any

SOURCE = "crucible.api"


class EventBridgeBus:
    def __init__(self, client: Any, bus: str = "default") -> None:
        self.client = client
        self.bus = bus

    def publish(self, detail_type: str, detail: dict[str, Any], *, source: str = SOURCE) -> None:
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
