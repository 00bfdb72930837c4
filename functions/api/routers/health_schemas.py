"""The health and readiness answer."""

from __future__ import annotations

from pydantic import BaseModel


class HealthOut(BaseModel):
    status: str
    stage: str
    version: str
    checks: dict[str, str] = {}
