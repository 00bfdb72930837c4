"""Seed 003's chat sessions: ``CHAT#<session id>`` / ``SESSION``, and its messages beside
it, ``CHAT#<session id>`` / ``MSG#<n:06d>`` (numbered from 1, so they read back in order;
at most ``shared.services.chat.MAX_MESSAGES`` a session). No index copies a session: every
turn rewrites it, and no one lists sessions.

Every write of a session is conditional on the version it read (``version``, bumped by
each write) and stores the turn's new messages in the same transaction: two requests on
one session never interleave their messages or lose each other's intent. A session being
deleted is marked first (``deleting``), so no turn lands on it meanwhile; then its
messages go, then the session.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb.table import Table, _set_clause, _to_ddb, from_ddb
from shared.intent import ChatMessage, ChatSession

SESSION = "SESSION"
MESSAGE = "MSG#"


class DynamoChatSessions:
    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _pk(session_id: str) -> str:
        return f"CHAT#{session_id}"

    def _message_puts(self, s: ChatSession, first: int, messages: list[ChatMessage]) -> list[dict]:
        return [
            {
                "Put": {
                    "TableName": self.t.name,
                    "Item": _to_ddb(
                        {
                            "PK": self._pk(s.id),
                            "SK": f"{MESSAGE}{first + i:06d}",
                            "type": "chat_message",
                            "session_id": s.id,
                            "role": m.role,
                            "content": m.content,
                            "timestamp": m.timestamp.isoformat(),
                            "reply_type": m.kind,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            for i, m in enumerate(messages)
        ]

    def _transact(self, ops: list[dict]) -> bool:
        try:
            self.t.client.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    def create(self, session: ChatSession, messages: list[ChatMessage]) -> ChatSession | None:
        """Store a new session with its first messages; None if the id is taken."""
        stored = session.model_copy(update={"message_count": len(messages), "version": 1})
        item = {
            "PK": self._pk(stored.id),
            "SK": SESSION,
            "type": "chat_session",
            **stored.model_dump(mode="json"),
        }
        put = {
            "Put": {
                "TableName": self.t.name,
                "Item": _to_ddb(item),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        return stored if self._transact([put, *self._message_puts(stored, 1, messages)]) else None

    def get(self, session_id: str) -> ChatSession | None:
        out = self.t.client.get_item(
            TableName=self.t.name,
            Key=_to_ddb({"PK": self._pk(session_id), "SK": SESSION}),
            ConsistentRead=True,
        )
        item = from_ddb(out["Item"]) if "Item" in out else None
        if item is None or item.get("deleting"):
            return None
        return ChatSession.model_validate(item)

    def messages(self, session_id: str) -> list[ChatMessage]:
        return [
            ChatMessage(
                role=r["role"],
                content=r["content"],
                timestamp=r["timestamp"],
                kind=r.get("reply_type"),
            )
            for r in self.t.query(self._pk(session_id), sk_prefix=MESSAGE)
        ]

    def save(
        self, session: ChatSession, messages: list[ChatMessage], *, expected_version: int
    ) -> ChatSession | None:
        """Write ``session`` and append ``messages``, if the stored session is still at
        ``expected_version`` (and not being deleted); None otherwise."""
        first = session.message_count + 1
        stored = session.model_copy(
            update={
                "message_count": session.message_count + len(messages),
                "version": expected_version + 1,
            }
        )
        body: dict[str, Any] = {
            k: v
            for k, v in stored.model_dump(mode="json").items()
            if k not in ("id", "owner_id", "created_at")
        }
        names: dict[str, str] = {"#ver": "version", "#del": "deleting"}
        values: dict[str, Any] = {":expected": expected_version}
        nulls = [k for k, v in body.items() if v is None]
        expr = "SET " + _set_clause({k: v for k, v in body.items() if v is not None}, names, values)
        if nulls:
            for i, k in enumerate(nulls):
                names[f"#n{i}"] = k
            expr += " REMOVE " + ", ".join(f"#n{i}" for i in range(len(nulls)))
        update = {
            "Update": {
                "TableName": self.t.name,
                "Key": _to_ddb({"PK": self._pk(session.id), "SK": SESSION}),
                "UpdateExpression": expr,
                "ConditionExpression": "#ver = :expected AND attribute_not_exists(#del)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _to_ddb(values),
            }
        }
        ok = self._transact([update, *self._message_puts(session, first, messages)])
        return stored if ok else None

    def delete(self, session_id: str) -> None:
        """Delete the session and its messages (idempotent)."""
        pk = self._pk(session_id)
        self.t.update(pk, SESSION, {"deleting": True})  # no turn lands on it from here on
        keys = [{"PK": pk, "SK": r["SK"]} for r in self.t.query(pk, sk_prefix=MESSAGE)]
        for i in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": _to_ddb(k)}} for k in keys[i : i + 25]]
            for _ in range(8):
                out = self.t.client.batch_write_item(RequestItems={self.t.name: requests})
                requests = out.get("UnprocessedItems", {}).get(self.t.name, [])
                if not requests:
                    break
            if requests:
                raise RuntimeError(f"could not delete every message of chat {session_id}")
        self.t.delete(pk, SESSION)
