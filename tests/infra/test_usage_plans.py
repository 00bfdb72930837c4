"""Per-user usage plans on the REST API (issue 16): one usage plan per plan tier on the
stage, keys from a Lambda authorizer (key source AUTHORIZER), on the routes that start
work only, and an authorizer that may touch its own plans' keys and nothing else."""

import json
import re

import pytest

cdk = pytest.importorskip("aws_cdk")

from infra.config import ConfigError, load  # noqa: E402
from infra.constructs.api import (  # noqa: E402
    AUTHORIZER_CACHE_S,
    EXPENSIVE_ROUTES,
    usage_plan_limits,
)
from shared.plans import DEFAULT_PLANS, build_plans  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.infra.test_stacks import _secrets, _statements, _table_grants  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")
AUTHORIZER = "functions.api.authorizer.handler"
CONFIG = load(json.loads((ROOT / "cdk.json").read_text())["context"]["crucible:environments"])


def app_(synth, env):
    return synth["t"][f"crucible-{env}-app"]


def one(t, kind: str) -> tuple[str, dict]:
    (found,) = t.find_resources(kind).items()
    return found[0], found[1]["Properties"]


def methods_by_route(t) -> dict[tuple[str, str], dict]:
    """Every REST API method as (HTTP method, path) -> its properties."""
    resources = t.find_resources("AWS::ApiGateway::Resource")
    api_id, _ = one(t, "AWS::ApiGateway::RestApi")

    def path(ref: dict) -> str:
        rid = ref.get("Ref")
        if rid is None:  # the root: {"Fn::GetAtt": [api, "RootResourceId"]}
            assert ref["Fn::GetAtt"] == [api_id, "RootResourceId"]
            return ""
        p = resources[rid]["Properties"]
        return f"{path(p['ParentId'])}/{p['PathPart']}"

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]) or "/"): m["Properties"]
        for m in t.find_resources("AWS::ApiGateway::Method").values()
    }


def authorizer_function(t) -> tuple[str, dict]:
    (found,) = [
        (fid, f["Properties"])
        for fid, f in t.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == AUTHORIZER
    ]
    return found


@pytest.mark.parametrize("env", ENVS)
def test_one_usage_plan_per_tier_with_its_throttle_and_daily_quota_on_the_stage(synth, env):
    t = app_(synth, env)
    api_id, _ = one(t, "AWS::ApiGateway::RestApi")
    stage_id, stage = one(t, "AWS::ApiGateway::Stage")
    assert stage["StageName"] == env
    plans = {
        p["Properties"]["UsagePlanName"]: p["Properties"]
        for p in t.find_resources("AWS::ApiGateway::UsagePlan").values()
    }
    assert set(plans) == {f"crucible-{env}-{tier}" for tier in ("free", "pro", "enterprise")}
    assert CONFIG[env].plans == DEFAULT_PLANS  # cdk.json changes none
    for tier, plan in CONFIG[env].plans.items():
        p = plans[f"crucible-{env}-{tier}"]
        assert p["Throttle"] == {
            "RateLimit": plan.requests_per_minute / 60,
            "BurstLimit": plan.requests_per_minute,
        }
        assert p["Quota"] == {"Limit": plan.requests_per_hour * 24, "Period": "DAY"}
        ((on,),) = [[{k: s[k] for k in ("ApiId", "Stage")} for s in p["ApiStages"]]]
        assert on == {"ApiId": {"Ref": api_id}, "Stage": {"Ref": stage_id}}
        assert not p["ApiStages"][0].get("Throttle")  # no method's own, the plan's
    # the figures as seed 003 gives them: free 1 a second (60 at once), 24,000 a day
    assert plans[f"crucible-{env}-free"]["Throttle"] == {"RateLimit": 1, "BurstLimit": 60}
    assert plans[f"crucible-{env}-free"]["Quota"]["Limit"] == 24_000


