"""The REST API's Lambda authorizer (functions/api/authorizer.py) with real JWTs and a
fake key adapter, and the key adapter (shared/adapters/apikeys.py) over API Gateway's
own protocol against the embedded emulator."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from botocore.exceptions import ClientError

from functions.api import authorizer
from shared.adapters.apikeys import ApiGatewayUsageKeys
from shared.models import User
from shared.plans import build_plans
from shared.services.auth import AuthService
from shared.services.plans import PlanService
from shared.settings import load_settings
from shared.wiring import build

SECRET = "k" * 48
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/api/v1/training/jobs"


class Users:
    """The user repository as the authorizer uses it: users by id, a plan each, and
    API tokens' service users."""

    def __init__(self) -> None:
        self.rows: dict[int, User] = {}
        self.tokens: dict[str, int] = {}  # API token name -> its service user

    def add(self, user_id: int, plan: str = "free", role: str = "user") -> User:
        self.rows[user_id] = User(
            id=user_id, email=f"u{user_id}@example.com", role=role, password_hash="x", plan=plan
        )
        return self.rows[user_id]

    def get(self, user_id):
        return self.rows.get(user_id)

    current = get

    def recent(self, user_id):
        return (user_id in self.rows, self.rows.get(user_id))

    def get_by_token_name(self, name):
        return self.rows.get(self.tokens.get(name))

    def get_by_email(self, email):
        return None

    def create_token_user(self, name, *, email, password_hash, role, full_name):
        if name in self.tokens:
            return None
        self.tokens[name] = user_id = max(self.rows, default=0) + 1
        return self.add(user_id, role=role)


class FakeKeys:
    """The UsageKeys port: one key per user, in one plan; what it was asked, in order."""

    def __init__(self) -> None:
        self.plan_of: dict[int, str] = {}
        self.asked: list[tuple[int, str]] = []

    def key_for(self, user_id: int, plan: str) -> str:
        self.asked.append((user_id, plan))
        self.plan_of[user_id] = plan
        return f"key-of-user-{user_id}-000000000000"


@pytest.fixture
def world(monkeypatch):
    settings = load_settings(api_tokens=["ci=ci-token-123456"])
    users, keys = Users(), FakeKeys()
    c = build(settings)
    c.auth = AuthService(users, settings, SECRET)
    c.plans = PlanService(users, None, None, None, build_plans())
    c.usage_keys = keys
    monkeypatch.setattr(authorizer, "container", lambda: c)
    return c, users, keys


def event(token: str, scheme: str = "Bearer") -> dict:
    return {
        "type": "TOKEN",
        "authorizationToken": f"{scheme} {token}",
        "methodArn": METHOD_ARN,
    }


def test_a_signed_in_user_is_allowed_on_this_stage_with_their_key_and_plan(world):
    c, users, keys = world
    user = users.add(7, plan="pro")
    answer = authorizer.handler(event(c.auth.issue(user).access_token), None)
    assert answer["principalId"] == "7"
    assert answer["usageIdentifierKey"] == "key-of-user-7-000000000000"
    assert answer["context"] == {"user_id": 7, "plan": "pro"}
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        # every method of this API stage: the answer is cached per token
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*",
    }
    assert keys.asked == [(7, "pro")]
    # the scheme in any case, as the API takes it
    assert authorizer.handler(event(c.auth.issue(user).access_token, "bearer"), None)


def test_a_static_api_token_acts_as_its_service_user_made_on_first_use(world):
    _, users, keys = world
    users.add(3)
    answer = authorizer.handler(event("ci-token-123456"), None)
    assert answer["context"] == {"user_id": 4, "plan": "free"}
    assert users.tokens == {"ci": 4} and users.rows[4].role == "user"
    assert authorizer.handler(event("ci-token-123456"), None)["principalId"] == "4"
    assert keys.asked == [(4, "free"), (4, "free")]


def _claims(user_id: int, **changes) -> dict:
    now = int(time.time())
    claims = {"sub": str(user_id), "role": "user", "type": "access", "iat": now, "exp": now + 60}
    return {**claims, **changes}


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(7, iat=int(time.time()) - 120, exp=int(time.time()) - 60), SECRET),
        jwt.encode(_claims(7), "another-secret-" + "x" * 40),  # forged
        jwt.encode(_claims(7, type="refresh"), SECRET),  # not an access token
        jwt.encode(_claims(99), SECRET),  # a user who no longer exists
        "not-a-jwt",
    ],
    ids=["expired", "forged", "refresh", "deleted-user", "garbage"],
)
def test_bad_expired_or_unknown_tokens_are_unauthorized(world, token):
    _, users, keys = world
    users.add(7)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(event(token), None)
    assert keys.asked == []  # no key is made for a refused token


