"""Seed 003's chat: POST /chat/message, GET and DELETE /chat/sessions/{session_id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from functions.api.deps import CurrentUser, Services
from functions.api.routers.chat_schemas import ChatMessageIn, ChatReplyOut, ChatSessionOut
from functions.api.routers.common import ErrorOut

router = APIRouter(prefix="/chat", tags=["chat"])
_errors = {
    400: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
}


@router.post("/message", response_model=ChatReplyOut, responses=_errors)
def message(body: ChatMessageIn, principal: CurrentUser, c: Services) -> Any:
    """Send a message (a new chat without ``session_id``): the answer is
    ``clarification_needed`` (questions, in the message's language, with suggestions from
    your datasets and the model catalogue) or ``intent_complete`` (the ``training_config``,
    and the actions ``start_training`` and ``edit_config``). Send ``action:
    start_training`` with the ``session_id`` (or answer "yes") to start the training as a
    workflow: ``training_started`` with its ``workflow_id``."""
    return c.chat.post(
        principal,
        session_id=body.session_id,
        message=body.message,
        context=body.context,
        action=body.action,
        config=body.training_config,
    )


@router.get("/sessions/{session_id}", response_model=ChatSessionOut, responses=_errors)
def get_session(session_id: str, principal: CurrentUser, c: Services) -> ChatSessionOut:
    """A chat of yours: its messages, and the intent as it stands."""
    return ChatSessionOut.of(c.chat.detail(principal, session_id))


@router.delete("/sessions/{session_id}", status_code=204, responses=_errors)
def delete_session(session_id: str, principal: CurrentUser, c: Services) -> Response:
    """Delete a chat of yours and its messages (a workflow it started stays)."""
    c.chat.delete(principal, session_id)
    return Response(status_code=204)
