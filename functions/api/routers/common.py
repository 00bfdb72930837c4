"""What several routers share: the error body they declare, and the pagination parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str
    code: str
    field: str | None = None


Skip = Annotated[int, Query(ge=0, description="How many to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="How many to return at most")]
