"""What several routers share: the error body they declare, and the pagination parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel


class ErrorInfo(BaseModel):
    """Seed 003's shape of the same error."""

    code: str
    message: str
    details: dict = {}
    request_id: str | None = None


class ErrorOut(BaseModel):
    """Every error body: seed 002's fields, and seed 003's under ``error``."""

    detail: str
    code: str
    field: str | None = None
    request_id: str | None = None
    error: ErrorInfo | None = None


Skip = Annotated[int, Query(ge=0, description="How many to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="How many to return at most")]
