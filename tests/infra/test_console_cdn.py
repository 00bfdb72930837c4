"""One origin in AWS (infra/constructs/console.py): the CloudFront distribution in the
synthesized template, which path goes to which origin, the console's bucket and its
upload, and the WebSocket paths' CloudFront Function run in Node against recorded
viewer-request events (tests/infra/cloudfront/)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
cdk = pytest.importorskip("aws_cdk")
from aws_cdk import aws_apigateway as apigw  # noqa: E402
from aws_cdk import aws_apigatewayv2 as apigwv2  # noqa: E402
from aws_cdk import aws_cloudfront as cloudfront  # noqa: E402
from aws_cdk.assertions import Annotations, Match, Template  # noqa: E402

from infra.config import load  # noqa: E402
from infra.constructs.console import (  # noqa: E402
    API_PATHS,
    WEBSOCKET_HEADERS,
    WEBSOCKET_PATHS,
    Console,
    ws_rewrite_code,
)
from shared.settings import ResourceNames  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
ENV = "dev"  # one environment: the construct reads nothing per environment but its name
CLOUDFRONT_TESTS = ROOT / "tests" / "infra" / "cloudfront"
CACHING_DISABLED = cloudfront.CachePolicy.CACHING_DISABLED.cache_policy_id
CACHING_OPTIMIZED = cloudfront.CachePolicy.CACHING_OPTIMIZED.cache_policy_id
ALL_VIEWER_EXCEPT_HOST = (
    cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER.origin_request_policy_id
)
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}


@pytest.fixture(scope="module")
def t(synth):
    """The app stack of ``ENV``, from the one synthesis of the app (tests/infra/conftest.py)."""
    return synth["t"][f"crucible-{ENV}-app"]


def _only(t: Template, kind: str) -> tuple[str, dict]:
    found = t.find_resources(kind)
    assert len(found) == 1, (kind, list(found))
    (name, resource), *_ = found.items()
    return name, resource["Properties"]


def _config(t: Template) -> dict:
    return _only(t, "AWS::CloudFront::Distribution")[1]["DistributionConfig"]


def _origins(t: Template) -> dict[str, str]:
    """Origin id -> what it is: console (S3), rest, websocket."""
    out = {}
    for origin in _config(t)["Origins"]:
        text = json.dumps(origin["DomainName"])
        if "S3OriginConfig" in origin:
            out[origin["Id"]] = "console"
        elif '"RestApi' in text:
            out[origin["Id"]] = "rest"
        elif '"WebSocketApi' in text:
            out[origin["Id"]] = "websocket"
    assert sorted(out.values()) == ["console", "rest", "websocket"], _config(t)["Origins"]
    return out


def _route(t: Template, path: str) -> tuple[str, dict]:
    """Which origin CloudFront sends ``path`` to, and the behaviour that does: the first
    cache behaviour whose pattern matches (``*``: any characters, ``/`` included;
    case-sensitive), else the default."""
    config, origins = _config(t), _origins(t)
    for behaviour in config["CacheBehaviors"]:
        if fnmatch.fnmatchcase(path, behaviour["PathPattern"]):
            return origins[behaviour["TargetOriginId"]], behaviour
    return origins[config["DefaultCacheBehavior"]["TargetOriginId"]], config["DefaultCacheBehavior"]


def _api_paths() -> list[str]:
    """Every path the REST API serves (its OpenAPI document), with a sample value for
    each path parameter."""
    from functions.api.app import create_app
    from shared.settings import load_settings

    app = create_app(load_settings())
    paths = [re.sub(r"\{[^}]+\}", "5", p) for p in app.openapi()["paths"]]
    return [*paths, "/openapi.json"]


# --- the console: a private bucket, read by this distribution only ------------------------


def test_console_bucket_is_private_and_read_through_origin_access_control(t):
    config = _config(t)
    origins = _origins(t)
    default = config["DefaultCacheBehavior"]
    assert origins[default["TargetOriginId"]] == "console"
    assert config["DefaultRootObject"] == "index.html"
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    assert set(default["AllowedMethods"]) == {"GET", "HEAD"}

    oac_name, oac = _only(t, "AWS::CloudFront::OriginAccessControl")
    assert oac["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert oac["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert oac["OriginAccessControlConfig"]["SigningProtocol"] == "sigv4"
    (s3_origin,) = [o for o in config["Origins"] if "S3OriginConfig" in o]
    assert s3_origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_name, "Id"]}
    assert s3_origin["S3OriginConfig"].get("OriginAccessIdentity", "") == ""  # no legacy OAI

    bucket_ref = s3_origin["DomainName"]["Fn::GetAtt"][0]
    bucket = t.find_resources("AWS::S3::Bucket")[bucket_ref]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert "WebsiteConfiguration" not in bucket

    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in t.find_resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_ref}
    ]
    allows = [s for s in policy if s["Effect"] == "Allow"]
    distribution_id = next(iter(t.find_resources("AWS::CloudFront::Distribution")))
    # the only grant: this distribution (not any CloudFront distribution) may read objects
    (allow,) = allows
    assert allow["Action"] == "s3:GetObject"
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    source = json.dumps(allow["Condition"]["StringEquals"]["AWS:SourceArn"])
    assert ":distribution/" in source and f'"Ref": "{distribution_id}"' in source
    denies = [s for s in policy if s["Effect"] == "Deny"]
    assert denies and denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_console_answers_carry_the_security_headers(t):
    from shared.console import console_csp

    config = _config(t)
    policy_ref = config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"]["Ref"]
    policy = t.find_resources("AWS::CloudFront::ResponseHeadersPolicy")[policy_ref]
    headers = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    # the policy the local stack serves the console with, and where presigned uploads go
    uploads = ResourceNames.for_stage(ENV).uploads_bucket
    s3 = f"https://{uploads}.s3.amazonaws.com https://{uploads}.s3.us-east-1.amazonaws.com"
    csp = console_csp(s3.split())
    assert f"connect-src 'self' {s3};" in csp
    assert headers["ContentSecurityPolicy"] == {"ContentSecurityPolicy": csp, "Override": True}
    hsts = headers["StrictTransportSecurity"]
    assert hsts["AccessControlMaxAgeSec"] >= 365 * 86400 and hsts["IncludeSubdomains"]
    assert hsts["Override"] is True
    assert headers["ContentTypeOptions"] == {"Override": True}  # nosniff
    assert headers["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert headers["ReferrerPolicy"] == {"ReferrerPolicy": "no-referrer", "Override": True}


# --- which path goes where ---------------------------------------------------------------


def test_every_api_path_reaches_the_rest_api(t):
    paths = _api_paths()
    assert {"/train/start", "/inference", "/config", "/submissions", "/leaderboard"} <= set(paths)
    assert "/jobs" in paths and "/jobs/5/status" in paths  # seed 004's (and seed 000's)
    wrong = {p: _route(t, p)[0] for p in paths if _route(t, p)[0] != "rest"}
    assert wrong == {}, f"served by another origin than the REST API: {wrong}"
    # the docs pages run a CDN's scripts: never on the origin that keeps the console's token
    for page in ("/docs", "/docs/oauth2-redirect", "/redoc"):
        assert _route(t, page)[0] == "console", page


def test_websocket_paths_reach_the_websocket_stage_and_the_rest_the_console(t):
    for path in ("/ws", "/ws/workflows/5", "/ws/workflows/wf_01-AB", "/api/v1/ws"):
        assert _route(t, path)[0] == "websocket", path
    # the console's build and anything unknown: the bucket (hash routing: no SPA fallback)
    for path in ("/", "/index.html", "/assets/index-3f2a9c.js", "/favicon.ico", "/ws/"):
        assert _route(t, path)[0] == "console", path
    patterns = [b["PathPattern"] for b in _config(t)["CacheBehaviors"]]
    assert patterns == [*WEBSOCKET_PATHS, *API_PATHS]
    assert patterns.index("/api/v1/ws") < patterns.index("/api/*")


def test_api_behaviours_cache_nothing_and_pass_every_header_but_host(t):
    origins = _origins(t)
    api = [b for b in _config(t)["CacheBehaviors"] if origins[b["TargetOriginId"]] == "rest"]
    assert [b["PathPattern"] for b in api] == list(API_PATHS)
    for b in api:
        assert b["CachePolicyId"] == CACHING_DISABLED, b["PathPattern"]
        assert b["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST, b["PathPattern"]
        assert set(b["AllowedMethods"]) == ALL_METHODS, b["PathPattern"]
        assert b["ViewerProtocolPolicy"] == "https-only"
        # only the viewer's address is added (tests/infra/test_admission.py)
        (association,) = b["FunctionAssociations"]
        assert association["FunctionARN"]["Fn::GetAtt"][0].startswith("ConsoleViewerAddress")
    (rest,) = [o for o in _config(t)["Origins"] if origins[o["Id"]] == "rest"]
    # the stage's path in front of every request (the API's routes start at its root)
    assert "RestApiDeploymentStage" in json.dumps(rest["OriginPath"])
    assert rest["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"


def test_websocket_behaviours_forward_the_handshake_and_rewrite_the_path(t):
    origins = _origins(t)
    behaviours = _config(t)["CacheBehaviors"]
    ws = [b for b in behaviours if origins[b["TargetOriginId"]] == "websocket"]
    assert [b["PathPattern"] for b in ws] == list(WEBSOCKET_PATHS)
    ((fn_name, fn),) = [
        (name, f["Properties"])
        for name, f in t.find_resources("AWS::CloudFront::Function").items()
        if name.startswith("ConsoleWebSocketRewrite")
    ]
    policies = t.find_resources("AWS::CloudFront::OriginRequestPolicy")
    for b in ws:
        assert b["CachePolicyId"] == CACHING_DISABLED
        assert set(b["AllowedMethods"]) == {"GET", "HEAD"}
        assert b["FunctionAssociations"] == [
            {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": [fn_name, "FunctionARN"]}}
        ]
        policy = policies[b["OriginRequestPolicyId"]["Ref"]]["Properties"]
        config = policy["OriginRequestPolicyConfig"]
        assert config["HeadersConfig"] == {
            "HeaderBehavior": "whitelist",
            "Headers": list(WEBSOCKET_HEADERS),
        }
        assert {"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol"} <= set(
            config["HeadersConfig"]["Headers"]
        )
        assert config["QueryStringsConfig"] == {"QueryStringBehavior": "all"}  # ?token=, topic
        assert config["CookiesConfig"] == {"CookieBehavior": "none"}
    # only the WebSocket paths are rewritten
    assert all(
        fn_name not in json.dumps(b.get("FunctionAssociations")) for b in behaviours if b not in ws
    )
    assert "FunctionAssociations" not in _config(t)["DefaultCacheBehavior"]

    # the function: JS 2.0, published, the deployed stage's path in its code
    assert fn["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert fn["AutoPublish"] is True
    (stage,) = t.find_resources("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["StageName"] == ENV
    assert fn["FunctionCode"] == ws_rewrite_code(ENV)
    assert f'var STAGE_PATH = "/{ENV}";' in fn["FunctionCode"]
    assert len(fn["FunctionCode"].encode()) <= 10 * 1024  # CloudFront Functions' size limit

    (origin,) = [o for o in _config(t)["Origins"] if origins[o["Id"]] == "websocket"]
    assert "OriginPath" not in origin  # the function's uri is the whole path
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    domain = json.dumps(origin["DomainName"])
    assert ".execute-api." in domain and '"Ref": "WebSocketApi' in domain


def test_console_url_is_an_output_and_cdk_nag_passes(synth, t):
    outputs = t.find_outputs("ConsoleUrl")
    assert "DomainName" in json.dumps(outputs)
    report = json.loads((synth["out"] / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success" and plugin["violations"] == []
    suppressed = [
        v
        for plugin in report["pluginReports"]
        for v in plugin.get("suppressedViolations", [])
        if "/Console" in json.dumps(v) or "CDKBucketDeployment" in json.dumps(v)
    ]
    rules = {v["ruleName"].split("[")[0] for v in suppressed}
    assert {f"AwsSolutions-CFR{n}" for n in (1, 2, 3, 4)} <= rules
    assert all(len(v["reason"]) > 40 for v in suppressed)


# --- the console build's upload (a small stack of its own: no need for the whole app) ---


def _console_stack(dist) -> cdk.Stack:
    app = cdk.App()
    stack = cdk.Stack(app, "ConsoleOnly", env=cdk.Environment(region="us-east-1"))
    rest = apigw.RestApi(stack, "RestApi", deploy_options=apigw.StageOptions(stage_name=ENV))
    rest.root.add_method("GET", apigw.MockIntegration())
    ws = apigwv2.WebSocketApi(stack, "WebSocketApi")
    stage = apigwv2.WebSocketStage(stack, "Stage", web_socket_api=ws, stage_name=ENV)
    (env,) = load({ENV: {"removal_policy": "destroy"}}).values()
    Console(
        stack,
        "Console",
        env=env,
        api=SimpleNamespace(api=rest),
        websocket=SimpleNamespace(api=ws, stage=stage),
        dist=dist,
    )
    return stack


def _uploads(t: Template) -> list[dict]:
    return [r["Properties"] for r in t.find_resources("Custom::CDKBucketDeployment").values()]


def test_the_build_is_uploaded_with_index_revalidated_and_assets_kept(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><script src='./assets/index-1a.js'>")
    (tmp_path / "assets" / "index-1a.js").write_text("console.log(1)")
    stack = _console_stack(tmp_path)
    t = Template.from_stack(stack)
    uploads = sorted(_uploads(t), key=lambda u: "Include" in u)
    assert len(uploads) == 2
    pages, assets = uploads
    assert pages["Exclude"] == ["assets/*"] and "Include" not in pages
    assert pages["SystemMetadata"]["cache-control"] == "no-cache"
    assert assets["Exclude"] == ["*"] and assets["Include"] == ["assets/*"]
    assert assets["SystemMetadata"]["cache-control"] == "public, max-age=31536000, immutable"
    for u in uploads:
        assert u["Prune"] is True
        assert u["RetainOnDelete"] is False  # destroy: emptied, so the bucket can go
        assert u["DestinationBucketName"]["Ref"].startswith("ConsoleBucket")
        assert u["SourceObjectKeys"] == uploads[0]["SourceObjectKeys"]  # one asset: the build
    Annotations.from_stack(stack).has_no_warning("*", Match.string_like_regexp("index.html"))


def test_without_a_build_synth_warns_and_deploys_a_page_that_says_so(tmp_path):
    stack = _console_stack(tmp_path / "dist")  # no such directory
    t = Template.from_stack(stack)
    (upload,) = _uploads(t)
    assert upload["SystemMetadata"] == {
        "cache-control": "no-cache",
        "content-type": "text/html; charset=utf-8",
    }
    Annotations.from_stack(stack).has_warning(
        "/ConsoleOnly/Console", Match.string_like_regexp("no index.html.*make console")
    )
    # the distribution is whole without it
    _only(t, "AWS::CloudFront::Distribution")


# --- the WebSocket paths' function, run in Node ----------------------------------------


def test_ws_rewrite_against_recorded_viewer_requests(tmp_path):
    events = sorted((CLOUDFRONT_TESTS / "events").glob("*.json"))
    uris = [json.loads(e.read_text())["event"]["request"]["uri"] for e in events]
    # a recorded request for each path the function is on
    for pattern in WEBSOCKET_PATHS:
        assert any(fnmatch.fnmatchcase(u, pattern) for u in uris), pattern
    node = shutil.which("node")
    assert node, "Node.js runs the CDK app; it must be on PATH"
    code = tmp_path / "ws_rewrite.js"
    code.write_text(ws_rewrite_code(ENV))  # exactly what the stack deploys for dev
    run = subprocess.run(
        [node, "--test", str(CLOUDFRONT_TESTS / "ws_rewrite.test.mjs")],
        env={**os.environ, "CRUCIBLE_WS_REWRITE_JS": str(code)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert f"# pass {len(events) + 1}" in run.stdout and "# fail 0" in run.stdout, run.stdout


def test_ws_rewrite_code_names_its_stage_once():
    assert ws_rewrite_code("prod").count('"/prod"') == 1
    assert "__STAGE__" not in ws_rewrite_code("staging")
