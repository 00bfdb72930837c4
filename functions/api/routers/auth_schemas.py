"""Registration, login and token shapes (seeds 001/002/004, and seed 003's token pair)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from functions.api.routers.users_schemas import UserOut


def _email(value: str) -> str:
    """Validate with email-validator, imported on first use (it costs ~15 ms of cold start)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


EmailStr = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email"}),
]


class RegisterIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    role: Literal["user", "researcher", "admin"] = "user"
    full_name: str | None = Field(default=None, max_length=200)


class LoginIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme name
    expires_in: int


class LoginOut(TokenOut):
    user: UserOut


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1)


class AccessTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme name
    expires_in: int
