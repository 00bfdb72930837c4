"""Registration, login, JWT access/refresh tokens and static API tokens.

Every credential resolves to its user as stored now (``UserRepository.current``: a few
seconds late at most), never to the role a token was issued with: a demoted or deleted
user's old tokens lose what the change took away. A static API token acts as a service
user of its own, found by the token's name (a ``TOKEN#`` lock), never by an e-mail
address, so no registration can claim it.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from shared.models import Principal, User
from shared.ports import CursorPage, UserRepository
from shared.settings import Settings

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so both paths cost one argon2 check."""
    return _hasher.hash("crucible-timing-equaliser")


# Tokens whose signature this process has checked, kept for their expiry checks alone.
_VERIFIED_MAX = 10_000
# Not an argon2 hash: no password ever verifies against it (API-token service users).
_NO_LOGIN = "!"
# The e-mail domain shown for API tokens' service users; nobody registers under it.
TOKEN_DOMAIN = "api-tokens.crucible"  # noqa: S105 - a domain name, not a secret


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
        self._token_users: dict[str, int] = {}  # API token name -> its service user's id
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, token) -> claims

    # --- accounts -------------------------------------------------------
    def register(
        self, *, email: str, password: str, role: str = "user", full_name: str | None = None
    ) -> User:
        if role == "admin" or role not in self.settings.self_register_roles:
            raise Forbidden(
                f"The '{role}' role cannot be chosen at registration (allowed: "
                + ", ".join(r for r in self.settings.self_register_roles if r != "admin")
                + f"): register, then an administrator grants '{role}' "
                "(PUT /api/v1/users/{id}/role, or the operator's admin CLI)",
                field="role",
                code="ROLE_NOT_SELF_ASSIGNABLE",
            )
        domain = email.rpartition("@")[2].lower()
        if domain == TOKEN_DOMAIN or domain.endswith("." + TOKEN_DOMAIN):
            raise InvalidInput(
                f"Addresses at {TOKEN_DOMAIN} are reserved for API tokens; use your own e-mail",
                field="email",
                code="EMAIL_RESERVED",
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
        # Yourself: as your request was authenticated (read at most a few seconds ago).
        user = self.users.current(user_id) if user_id == actor.user_id else self.users.get(user_id)
        if user is None or not actor.can_read(user_id, privileged="researcher"):
            raise NotFound("User not found", code="USER_NOT_FOUND")
        return user

    def list_users(
        self, actor: Principal, *, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[User]:
        if not actor.at_least("researcher"):
            raise Forbidden("Listing users needs the 'researcher' role or higher")
        return self.users.list(skip=skip, limit=limit, cursor=cursor)

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
        """Resolve a bearer credential (a static API token or a JWT access token) to its
        user as stored now: role changes and deletions apply within seconds."""
        found = self.identify(token)
        if found is None:  # never so: with read=True it reads the user when it must
            raise Unauthorized("Invalid token", code="INVALID_TOKEN")
        return found[0]

    def identify(self, token: str, *, read: bool = True) -> tuple[Principal, User] | None:
        """``authenticate``, with the user it found. With ``read=False`` it never touches
        the table: None when the user was not read recently (nor, for an API token, its
        service user found yet), so an event loop can check a credential itself and leave
        only the occasional read to a thread. Same checks, same bound either way."""
        for secret, name in self.settings.api_token_names.items():
            if hmac.compare_digest(token.encode(), secret.encode()):
                if not read and name not in self._token_users:
                    return None
                return self._current(self._token_user(name), via="api_token", read=read)
        claims = self._decode(token, "access")
        return self._current(int(claims["sub"]), via="jwt", read=read)

    def _current(self, user_id: int, *, via: str, read: bool) -> tuple[Principal, User] | None:
        if read:
            user = self.users.current(user_id)
        else:
            known, user = self.users.recent(user_id)
            if not known:
                return None
        if user is None:
            raise Unauthorized("The account of this token no longer exists", code="INVALID_TOKEN")
        return Principal(user_id=user.id, role=user.role, via=via), user

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
        """The token's claims, checked: its signature, algorithm and claims once, then (the
        very same text can only be the same token) its expiry on each use."""
        known = self._verified.get((kind, token))
        if known is not None:
            if known["exp"] <= time.time():
                raise Unauthorized("Token has expired", code="TOKEN_EXPIRED")
            return known
        claims = self._verify(token, kind)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[(kind, token)] = claims
        return claims

    def _verify(self, token: str, kind: str) -> dict[str, Any]:
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
    def _token_user(self, name: str) -> int:
        """The id of API token ``name``'s service user, created on first use."""
        if name not in self._token_users:
            user = self.users.get_by_token_name(name) or self._create_token_user(name)
            self._token_users[name] = user.id
        return self._token_users[name]

    def _create_token_user(self, name: str) -> User:
        email = f"{name}@{TOKEN_DOMAIN}"
        # Earlier versions kept the token's user under its e-mail lock; adopt it only if it
        # is that service user (no password: no registration can produce one).
        legacy = self.users.get_by_email(email)
        if legacy is not None and legacy.password_hash == _NO_LOGIN:
            created = legacy if self.users.bind_token_user(name, legacy.id) else None
        else:
            created = self.users.create_token_user(
                name, email=email, password_hash=_NO_LOGIN, role="user", full_name=name
            )
        # None: another request made it first
        user = created or self.users.get_by_token_name(name)
        if user is None:
            raise RuntimeError(f"the service user of API token {name!r} could not be created")
        return user
