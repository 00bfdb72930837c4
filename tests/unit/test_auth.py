"""Token handling in AuthService, over an in-memory user repository (pure logic)."""

import base64
import json
import time

import jwt
import pytest

from shared.errors import Conflict, Forbidden, NotFound, Unauthorized
from shared.models import Page, Principal, User
from shared.services.auth import AuthService
from shared.settings import load_settings

SECRET = "s" * 40


class MemoryUsers:
    def __init__(self):
        self.rows: dict[int, User] = {}

    def create(self, *, email, password_hash, role, full_name):
        if self.get_by_email(email):
            raise Conflict("taken", field="email")
        user = User(
            id=len(self.rows) + 1,
            email=email,
            role=role,
            full_name=full_name,
            password_hash=password_hash,
        )
        self.rows[user.id] = user
        return user

    def get(self, user_id):
        return self.rows.get(user_id)

    def get_by_email(self, email):
        return next((u for u in self.rows.values() if u.email.lower() == email.lower()), None)

    def list(self, *, skip, limit):
        users = sorted(self.rows.values(), key=lambda u: u.id)
        return Page[User](total=len(users), items=users[skip : skip + limit])

    def set_role(self, user_id, role):
        self.rows[user_id] = self.rows[user_id].model_copy(update={"role": role})
        return self.rows[user_id]


@pytest.fixture
def auth():
    return AuthService(MemoryUsers(), load_settings(api_tokens=["ci=ci-token-123456"]), SECRET)


def test_register_login_and_tokens(auth):
    user = auth.register(email="a@example.com", password="password123")
    assert user.role == "user" and user.password_hash.startswith("$argon2")
    assert auth.authenticate_password("A@example.com", "password123").id == user.id
    pair = auth.issue(user)
    assert pair.expires_in == 3600
    assert auth.authenticate(pair.access_token) == Principal(user_id=user.id, role="user")
    access, ttl = auth.refresh(pair.refresh_token)
    assert ttl == 3600 and auth.authenticate(access).user_id == user.id


def test_wrong_password_and_unknown_user_read_the_same(auth):
    auth.register(email="a@example.com", password="password123")
    for email, pw in (("a@example.com", "nope-nope"), ("ghost@example.com", "password123")):
        with pytest.raises(Unauthorized, match="Incorrect e-mail or password"):
            auth.authenticate_password(email, pw)


def test_admin_cannot_be_self_registered(auth):
    with pytest.raises(Forbidden):
        auth.register(email="a@example.com", password="password123", role="admin")
    assert (
        auth.register(email="r@example.com", password="password123", role="researcher").role
        == "researcher"
    )


def _b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_forged_expired_none_and_malformed_tokens_are_refused(auth):
    user = auth.register(email="a@example.com", password="password123")
    now = int(time.time())
    claims = {"sub": str(user.id), "role": "admin", "type": "access", "iat": now, "exp": now + 60}
    forged = jwt.encode(claims, "another-secret-" + "x" * 30, algorithm="HS256")
    expired = jwt.encode({**claims, "iat": now - 120, "exp": now - 60}, SECRET, algorithm="HS256")
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    no_type = jwt.encode(
        {k: v for k, v in claims.items() if k != "type"}, SECRET, algorithm="HS256"
    )
    refresh_as_access = auth.issue(user).refresh_token
    for bad in (forged, expired, alg_none, no_type, refresh_as_access, "garbage", "a.b.c", ""):
        with pytest.raises(Unauthorized):
            auth.authenticate(bad)
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(expired)


def test_access_token_cannot_refresh(auth):
    user = auth.register(email="a@example.com", password="password123")
    with pytest.raises(Unauthorized):
        auth.refresh(auth.issue(user).access_token)


def test_api_token_acts_as_its_own_service_user(auth):
    p = auth.authenticate("ci-token-123456")
    assert p.via == "api_token" and p.role == "user"
    assert auth.authenticate("ci-token-123456").user_id == p.user_id
    with pytest.raises(Unauthorized):
        auth.authenticate_password("ci@api-tokens.crucible", "!")


def test_reading_other_users(auth):
    a = auth.register(email="a@example.com", password="password123")
    b = auth.register(email="b@example.com", password="password123")
    r = auth.register(email="r@example.com", password="password123", role="researcher")
    as_a = Principal(user_id=a.id, role="user")
    with pytest.raises(NotFound):
        auth.get_user(as_a, b.id)
    with pytest.raises(Forbidden):
        auth.list_users(as_a, skip=0, limit=10)
    assert auth.get_user(Principal(user_id=r.id, role="researcher"), b.id).id == b.id
    with pytest.raises(Forbidden):
        auth.set_role(as_a, a.id, "admin")
    assert (
        auth.set_role(Principal(user_id=99, role="admin"), a.id, "researcher").role == "researcher"
    )
