"""Token handling in AuthService, over an in-memory user repository (pure logic)."""

import base64
import json
import time

import jwt
import pytest

from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.models import Page, Principal, User
from shared.services.auth import AuthService
from shared.settings import load_settings

SECRET = "s" * 40


class MemoryUsers:
    """The UserRepository port in memory: users named by an e-mail lock or a token lock."""

    def __init__(self):
        self.rows: dict[int, User] = {}
        self.emails: dict[str, int] = {}
        self.tokens: dict[str, int] = {}

    def _add(self, email, password_hash, role, full_name):
        user = User(
            id=len(self.rows) + 1,
            email=email,
            role=role,
            full_name=full_name,
            password_hash=password_hash,
        )
        self.rows[user.id] = user
        return user

    def create(self, *, email, password_hash, role, full_name):
        if email.lower() in self.emails:
            raise Conflict("taken", field="email")
        user = self._add(email, password_hash, role, full_name)
        self.emails[email.lower()] = user.id
        return user

    def create_token_user(self, name, *, email, password_hash, role, full_name):
        if name in self.tokens:
            return None
        user = self._add(email, password_hash, role, full_name)
        self.tokens[name] = user.id
        return user

    def bind_token_user(self, name, user_id):
        return self.tokens.setdefault(name, user_id) == user_id

    def get_by_token_name(self, name):
        return self.rows.get(self.tokens.get(name))

    def get(self, user_id):
        return self.rows.get(user_id)

    current = get

    def get_by_email(self, email):
        return self.rows.get(self.emails.get(email.lower()))

    def list(self, *, skip, limit, cursor=None):
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


def test_self_registration_gives_user_and_an_admin_grants_more(auth):
    for role in ("researcher", "admin"):
        with pytest.raises(Forbidden, match="an administrator grants") as refused:
            auth.register(email=f"{role}@example.com", password="password123", role=role)
        assert refused.value.field == "role"
    assert auth.users.rows == {}  # a refused registration stores nothing
    # The seed's open behaviour, by configuration; admin never.
    open_auth = AuthService(
        MemoryUsers(), load_settings(self_register_roles=["user", "researcher", "admin"]), SECRET
    )
    assert open_auth.register(email="r@example.com", password="password123", role="researcher")
    with pytest.raises(Forbidden):
        open_auth.register(email="a@example.com", password="password123", role="admin")


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


def test_no_registration_claims_an_api_tokens_identity(auth):
    with pytest.raises(InvalidInput, match="reserved") as refused:
        auth.register(email="ci@API-Tokens.crucible", password="password123")
    assert refused.value.field == "email" and auth.users.rows == {}
    # Even an account holding the address (made before registration refused it) is not
    # the token's: token principals are found by the token's name, never by e-mail.
    squatter = auth.users.create(
        email="ci@api-tokens.crucible", password_hash="$argon2id$x", role="user", full_name=None
    )
    p = auth.authenticate("ci-token-123456")
    assert p.user_id != squatter.id and auth.users.tokens == {"ci": p.user_id}


def test_a_service_user_made_by_earlier_versions_is_kept():
    users = MemoryUsers()
    legacy = users.create(
        email="ci@api-tokens.crucible", password_hash="!", role="user", full_name="ci"
    )
    auth = AuthService(users, load_settings(api_tokens=["ci=ci-token-123456"]), SECRET)
    assert auth.authenticate("ci-token-123456").user_id == legacy.id


def test_api_token_containing_equals_signs():
    auth = AuthService(MemoryUsers(), load_settings(api_tokens=["ci=abc=def==123"]), SECRET)
    p = auth.authenticate("abc=def==123")
    assert p.via == "api_token" and auth.users.get(p.user_id).full_name == "ci"
    for wrong in ("def==123", "ci=abc=def==123"):
        with pytest.raises(Unauthorized):
            auth.authenticate(wrong)


def test_tokens_follow_the_users_current_role_and_existence(auth):
    user = auth.register(email="r@example.com", password="password123")
    auth.set_role(Principal(user_id=99, role="admin"), user.id, "researcher")
    token = auth.issue(auth.users.get(user.id)).access_token
    assert auth.authenticate(token).role == "researcher"
    auth.set_role(Principal(user_id=99, role="admin"), user.id, "user")  # demoted
    assert auth.authenticate(token).role == "user"
    with pytest.raises(Forbidden):
        auth.list_users(auth.authenticate(token), skip=0, limit=10)
    del auth.users.rows[user.id]  # deleted
    with pytest.raises(Unauthorized, match="no longer exists"):
        auth.authenticate(token)


def test_reading_other_users(auth):
    a = auth.register(email="a@example.com", password="password123")
    b = auth.register(email="b@example.com", password="password123")
    r = auth.register(email="r@example.com", password="password123")
    r = auth.set_role(Principal(user_id=99, role="admin"), r.id, "researcher")
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
