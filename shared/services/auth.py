"""Registration, login, JWT access/refresh tokens and static API tokens."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.models import Page, Principal, User
from shared.ports import UserRepository
from shared.settings import Settings

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so both paths cost one argon2 check."""
    return _hasher.hash("crucible-timing-equaliser")


# Not an argon2 hash: no password ever verifies against it (API-token service users).
_NO_LOGIN = "!"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the scheme name


class AuthService:
    def __init__(self, users: UserRepository, settings: Settings, secret: str) -> None:
        self.users = users
        self.settings = settings
        self._secret = secret
        self._token_principals: dict[str, Principal] = {}

    # --- accounts -------------------------------------------------------
    def register(
        self, *, email: str, password: str, role: str = "user", full_name: str | None = None
    ) -> User:
        if role not in self.settings.self_register_roles:
            raise Forbidden(
                f"Role '{role}' cannot be chosen at registration; allowed: "
                + ", ".join(self.settings.self_register_roles),
                field="role",
            )
        if len(password) < 8:
            raise InvalidInput("Password must be at least 8 characters", field="password")
        return self.users.create(
            email=email, password_hash=_hasher.hash(password), role=role, full_name=full_name
        )

    def authenticate_password(self, email: str, password: str) -> User:
        user = self.users.get_by_email(email)
        try:
            _hasher.verify(user.password_hash if user else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            raise Unauthorized("Incorrect e-mail or password", code="INVALID_CREDENTIALS")
        return user

    def set_role(self, actor: Principal, user_id: int, role: str) -> User:
        if not actor.at_least("admin"):
            raise Forbidden("Only an admin can change roles")
        return self.users.set_role(user_id, role)

    def get_user(self, actor: Principal, user_id: int) -> User:
        user = self.users.get(user_id)
        if user is None or not actor.can_read(user_id, privileged="researcher"):
            raise NotFound("User not found", code="USER_NOT_FOUND")
        return user

    def list_users(self, actor: Principal, *, skip: int, limit: int) -> Page[User]:
        if not actor.at_least("researcher"):
            raise Forbidden("Listing users needs the 'researcher' role or higher")
        return self.users.list(skip=skip, limit=limit)

    # --- tokens ---------------------------------------------------------
    def issue(self, user: User) -> TokenPair:
        ttl = self.settings.access_token_ttl_s
        return TokenPair(
            access_token=self._encode(user.id, user.role, "access", ttl),
            refresh_token=self._encode(
                user.id, user.role, "refresh", self.settings.refresh_token_ttl_s
            ),
            expires_in=ttl,
        )

    def refresh(self, refresh_token: str) -> tuple[str, int]:
        claims = self._decode(refresh_token, "refresh")
        # Re-read the user: a deleted account or changed role must not live on.
        user = self.users.get(int(claims["sub"]))
        if user is None:
            raise Unauthorized("User no longer exists", code="INVALID_TOKEN")
        ttl = self.settings.access_token_ttl_s
        return self._encode(user.id, user.role, "access", ttl), ttl

    def authenticate(self, token: str) -> Principal:
        """Resolve a bearer credential: a static API token or a JWT access token."""
        for name, secret in self._api_tokens.items():
            if hmac.compare_digest(token.encode(), secret.encode()):
                return self._api_token_principal(name)
        claims = self._decode(token, "access")
        return Principal(user_id=int(claims["sub"]), role=claims["role"], via="jwt")

    def _encode(self, user_id: int, role: str, kind: str, ttl: int) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "type": kind,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=self.settings.jwt_algorithm)

    def _decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.settings.jwt_algorithm],  # never "none", never another family
                options={"require": ["exp", "iat", "sub", "type"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired", code="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token", code="INVALID_TOKEN") from None
        if claims.get("type") != kind or claims.get("role") not in ("user", "researcher", "admin"):
            raise Unauthorized("Invalid token", code="INVALID_TOKEN")
        try:
            int(claims["sub"])
        except (TypeError, ValueError):
            raise Unauthorized("Invalid token", code="INVALID_TOKEN") from None
        return claims

    # --- static API tokens (seed 004's API_TOKENS) -------------------------
    @cached_property
    def _api_tokens(self) -> dict[str, str]:
        tokens = {}
        for i, entry in enumerate(self.settings.api_tokens):
            name, _, secret = entry.rpartition("=")
            tokens[name or f"api-token-{i + 1}"] = secret
        return tokens

    def _api_token_principal(self, name: str) -> Principal:
        """API tokens act as a service user of their own, created on first use."""
        if name in self._token_principals:
            return self._token_principals[name]
        email = f"{name}@api-tokens.crucible"
        user = self.users.get_by_email(email)
        if user is None:
            try:
                user = self.users.create(
                    email=email, password_hash=_NO_LOGIN, role="user", full_name=name
                )
            except Conflict:  # created concurrently by another request
                user = self.users.get_by_email(email)
                if user is None:
                    raise
        principal = Principal(user_id=user.id, role=user.role, via="api_token")
        self._token_principals[name] = principal
        return principal
