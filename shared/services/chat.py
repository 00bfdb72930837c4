"""Seed 003's chat: a conversation that turns what a person asks for into a training
workflow (POST /chat/message, GET and DELETE /chat/sessions/{id}).

Each message is read by the intent parser port (rules offline, or Amazon Bedrock) against
the catalogue and the caller's own datasets only, merged into the session's intent, and
answered with ``clarification_needed`` (questions for what is missing, in the user's
language) or ``intent_complete`` (the ``training_config`` and its actions). A later
message in the same session fills the gaps. ``start_training`` (an action, or a "yes"
once the intent is complete) creates the workflow through the workflow service, so every
check of POST /workflows applies (catalogue, the dataset's owner, the plan's caps).

A refused request stores nothing: the message and its context are checked before the
one conditional write that stores the turn. A start is claimed on the session before
the workflow is made, so a double click starts one workflow, and a start repeated for
the same intent answers with the workflow already started.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from shared import intent
from shared.errors import Conflict, InvalidInput, NotFound, TooLarge
from shared.intent import ChatMessage, ChatSession, DatasetRef, Intent, Parsed
from shared.models import Principal, utcnow
from shared.ports import ChatSessionRepository, IntentParser
from shared.services.datasets import DatasetService

if TYPE_CHECKING:
    from shared.services.workflows import WorkflowService

SESSION_ID = re.compile(r"sess_[0-9a-f]{24}")
MAX_CONTEXT_BYTES = 2000
MAX_MESSAGES = 200  # per session: 100 turns, then a new session
START_CLAIM_S = 60.0  # a start claimed this recently is still under way
ACTIONS = ("start_training", "edit_config")
SESSION_NOT_FOUND = "Chat session not found"


class ChatService:
    def __init__(
        self,
        sessions: ChatSessionRepository,
        parser: IntentParser,
        datasets: DatasetService,
        workflows: WorkflowService,
        *,
        max_message_chars: int,
        max_messages: int = MAX_MESSAGES,
    ) -> None:
        self.sessions = sessions
        self.parser = parser
        self.datasets = datasets
        self.workflows = workflows
        self.max_message_chars = max_message_chars
        self.max_messages = max_messages

    # --- reading ----------------------------------------------------------------------
    def session(self, actor: Principal, session_id: str) -> ChatSession:
        """The caller's own session; anyone else's answers as a missing one."""
        found = self.sessions.get(session_id) if SESSION_ID.fullmatch(session_id or "") else None
        if found is None or found.owner_id != actor.user_id:
            raise NotFound(SESSION_NOT_FOUND, code="SESSION_NOT_FOUND", field="session_id")
        return found

    def detail(self, actor: Principal, session_id: str) -> dict[str, Any]:
        """Seed 003's session: its messages, status, and the intent as it stands now."""
        s = self.session(actor, session_id)
        r = intent.review(s.intent, self._datasets(actor))
        return {
            "session_id": s.id,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "messages": self.sessions.messages(s.id),
            "status": s.status,
            "language": s.language,
            "current_intent": intent.parsed_intent(r, s.confidence),
            "pending_questions": list(s.pending),
            "training_config": intent.training_config(r) if r.complete else None,
            "workflow_id": str(s.workflow_id) if s.workflow_id is not None else None,
        }

    def delete(self, actor: Principal, session_id: str) -> None:
        self.sessions.delete(self.session(actor, session_id).id)

    # --- a turn -----------------------------------------------------------------------
    def post(
        self,
        actor: Principal,
        *,
        session_id: str | None,
        message: str | None,
        context: dict[str, Any] | None,
        action: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One request to POST /chat/message: a message, or an action on the session."""
        if action is not None:
            if action not in ACTIONS:
                raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}", field="action")
            if action == "start_training":
                if not session_id:
                    raise InvalidInput("start_training needs the session_id", field="session_id")
                return self.start(actor, session_id)
            if not isinstance(config, dict) or not config:
                raise InvalidInput(
                    "edit_config needs training_config: the fields to change",
                    field="training_config",
                )
        else:
            text = self._text(message)
        extra = self._context(actor, context)
        session = self.session(actor, session_id) if session_id else None
        if session is not None and session.message_count + 2 > self.max_messages:
            raise Conflict(
                f"This chat session holds its {self.max_messages} messages: start a new one "
                "(send a message without session_id)",
                code="SESSION_FULL",
            )
        datasets = self._datasets(actor)
        language = session.language if session else None
        if action == "edit_config":
            if len(json.dumps(config, default=str)) > MAX_CONTEXT_BYTES * 4:
                raise InvalidInput("training_config is too large", field="training_config")
            parsed = intent.edits(config, datasets, language or "en")
            text = json.dumps(config, ensure_ascii=False, default=str)
        else:
            ctx = intent.ParseContext(
                tuple(datasets), tuple(session.pending) if session else (), language
            )
            parsed = self.parser.parse(text, ctx)
        if "dataset_id" in extra:
            parsed.intent.dataset_id, parsed.intent.dataset_name = extra["dataset_id"]
            parsed.dataset_mention = None
        prior = session.intent if session else Intent()
        if (
            parsed.confirm
            and session is not None
            and intent.review(prior, datasets).complete
            and action is None
        ):
            return self.start(actor, session.id, said=text)
        return self._answer(actor, session, text, parsed, prior, datasets, extra, action)

    def _answer(
        self,
        actor: Principal,
        session: ChatSession | None,
        text: str,
        parsed: Parsed,
        prior: Intent,
        datasets: list[DatasetRef],
        extra: dict[str, Any],
        action: str | None,
    ) -> dict[str, Any]:
        merged = intent.merge(prior, parsed)
        r = intent.review(merged, datasets, parsed)
        lang = parsed.language
        now = utcnow()
        base = session or ChatSession(
            id="sess_" + secrets.token_hex(12), owner_id=actor.user_id, created_at=now
        )
        reply: dict[str, Any] = {
            "session_id": base.id,
            "type": "intent_complete" if r.complete else "clarification_needed",
            "parsed_intent": intent.parsed_intent(r, parsed.confidence),
        }
        if r.complete:
            reply["training_config"] = intent.training_config(r)
            reply["message"] = intent.complete_message(r, lang)
            reply["actions"] = intent.actions(lang)
        else:
            reply["questions"] = intent.questions(r, lang, datasets, parsed=parsed)
            reply["message"] = intent.clarification_message(r, lang)
        changed = merged != prior
        updated = base.model_copy(
            update={
                "intent": merged,
                "pending": r.missing,
                "language": lang,
                "revision": base.revision + 1 if changed else base.revision,
                "status": "active" if changed or base.status == "active" else base.status,
                "confidence": parsed.confidence,
                "updated_at": now,
                "project_id": extra.get("project_id", base.project_id),
            }
        )
        messages = [
            ChatMessage(
                role="user", content=text, timestamp=now, kind="action" if action else None
            ),
            ChatMessage(
                role="assistant", content=reply["message"], timestamp=now, kind=reply["type"]
            ),
        ]
        stored = (
            self.sessions.create(updated, messages)
            if session is None
            else self.sessions.save(updated, messages, expected_version=session.version)
        )
        if stored is None:
            raise Conflict(
                "This chat session changed while your message was read; send it again",
                code="SESSION_BUSY",
            )
        return reply

    # --- starting the training --------------------------------------------------------
    def start(
        self, actor: Principal, session_id: str, *, said: str | None = None
    ) -> dict[str, Any]:
        """Start the session's training as a workflow (seed 003's start_training action)."""
        s = self.session(actor, session_id)
        r = intent.review(s.intent, self._datasets(actor))
        lang = s.language
        if not r.complete:
            raise Conflict(
                "The training is not fully described yet; still needed: " + ", ".join(r.missing),
                code="INTENT_INCOMPLETE",
                field="action",
            )
        config = intent.training_config(r)
        if s.workflow_id is not None and s.started_revision == s.revision:
            current = self.workflows.get(actor, s.workflow_id)  # started already: the same one
            return self._started(s, config, current, lang)
        if (
            s.starting_revision == s.revision
            and s.starting_at is not None
            and time.time() - s.starting_at < START_CLAIM_S
        ):
            raise Conflict("This training is being started already", code="START_IN_PROGRESS")
        claim = s.model_copy(update={"starting_revision": s.revision, "starting_at": time.time()})
        claimed = self.sessions.save(claim, [], expected_version=s.version)
        if claimed is None:
            raise Conflict(
                "This chat session changed meanwhile; send start_training again",
                code="SESSION_BUSY",
            )
        try:
            created = self.workflows.create(
                actor,
                config,
                description=f"Chat session {s.id}",
                project_id=s.project_id,
            )
        except Exception:
            self._record(s.id, lambda cur: {"starting_revision": None, "starting_at": None}, [])
            raise
        workflow_id = int(created["workflow_id"])
        now = utcnow()
        messages = [
            ChatMessage(
                role="user",
                content=said or intent.say(lang, "start_training"),
                timestamp=now,
                kind=None if said else "action",
            ),
            ChatMessage(
                role="assistant",
                content=intent.say(lang, "started", id=workflow_id),
                timestamp=now,
                kind="training_started",
            ),
        ]
        fields = {
            "workflow_id": workflow_id,
            "started_revision": s.revision,
            "starting_revision": None,
            "starting_at": None,
            "status": "completed",
            "pending": [],
            "updated_at": now,
        }
        self._record(s.id, lambda cur: fields, messages)
        return self._started(s, config, created, lang)

    def _record(self, session_id: str, fields: Any, messages: list[ChatMessage]) -> None:
        """Write ``fields(current)`` onto the session as it is now (it may have moved on)."""
        for _ in range(8):
            cur = self.sessions.get(session_id)
            if cur is None:
                return  # deleted meanwhile: the workflow stands on its own
            saved = self.sessions.save(
                cur.model_copy(update=fields(cur)), messages, expected_version=cur.version
            )
            if saved is not None:
                return
        raise Conflict("This chat session is too busy to record the start", code="SESSION_BUSY")

    @staticmethod
    def _started(
        s: ChatSession, config: dict[str, Any], workflow: dict[str, Any], lang: intent.Language
    ) -> dict[str, Any]:
        workflow_id = str(workflow["workflow_id"])
        return {
            "session_id": s.id,
            "type": "training_started",
            "workflow_id": workflow_id,
            "status": workflow.get("status"),
            "message": intent.say(lang, "started", id=workflow_id),
            "training_config": config,
            "estimated_duration_minutes": workflow.get("estimated_duration_minutes"),
            "queue_position": workflow.get("queue_position"),
            "websocket_url": f"/ws/workflows/{workflow_id}",
        }

    # --- what a request may carry -----------------------------------------------------
    def _text(self, message: str | None) -> str:
        if message is None or not message.strip():
            raise InvalidInput("message must not be empty", field="message")
        if len(message) > self.max_message_chars:
            raise TooLarge(
                f"message is {len(message)} characters; a chat message may be at most "
                f"{self.max_message_chars}",
                field="message",
            )
        return message.strip()

    def _context(self, actor: Principal, context: dict[str, Any] | None) -> dict[str, Any]:
        """What ``context`` may tell: ``dataset_id`` (one of the caller's own datasets,
        chosen in a UI) and ``project_id`` (one of theirs, for the workflow)."""
        if context is None:
            return {}
        if not isinstance(context, dict):
            raise InvalidInput("context must be an object", field="context")
        if len(json.dumps(context, default=str)) > MAX_CONTEXT_BYTES:
            raise InvalidInput(
                f"context must be at most {MAX_CONTEXT_BYTES} bytes of JSON", field="context"
            )
        out: dict[str, Any] = {}
        dataset_id = context.get("dataset_id")
        if dataset_id is not None:
            mine = next((d for d in self._datasets(actor) if d.id == str(dataset_id)), None)
            if mine is None:  # another's dataset answers as a missing one
                raise NotFound(
                    "Dataset not found", field="context.dataset_id", code="DATASET_NOT_FOUND"
                )
            out["dataset_id"] = (mine.id, mine.name)
        project_id = context.get("project_id")
        if project_id is not None:
            if isinstance(project_id, bool) or not re.fullmatch(r"[0-9]{1,18}", str(project_id)):
                raise InvalidInput("project_id must be a project's id", field="context.project_id")
            out["project_id"] = self.datasets.projects.get(
                actor, int(project_id), field="context.project_id"
            ).id
        return out

    def _datasets(self, actor: Principal) -> list[DatasetRef]:
        """The caller's own datasets (an admin's list holds everyone's: only theirs count)."""
        return [
            DatasetRef(
                id=d.id,
                name=d.name,
                format=d.format,
                status=d.status,
                classes=tuple(d.class_distribution),
            )
            for d in self.datasets.list(actor)
            if d.owner_id == actor.user_id
        ]
