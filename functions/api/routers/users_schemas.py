"""Users as the API shows them (seed 001's user, also returned by /auth), and role grants."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import User


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    role: str
    full_name: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user)


class UserListOut(BaseModel):
    total: int
    users: list[UserOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page"
    )


class RoleIn(BaseModel):
    role: Literal["user", "researcher", "admin"]