@pytest.mark.parametrize("env", ENVS)
def test_keys_come_from_the_authorizer_on_the_expensive_methods_only(synth, env):
    t = app_(synth, env)
    _, api = one(t, "AWS::ApiGateway::RestApi")
    assert api["ApiKeySourceType"] == "AUTHORIZER"
    authorizer_id, authorizer = one(t, "AWS::ApiGateway::Authorizer")
    assert authorizer["Type"] == "TOKEN"
    assert authorizer["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["AuthorizerResultTtlInSeconds"] == AUTHORIZER_CACHE_S == 300
    # only "Bearer <token>" (any case) reaches the function; API Gateway refuses the rest
    bearer = re.compile(authorizer["IdentityValidationExpression"])
    assert bearer.match("Bearer eyJ.x.y") and bearer.match("bearer ci-token-123456")
    assert not any(bearer.match(h) for h in ("Basic dXNlcjpw", "Bearer ", "Bearer a b", "eyJ"))
    assert f"function:crucible-{env}-authorizer/invocations" in json.dumps(authorizer)
    _, fn = authorizer_function(t)
    assert fn["FunctionName"] == f"crucible-{env}-authorizer"

    methods = methods_by_route(t)
    expensive = {(m, p) for m, p in EXPENSIVE_ROUTES}
    assert expensive <= set(methods)
    for route, m in methods.items():
        if route in expensive:
            assert m["AuthorizationType"] == "CUSTOM", route
            assert m["AuthorizerId"] == {"Ref": authorizer_id}, route
            assert m["ApiKeyRequired"] is True, route
        else:  # public routes, reads, preflights: as before, no authorizer, no key
            assert m["AuthorizationType"] == "NONE", route
            assert not m.get("ApiKeyRequired"), route
            assert "AuthorizerId" not in m, route
    # sign-in, docs and health reach the function through the root's proxy, untouched
    assert methods[("ANY", "/{proxy+}")]["AuthorizationType"] == "NONE"
    # API Gateway may invoke the authorizer, from this API's authorizers only
    permissions = [
        p["Properties"]
        for p in t.find_resources("AWS::Lambda::Permission").values()
        if "authorizers" in json.dumps(p["Properties"].get("SourceArn", ""))
    ]
    assert len(permissions) == 1
    assert f"function:crucible-{env}-authorizer" in json.dumps(permissions[0]["FunctionName"])


@pytest.mark.parametrize("env", ENVS)
def test_the_authorizer_knows_the_plans_and_may_touch_their_keys_only(synth, env):
    t = app_(synth, env)
    plan_ids = {
        p["Properties"]["UsagePlanName"].rsplit("-", 1)[1]: pid
        for pid, p in t.find_resources("AWS::ApiGateway::UsagePlan").items()
    }
    _, fn = authorizer_function(t)
    variables = fn["Environment"]["Variables"]
    text = json.dumps(variables["CRUCIBLE_USAGE_PLANS"])
    for tier, pid in plan_ids.items():
        assert f'\\"{tier}\\":\\"' in text and f'"Ref": "{pid}"' in text
    role = fn["Role"]["Fn::GetAtt"][0]
    statements = _statements(t, role)
    # the JWT secret only; users and their locks, read one item at a time, and what an
    # API token's service user is made of (as $connect makes it): nothing else
    assert _secrets(statements) == {"jwt"}
    assert _table_grants(statements) == {
        "dynamodb:GetItem": ["EMAIL#*", "TOKEN#*", "USER#*"],
        "dynamodb:PutItem": ["TOKEN#*", "USER#*"],
        "dynamodb:UpdateItem": ["COUNT#*#USER#*", "COUNTER#user#*"],
    }
    # API Gateway: keys (list by name, create), its plans' keys (add; read, remove one)
    grants: dict[str, set[str]] = {}
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if not any(a.startswith("apigateway:") for a in actions):
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            parts = r["Fn::Join"][1]
            path = "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)
            path = path.partition(":apigateway:")[2].partition("::")[2]
            for a in actions:
                grants.setdefault(a, set()).add(path)
    keys = {f"/usageplans/<{pid}>/keys" for pid in plan_ids.values()}
    assert grants == {
        "apigateway:GET": {"/apikeys"} | {f"{k}/*" for k in keys},
        "apigateway:POST": {"/apikeys"} | keys,
        "apigateway:DELETE": {f"{k}/*" for k in keys},
    }


def test_the_plans_figures_follow_the_environments_plan_limits():
    (config,) = load({"prod": {"plan_limits": {"pro": {"requests_per_minute": 120}}}}).values()
    assert config.plans["pro"].requests_per_minute == 120
    throttle, per_day = usage_plan_limits(config.plans["pro"])
    assert (throttle.rate_limit, throttle.burst_limit, per_day) == (2, 120, 240_000)
    # 0 is unlimited in the app: no throttle, no quota at the gateway either
    unlimited = build_plans({"free": {"requests_per_minute": 0, "requests_per_hour": 0}})
    assert usage_plan_limits(unlimited["free"]) == (None, None)


def test_plan_limits_naming_no_plan_or_limit_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"plan_limits.*unknown plan 'gold'"):
        load({"prod": {"plan_limits": {"gold": {"requests_per_minute": 1}}}})
    with pytest.raises(ConfigError, match=r"plan_limits.*unknown limit 'per_second'"):
        load({"prod": {"plan_limits": {"free": {"per_second": 1}}}})


@pytest.mark.parametrize("env", ENVS)
def test_the_gateways_refusals_speak_the_apps_error_body(synth, env):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in app_(synth, env).find_resources("AWS::ApiGateway::GatewayResponse").values()
    }
    expected = {
        "UNAUTHORIZED": ("401", "INVALID_TOKEN"),
        "THROTTLED": ("429", "RATE_LIMIT_EXCEEDED"),
        "QUOTA_EXCEEDED": ("429", "RATE_LIMIT_EXCEEDED"),
        "INVALID_API_KEY": ("403", "FORBIDDEN"),
    }
    assert {k: v for k, v in responses.items() if k in expected}.keys() == expected.keys()
    for kind, (status, code) in expected.items():
        r = responses[kind]
        assert r["StatusCode"] == status
        body = json.loads(r["ResponseTemplates"]["application/json"])
        assert body["code"] == body["error"]["code"] == code
        assert body["detail"] == body["error"]["message"] and body["detail"]
        assert body["request_id"] == "$context.requestId"
    assert responses["UNAUTHORIZED"]["ResponseParameters"] == {
        "gatewayresponse.header.WWW-Authenticate": "'Bearer'"
    }
    assert responses["THROTTLED"]["ResponseParameters"] == {
        "gatewayresponse.header.Retry-After": "'1'"
    }
