"""What several routers share: the error body they declare, and the pagination parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field


class ErrorInfo(BaseModel):
    """Seed 003's shape of the same error."""

    code: str
    message: str
    details: dict = {}
    request_id: str | None = None


class ErrorOut(BaseModel):
    """Every error body (functions/api/errors.py ``error_body``): seed 002's fields, and
    seed 003's under ``error``. Some errors add fields of their own beside them (a rate
    limit's ``limit`` and ``reset_at``, an unknown model's suggestions)."""

    detail: str = Field(description="What went wrong and what to fix, for people")
    code: str = Field(description="Stable, for programs: VALIDATION_ERROR, NOT_FOUND, ...")
    field: str | None = Field(None, description="The field at fault, when one is")
    request_id: str | None = None
    error: ErrorInfo


class FieldError(BaseModel):
    """One refused value of a request."""

    loc: list[str | int] = Field(description="Where: body, query, path or header, then the name")
    field: str | None = Field(description="The field's dotted name")
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    """422: the request did not match its schema. ``detail`` names the first problem (seed
    002's string, not FastAPI's list); ``errors`` lists every one."""

    errors: list[FieldError]


# A prediction's 503: the inference function is invoked once, never retried into a second
# invocation (shared/adapters/runners.py); a cold one that cannot answer in time says so.
WARMING_UP = {
    "model": ErrorOut,
    "description": "The model is warming up (`MODEL_WARMING_UP`: a cold inference function "
    "did not answer within the API's time, and goes on loading) or inference is at its "
    "concurrency limit (`INFERENCE_BUSY`): retry after `Retry-After` seconds",
}

Skip = Annotated[int, Query(ge=0, description="How many to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="How many to return at most")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="The previous page's `next_cursor`: reads on from there (skip is then "
        "ignored); an offset (`skip`) reaches at most 10,000 deep",
    ),
]
