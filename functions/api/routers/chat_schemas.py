"""Seed 003's chat shapes: POST /chat/message and its three answers, and a session."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # an annotation only: the chat's domain loads where the chat runs
    from shared.intent import ChatMessage


class ChatMessageIn(BaseModel):
    """A message (``message``), or an action on a session (``action``)."""

    session_id: str | None = Field(
        default=None, description="from an earlier answer; omit to start a chat"
    )
    message: str | None = Field(
        default=None,
        description="what the user says, in Korean, English or Japanese (at most "
        "CRUCIBLE_CHAT_MAX_MESSAGE_CHARS characters, 4000 by default)",
    )
    context: dict[str, Any] | None = Field(
        default=None,
        description="optional: dataset_id (one of your datasets, chosen in a UI) and "
        "project_id (one of your projects, for the workflow)",
    )
    action: str | None = Field(
        default=None,
        description="start_training (starts the session's complete training_config as a "
        "workflow) or edit_config (changes training_config's fields)",
    )
    training_config: dict[str, Any] | None = Field(
        default=None, description="edit_config: the training_config fields to change"
    )


class QuestionOut(BaseModel):
    id: str
    field: str
    question: str
    required: bool
    suggestions: list[str]


class ActionOut(BaseModel):
    type: Literal["start_training", "edit_config"]
    label: str


class HyperparametersOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str


class ConfigDatasetOut(BaseModel):
    source: str
    dataset_id: str
    name: str | None = None


class TrainingConfigOut(BaseModel):
    """Seed 003's training_config; ``framework``, ``model`` and ``dataset_id`` repeat it in
    the shape POST /workflows takes as its ``config``."""

    task_type: Literal["classification", "detection"]
    model_name: str
    model_source: str
    num_classes: int | None
    class_names: list[str]
    dataset: ConfigDatasetOut
    hyperparameters: HyperparametersOut
    framework: str
    model: str
    dataset_id: str


_PARSED = "what is known so far (only the fields known), and the parse's confidence"


class ClarificationOut(BaseModel):
    session_id: str
    type: Literal["clarification_needed"]
    parsed_intent: dict[str, Any] = Field(description=_PARSED)
    questions: list[QuestionOut]
    message: str


class IntentCompleteOut(BaseModel):
    session_id: str
    type: Literal["intent_complete"]
    parsed_intent: dict[str, Any] = Field(description=_PARSED)
    training_config: TrainingConfigOut
    message: str
    actions: list[ActionOut]


class TrainingStartedOut(BaseModel):
    session_id: str
    type: Literal["training_started"]
    workflow_id: str
    status: str | None
    message: str
    training_config: TrainingConfigOut
    estimated_duration_minutes: int | None = None
    queue_position: int | None = None
    websocket_url: str = Field(description="seed 003's live progress of the workflow")


ChatReplyOut = Annotated[
    ClarificationOut | IntentCompleteOut | TrainingStartedOut, Field(discriminator="type")
]


class ChatMessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    timestamp: datetime
    type: str | None = Field(
        default=None, description="an answer's type; action for a user's action"
    )

    @classmethod
    def of(cls, m: ChatMessage) -> ChatMessageOut:
        return cls(role=m.role, content=m.content, timestamp=m.timestamp, type=m.kind)


class ChatSessionOut(BaseModel):
    session_id: str
    created_at: datetime
    updated_at: datetime
    messages: list[ChatMessageOut]
    status: Literal["active", "completed"] = Field(
        description="active while the training is being described; completed once started"
    )
    language: Literal["ko", "en", "ja"]
    current_intent: dict[str, Any] = Field(description=_PARSED)
    pending_questions: list[str] = Field(description="the fields the assistant asked for last")
    training_config: TrainingConfigOut | None
    workflow_id: str | None = Field(description="the workflow started from this chat, if any")

    @classmethod
    def of(cls, detail: dict[str, Any]) -> ChatSessionOut:
        return cls(**{**detail, "messages": [ChatMessageOut.of(m) for m in detail["messages"]]})
