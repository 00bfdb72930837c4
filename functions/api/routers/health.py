"""Liveness (no dependencies touched) and readiness (the table answers)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.api.deps import Services
from functions.api.routers.health_schemas import HealthOut

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


@router.get("/health", response_model=HealthOut)
def health(c: Services) -> HealthOut:
    return HealthOut(status="ok", stage=c.settings.stage, version=VERSION)


@router.get("/health/ready", response_model=HealthOut, responses={503: {"model": HealthOut}})
def ready(c: Services):
    try:
        c.table.get("HEALTH", "HEALTH")
        checks, status = {"table": "ok"}, "ok"
    except Exception as exc:  # report, don't raise: this route exists to say what is down
        checks, status = {"table": f"error: {type(exc).__name__}"}, "degraded"
    body = HealthOut(status=status, stage=c.settings.stage, version=VERSION, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)
