"""Users, the e-mail lock that keeps addresses unique (case-insensitively), and the
principal lock of each static API token's service user."""

from __future__ import annotations

import time
from typing import Any

from shared.adapters.dynamodb.table import Listing, Table, index_row, pad_id
from shared.errors import Conflict, NotFound
from shared.models import User
from shared.plans import DEFAULT_PLAN
from shared.ports import CursorPage

# Built once: pydantic rebuilds a generic model's class when no one keeps it.
_UserPage = CursorPage[User]

# How late a changed role or a deleted account may reach a process's checks (seconds).
RECENT_S = 5.0
# Users read recently, per table and id: (monotonic time read, user or None). Shared by
# every DynamoUsers of the process, so a role changed here is seen at once by all of them.
_recent: dict[tuple[str, int], tuple[float, User | None]] = {}
_RECENT_MAX = 10_000
# Everyone's users, in id order, over the shards of GSI2 (no single partition).
USERS = Listing("GSI2", "ALL#USER", sharded=True)


class DynamoUsers:
    """``USER#<id>`` items, listed through their index rows on GSI2's ``ALL#USER#<shard>``
    partitions (:data:`USERS`), beside the lock that names the user,
    written in the same transaction: ``EMAIL#<lower e-mail>`` for people (registration,
    login), ``TOKEN#<name>`` for an API token's service user. No e-mail lock ever points at
    a token's user, so no registration can claim a token's identity."""

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
            plan=item.get("plan", DEFAULT_PLAN),
        )

    def create(self, *, email: str, password_hash: str, role: str, full_name: str | None) -> User:
        email_key = f"EMAIL#{email.lower()}"
        if self.t.get(email_key, "EMAIL"):
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        lock = {"PK": email_key, "SK": "EMAIL", "type": "email"}
        user = self._create(
            lock, email=email, password_hash=password_hash, role=role, full_name=full_name
        )
        if user is None:
            raise Conflict(
                "A user with this e-mail already exists", field="email", code="EMAIL_TAKEN"
            )
        return user

    def create_token_user(
        self, name: str, *, email: str, password_hash: str, role: str, full_name: str | None
    ) -> User | None:
        """Create the service user of API token ``name`` under its ``TOKEN#<name>`` lock (no
        e-mail lock); None when the token already has one."""
        lock = {"PK": f"TOKEN#{name}", "SK": "TOKEN", "type": "token_principal"}
        return self._create(
            lock, email=email, password_hash=password_hash, role=role, full_name=full_name
        )

    def bind_token_user(self, name: str, user_id: int) -> bool:
        """Make an existing user the service user of API token ``name``; False when the
        token already has one."""
        lock = {"PK": f"TOKEN#{name}", "SK": "TOKEN", "type": "token_principal"}
        return self.t.put_new({**lock, "user_id": user_id})

    def get_by_token_name(self, name: str) -> User | None:
        lock = self.t.get(f"TOKEN#{name}", "TOKEN")
        return self.get(lock["user_id"]) if lock else None

    def _create(
        self,
        lock: dict[str, Any],
        *,
        email: str,
        password_hash: str,
        role: str,
        full_name: str | None,
    ) -> User | None:
        uid = self.t.next_id("user")
        user = User(
            id=uid, email=email, role=role, full_name=full_name, password_hash=password_hash
        )
        pk = f"USER#{uid}"
        item = {
            "PK": pk,
            "SK": "USER",
            "type": "user",
            **user.model_dump(mode="json"),
            "password_hash": password_hash,
        }
        row = index_row(pk, "user", pad_id(uid), mine=None, everyone=USERS, key=uid)
        ops = self.t.listed_ops(item, row, [USERS])
        if not self.t.transact([*ops, self.t.put_op({**lock, "user_id": uid})]):
            return None
        return user

    def get(self, user_id: int) -> User | None:
        item = self.t.get(f"USER#{user_id}", "USER")
        return self._remember(user_id, item)

    def current(self, user_id: int) -> User | None:
        """The user as stored, read at most ``RECENT_S`` seconds ago by this process: what
        every request checks its token's user against, at one read per user per interval."""
        known, user = self.recent(user_id)
        return user if known else self.get(user_id)

    def recent(self, user_id: int) -> tuple[bool, User | None]:
        """``(True, the user or None if deleted)`` when this process read the user less than
        ``RECENT_S`` seconds ago, else ``(False, None)``: never a read of the table, so an
        event loop may ask it and leave the read, when one is due, to a thread."""
        hit = _recent.get((self.t.name, user_id))
        if hit is None or time.monotonic() - hit[0] > RECENT_S:
            return False, None
        return True, hit[1]

    def _remember(self, user_id: int, item: dict[str, Any] | None) -> User | None:
        user = self._model(item) if item else None
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[(self.t.name, user_id)] = (time.monotonic(), user)
        return user

    def get_by_email(self, email: str) -> User | None:
        lock = self.t.get(f"EMAIL#{email.lower()}", "EMAIL")
        return self.get(lock["user_id"]) if lock else None

    def list(self, *, skip: int, limit: int, cursor: str | None = None) -> CursorPage[User]:
        total, rows, nxt = self.t.listed(USERS, "USER", limit=limit, skip=skip, cursor=cursor)
        return _UserPage(total=total, items=[self._model(r) for r in rows], next_cursor=nxt)

    def set_role(self, user_id: int, role: str) -> User:
        item = self.t.update(f"USER#{user_id}", "USER", {"role": role})
        if item is None:
            raise NotFound("User not found", code="USER_NOT_FOUND")
        self._remember(user_id, item)
        return self._model(item)

    def set_plan(self, user_id: int, plan: str) -> User:
        """Seed 003's plan; like a role, it applies to the user's requests at once here and
        within ``RECENT_S`` elsewhere."""
        item = self.t.update(f"USER#{user_id}", "USER", {"plan": plan})
        if item is None:
            raise NotFound("User not found", code="USER_NOT_FOUND")
        self._remember(user_id, item)
        return self._model(item)