@pytest.mark.parametrize("header", ["", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer"])
def test_a_missing_or_other_scheme_is_unauthorized(world, header):
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler({"authorizationToken": header, "methodArn": METHOD_ARN}, None)


def test_a_plan_change_moves_the_key_on_the_next_authorization(world):
    c, users, keys = world
    user = users.add(5, plan="free")
    token = c.auth.issue(user).access_token
    assert authorizer.handler(event(token), None)["context"]["plan"] == "free"
    users.add(5, plan="enterprise")  # an administrator changed it
    assert authorizer.handler(event(token), None)["context"]["plan"] == "enterprise"
    assert keys.asked == [(5, "free"), (5, "enterprise")] and keys.plan_of[5] == "enterprise"


def test_a_plan_name_the_platform_no_longer_has_counts_as_free(world):
    c, users, _ = world
    user = users.add(6, plan="gold")
    answer = authorizer.handler(event(c.auth.issue(user).access_token), None)
    assert answer["context"]["plan"] == "free"


def test_stage_methods_refuses_what_is_not_a_method_arn():
    with pytest.raises(ValueError, match="not a method ARN"):
        authorizer.stage_methods("arn:aws:lambda:us-east-1:1:function:x")


# --- the key adapter, against the emulator's API Gateway --------------------------------


@pytest.fixture
def gateway(container):
    """A fresh stage's three usage plans in the emulator, and a client counting its calls."""
    client = container.client("apigateway")
    stage = f"s{uuid.uuid4().hex[:8]}"
    plans = {
        tier: client.create_usage_plan(name=f"crucible-{stage}-{tier}")["id"]
        for tier in ("free", "pro", "enterprise")
    }
    calls: list[str] = []
    client.meta.events.register(
        "before-call.api-gateway", lambda model, **_: calls.append(model.name)
    )

    def adapter() -> ApiGatewayUsageKeys:  # one authorizer process
        return ApiGatewayUsageKeys(client, stage=stage, usage_plans=plans, secret=SECRET)

    def plans_holding(key_value: str) -> set[str]:
        held = set()
        for tier, plan_id in plans.items():
            for item in client.get_usage_plan_keys(usagePlanId=plan_id)["items"]:
                if item["value"] == key_value:
                    held.add(tier)
        return held

    def keys_named(name: str) -> list[dict]:
        page = client.get_api_keys(nameQuery=name, includeValues=True)
        return [k for k in page["items"] if k["name"] == name]

    return adapter, plans_holding, keys_named, calls


def test_a_users_key_is_made_once_and_found_again_by_every_authorizer(gateway):
    adapter, plans_holding, keys_named, calls = gateway
    first = adapter()
    value = first.key_for(1, "free")
    assert value == first.value(1) and len(value) == 64
    assert [k["value"] for k in keys_named(first.name(1))] == [value]
    assert plans_holding(value) == {"free"}
    # another warm authorizer finds it by name: no second key
    assert adapter().key_for(1, "free") == value
    assert len(keys_named(first.name(1))) == 1
    # user 10's name starts with user 1's query but is not user 1's key
    ten = adapter().key_for(10, "free")
    assert ten != value and adapter().key_for(1, "free") == value
    # once bound, the process asks API Gateway nothing more
    assert "CreateApiKey" in calls and "CreateUsagePlanKey" in calls
    calls.clear()
    assert first.key_for(1, "free") == value and calls == []


def test_a_plan_change_moves_the_key_out_of_the_old_plan(gateway):
    adapter, plans_holding, _, _ = gateway
    warm = adapter()
    value = warm.key_for(2, "free")
    assert warm.key_for(2, "pro") == value
    assert plans_holding(value) == {"pro"}
    # a cold authorizer that meets the user on another plan moves it too
    assert adapter().key_for(2, "enterprise") == value
    assert plans_holding(value) == {"enterprise"}


def test_two_authorizers_creating_one_users_key_at_once_end_with_one_key(gateway):
    """API Gateway keeps key values unique: the loser of the race is refused
    (ConflictException) and takes the winner's key, found by name."""
    adapter, plans_holding, keys_named, _ = gateway
    loser, winner = adapter(), adapter()
    real = loser._client

    class RaceLost:
        def __getattr__(self, name):
            return getattr(real, name)

        def create_api_key(self, **params):
            winner.key_for(4, "pro")  # the other authorizer made it in the meantime
            raise ClientError(
                {"Error": {"Code": "ConflictException", "Message": "API Key already exists"}},
                "CreateApiKey",
            )

    loser._client = RaceLost()
    value = loser.key_for(4, "pro")
    assert [k["value"] for k in keys_named(loser.name(4))] == [value]
    assert plans_holding(value) == {"pro"}


def test_a_plan_without_a_usage_plan_is_refused_by_name(gateway):
    adapter, *_ = gateway
    with pytest.raises(ValueError, match="no usage plan for the 'gold' plan"):
        adapter().key_for(9, "gold")


def test_the_container_reads_the_usage_plans_from_the_environment(monkeypatch):
    monkeypatch.delenv("CRUCIBLE_USAGE_PLANS", raising=False)
    c = build(load_settings(jwt_secret=SECRET))
    with pytest.raises(RuntimeError, match="CRUCIBLE_USAGE_PLANS"):
        _ = c.usage_keys
    monkeypatch.setenv("CRUCIBLE_USAGE_PLANS", json.dumps({"free": "p1"}))
    keys = build(load_settings(jwt_secret=SECRET)).usage_keys
    with pytest.raises(ValueError, match="'pro' plan"):
        keys.key_for(1, "pro")  # refused before any call: only 'free' is known
