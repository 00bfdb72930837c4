"""Seed 001's tags: list, create, delete (per-file tag routes arrive with audio files)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import Cursor, ErrorOut, Limit, Skip
from functions.api.routers.tags_schemas import TagIn, TagListOut, TagOut

router = APIRouter(prefix="/tags", tags=["tags"])


@router.get("/", response_model=TagListOut, responses={400: {"model": ErrorOut}})
def list_tags(
    principal: CurrentUser, c: Services, skip: Skip = 0, limit: Limit = 100, cursor: Cursor = None
) -> TagListOut:
    page = c.tags.list(principal, skip=skip, limit=limit, cursor=cursor)
    tags = [TagOut.of(t) for t in page.items]
    return TagListOut(total=page.total, tags=tags, next_cursor=page.next_cursor)


@router.post("/", status_code=201, response_model=TagOut, responses={409: {"model": ErrorOut}})
def create_tag(body: TagIn, principal: CurrentUser, c: Services) -> TagOut:
    return TagOut.of(c.tags.create(principal, body.name))


@router.delete("/{tag_id}", status_code=204, responses={404: {"model": ErrorOut}})
def delete_tag(tag_id: int, principal: CurrentUser, c: Services) -> Response:
    c.tags.delete(principal, tag_id)
    return Response(status_code=204)
