"""Users, and the e-mail lock that keeps addresses unique (case-insensitively)."""

from __future__ import annotations

from typing import Any

from shared.adapters.dynamodb.table import Table, pad_id
from shared.errors import Conflict, NotFound
from shared.models import Page, User


class DynamoUsers:
    """``USER#<id>`` items listed on GSI1 (``USERS``), beside an ``EMAIL#<lower e-mail>``
    lock written in the same transaction."""

    def __init__(self, table: Table) -> None:
        self.t = table

    @staticmethod
    def _model(item: dict[str, Any]) -> User:
        return User(
            id=item["id"],
            email=item["email"],
            role=item["role"],
            full_name=item.get("full_name"),
            created_at=item["created_at"],
            password_hash=item.get("password_hash", ""),
        )

    def create(self, *, email: str, password_hash: str, role: str, full_name: str | None) -> User:
        email_key = f"EMAIL#{email.lower()}"
        if self.t.get(email_key, "EMAIL"):
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        uid = self.t.next_id("user")
        user = User(
            id=uid, email=email, role=role, full_name=full_name, password_hash=password_hash
        )
        item = {
            "PK": f"USER#{uid}",
            "SK": "USER",
            "type": "user",
            **user.model_dump(mode="json"),
            "password_hash": password_hash,
            "GSI1PK": "USERS",
            "GSI1SK": pad_id(uid),
        }
        lock = {"PK": email_key, "SK": "EMAIL", "type": "email", "user_id": uid}
        if not self.t.transact_new(item, lock):
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        return user

    def get(self, user_id: int) -> User | None:
        item = self.t.get(f"USER#{user_id}", "USER")
        return self._model(item) if item else None

    def get_by_email(self, email: str) -> User | None:
        lock = self.t.get(f"EMAIL#{email.lower()}", "EMAIL")
        return self.get(lock["user_id"]) if lock else None

    def list(self, *, skip: int, limit: int) -> Page[User]:
        total, rows = self.t.page("USERS", index="GSI1", skip=skip, limit=limit)
        return Page[User](total=total, items=[self._model(r) for r in rows])

    def set_role(self, user_id: int, role: str) -> User:
        item = self.t.update(f"USER#{user_id}", "USER", {"role": role})
        if item is None:
            raise NotFound("User not found", code="USER_NOT_FOUND")
        return self._model(item)
