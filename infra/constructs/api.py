"""The REST API (API Gateway -> the FastAPI Lambda) and the WebSocket API."""

from __future__ import annotations

import json

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from aws_cdk.aws_wafv2 import CfnWebACL as waf
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.functions import Functions
from shared.plans import Plan

# Paths that answer without a token, so each request costs before anyone is known
# (an argon2 check per sign-in): WAF counts them per client on their own.
SIGN_IN_PATHS = ("/api/v1/auth/", "/api/v1/internal/")
# What the path is compared as: percent-decoded, with ``//``, ``/./`` and ``/../``
# resolved, then lower-cased, so that ``/api/v1/%61uth/login`` (decoded before the API
# sees it), ``/api/v1/x/../auth/login`` or ``/API/V1/AUTH/login`` do not dodge the
# sign-in limit.
SIGN_IN_TRANSFORMATIONS = [
    waf.TextTransformationProperty(priority=0, type="URL_DECODE"),
    waf.TextTransformationProperty(priority=1, type="NORMALIZE_PATH"),
    waf.TextTransformationProperty(priority=2, type="LOWERCASE"),
]

# The routes that start work (a GPU job, an inference, an analysis, an upload through
# the function, a Bedrock call): each gets a method of its own in API Gateway, throttled
# on its own (``expensive_throttle_rate``/``_burst``, for all clients together), so that
# a flood of them is refused at the door before it takes the API's concurrency from the
# cheap reads. Each user's own limits are the app's (seed 003's plans, per user, in
# DynamoDB); WAF limits each client address. In AWS each user also has an API key in
# their plan tier's usage plan (``_usage_plans``), put there by the Lambda authorizer
# these methods have (functions/api/authorizer.py): a throttle and a daily quota per user,
# applied before the function is invoked.
EXPENSIVE_ROUTES = (
    ("POST", "/api/v1/audio-files/upload"),
    ("POST", "/api/v1/audio-files/upload/batch"),
    ("POST", "/api/v1/datasets/upload"),
    ("POST", "/api/v1/analysis/{file_id}/start"),
    ("POST", "/api/v1/training/jobs"),
    ("POST", "/api/v1/training/jobs/{job_id}/start"),
    ("POST", "/api/v1/workflows"),
    ("POST", "/api/v1/test-inference"),
    ("POST", "/api/v1/inference/{workflow_id}/predict"),
    ("POST", "/api/v1/inference/{workflow_id}/batch"),
    ("POST", "/api/v1/chat/message"),
    ("POST", "/api/v1/leaderboard/jobs"),
    ("POST", "/api/v1/leaderboard/jobs/{job_id}/rerun"),
    ("POST", "/train/start"),
    ("POST", "/inference"),
    ("POST", "/jobs"),
    ("POST", "/jobs/{job_id}/rerun"),
)

# The authorizer's answer is cached per Authorization header this long (its maximum is
# an hour): a plan change reaches the usage plans within it.
AUTHORIZER_CACHE_S = 300
# What API Gateway passes to the authorizer at all ("Bearer <token>", any case): anything
# else is refused 401 without an invocation.
BEARER = r"^[Bb][Ee][Aa][Rr][Ee][Rr] +[^ ]+ *$"

# What the gateway itself refuses on those routes, in the app's error body
# (functions/api/errors.py, both seeds' shapes): (response type, status, code, detail).
GATEWAY_ERRORS = (
    (
        apigw.ResponseType.UNAUTHORIZED,
        401,
        "INVALID_TOKEN",
        "Not authenticated: send 'Authorization: Bearer <token>' with a valid token",
    ),
    (
        apigw.ResponseType.THROTTLED,
        429,
        "RATE_LIMIT_EXCEEDED",
        "Too many requests that start work: slow down (your plan's rate)",
    ),
    (
        apigw.ResponseType.QUOTA_EXCEEDED,
        429,
        "RATE_LIMIT_EXCEEDED",
        "Your plan's daily quota of requests that start work is used up (it resets at 00:00 UTC)",
    ),
    (
        apigw.ResponseType.INVALID_API_KEY,
        403,
        "FORBIDDEN",
        "This account may not start work now: ask an administrator",
    ),
)

BINARY_TYPES = [
    "multipart/form-data",
    "audio/*",
    "application/octet-stream",
    "application/zip",
    "image/*",
]


def _access_log_format() -> apigw.AccessLogFormat:
    """One access-log line per request, the same for both APIs (no caller or user ids)."""
    return apigw.AccessLogFormat.json_with_standard_fields(
        caller=False,
        http_method=True,
        ip=True,
        protocol=True,
        request_time=True,
        resource_path=True,
        response_length=True,
        status=True,
        user=False,
    )


class RestApi(Construct):
    def __init__(
        self, scope: Construct, id: str, *, env: EnvironmentConfig, functions: Functions
    ) -> None:
        super().__init__(scope, id)
        access = logs.LogGroup(self, "AccessLogs", retention=env.retention)
        self.api = apigw.LambdaRestApi(
            self,
            "Api",
            handler=functions.api,
            proxy=True,
            binary_media_types=BINARY_TYPES,
            # usage plans key on what the authorizer returns: no client sends x-api-key
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=env.name,
                throttling_rate_limit=env.throttle_rate,
                throttling_burst_limit=env.throttle_burst,
                method_options={
                    f"{path}/{method}": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=env.expensive_throttle_rate,
                        throttling_burst_limit=env.expensive_throttle_burst,
                    )
                    for method, path in EXPENSIVE_ROUTES
                },
                access_log_destination=apigw.LogGroupLogDestination(access),
                access_log_format=_access_log_format(),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                tracing_enabled=True,
            ),
        )
        # The authorizer by ARN (Functions.authorizer_arn): a reference would close a cycle.
        authorizer_fn = lambda_.Function.from_function_attributes(
            self, "AuthorizerFunction", function_arn=functions.authorizer_arn, same_environment=True
        )
        self.authorizer = apigw.TokenAuthorizer(
            self,
            "Authorizer",
            handler=authorizer_fn,
            identity_source=apigw.IdentitySource.header("Authorization"),
            validation_regex=BEARER,
            results_cache_ttl=cdk.Duration.seconds(AUTHORIZER_CACHE_S),
        )
        # its permission to be invoked, once the function exists
        for child in authorizer_fn.node.find_all():
            if isinstance(child, lambda_.CfnPermission):
                child.node.add_dependency(functions.authorizer)
        _expensive_methods(self.api, functions.api, self.authorizer)
        self.usage_plans = _usage_plans(self, self.api, env, functions)
        for response in GATEWAY_ERRORS:
            _gateway_error(self.api, *response)
        if env.domain_name and env.certificate_arn:
            self.api.add_domain_name(
                "Domain",
                domain_name=env.domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Cert", env.certificate_arn),
            )
        self.web_acl = _web_acl(self, env)
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
        nag(self, "APIG2", "A proxy to FastAPI, which validates every request body and parameter.")
        nag(
            self,
            "APIG4",
            "Authorisation is the app's own: JWT and API tokens, checked on each route.",
        )
        nag(self, "COG4", "Users live in Crucible's table (seed 001's /auth), not in Cognito.")
        nag(
            self,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role, as AWS provides it.",
        )


def _expensive_methods(
    api: apigw.LambdaRestApi, fn: lambda_.IFunction, authorizer: apigw.IAuthorizer
) -> None:
    """Resources for ``EXPENSIVE_ROUTES``, so that each has a method to throttle. API
    Gateway matches a request to the most specific resource first, so every resource
    made here also takes ANY method, and ANY below it (``{proxy+}``, or the resource's
    path-parameter child where it has one): no path the app serves depends on a
    fallback to the root's ``{proxy+}``, and FastAPI routes every request as before.
    One permission lets the API invoke the function on any method (not one per method:
    the function's resource policy has a size limit).

    Only the routes' own methods have the authorizer and need a key (the user's, which
    the authorizer names): each of them needs a signed-in user anyway. The ANY methods
    (a preflight ``OPTIONS``, a ``GET`` of the same path) stay as every other route is."""
    integration = apigw.LambdaIntegration(fn, scope_permission_to_method=False)
    made: dict[str, apigw.IResource] = {}  # by path
    for method, path in EXPENSIVE_ROUTES:
        resource = api.root
        for part in path.strip("/").split("/"):
            resource = resource.get_resource(part) or resource.add_resource(part)
            made.setdefault(resource.path, resource)
        resource.add_method(
            method,
            integration,
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            api_key_required=True,
        )
    for resource in made.values():
        resource.add_method("ANY", integration)
        children = [c for c in resource.node.children if isinstance(c, apigw.Resource)]
        if not any(c.path.rsplit("/", 1)[1].startswith("{") for c in children):
            resource.add_resource("{proxy+}").add_method("ANY", integration)


def _gateway_error(
    api: apigw.RestApi, kind: apigw.ResponseType, status: int, code: str, detail: str
) -> None:
    """The gateway's own refusal ``kind`` as the app's error body, with its request id."""
    rid = "$context.requestId"
    body = {
        "detail": detail,
        "code": code,
        "field": None,
        "request_id": rid,
        "error": {"code": code, "message": detail, "details": {}, "request_id": rid},
    }
    headers = {"WWW-Authenticate": "'Bearer'"} if status == 401 else {}
    if kind.response_type == "THROTTLED":
        headers["Retry-After"] = "'1'"  # a second's worth of the plan's rate is back
    api.add_gateway_response(
        f"Gateway{kind.response_type}",
        type=kind,
        status_code=str(status),
        response_headers=headers,
        templates={"application/json": json.dumps(body)},
    )


def usage_plan_limits(plan: Plan) -> tuple[apigw.ThrottleSettings | None, int | None]:
    """A plan tier's usage plan: its throttle from the plan's requests per minute (that
    many a minute, with the whole minute's worth at once, as the app's fixed minute
    window admits it), its daily quota from its requests per hour (24 of them). A 0
    figure (unlimited, shared/plans.py) sets none."""
    per_minute, per_hour = plan.requests_per_minute, plan.requests_per_hour
    throttle = (
        apigw.ThrottleSettings(rate_limit=per_minute / 60, burst_limit=per_minute)
        if per_minute
        else None
    )
    return throttle, (per_hour * 24 if per_hour else None)


def _usage_plans(
    scope: Construct, api: apigw.LambdaRestApi, env: EnvironmentConfig, functions: Functions
) -> dict[str, apigw.UsagePlan]:
    """One usage plan per plan tier (seed 003's figures with the environment's
    ``plan_limits``, as the app has them), on the API's stage; their ids reach the authorizer
    (``CRUCIBLE_USAGE_PLANS``), which may create API keys and move them between these
    plans, and nothing else of API Gateway."""
    stack = cdk.Stack.of(scope)
    plans: dict[str, apigw.UsagePlan] = {}
    for tier, plan in env.plans.items():
        throttle, per_day = usage_plan_limits(plan)
        plans[tier] = api.add_usage_plan(
            f"{tier.title()}Plan",
            name=f"crucible-{env.name}-{tier}",
            description=f"The {tier} plan's throttle and daily quota per user (routes that start work)",
            throttle=throttle,
            quota=apigw.QuotaSettings(limit=per_day, period=apigw.Period.DAY) if per_day else None,
            api_stages=[apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)],
        )
    authorizer = functions.authorizer
    authorizer.add_environment(
        "CRUCIBLE_USAGE_PLANS",
        stack.to_json_string({tier: p.usage_plan_id for tier, p in plans.items()}),
    )

    def path(p: str) -> str:
        return f"arn:{stack.partition}:apigateway:{stack.region}::{p}"

    authorizer.add_to_role_policy(  # GetApiKeys (by name), CreateApiKey
        iam.PolicyStatement(
            actions=["apigateway:GET", "apigateway:POST"], resources=[path("/apikeys")]
        )
    )
    authorizer.add_to_role_policy(  # CreateUsagePlanKey
        iam.PolicyStatement(
            actions=["apigateway:POST"],
            resources=[path(f"/usageplans/{p.usage_plan_id}/keys") for p in plans.values()],
        )
    )
    authorizer.add_to_role_policy(  # GetUsagePlanKey, DeleteUsagePlanKey
        iam.PolicyStatement(
            actions=["apigateway:GET", "apigateway:DELETE"],
            resources=[path(f"/usageplans/{p.usage_plan_id}/keys/*") for p in plans.values()],
        )
    )
    for p in plans.values():
        plan_id = stack.resolve(stack.get_logical_id(p.node.default_child))
        nag(
            functions,
            f"IAM5[Resource::arn:<AWS::Partition>:apigateway:{env.region}::/usageplans/<{plan_id}>/keys/*]",
            "The authorizer reads and removes users' keys in this usage plan (a key id each).",
        )
    return plans


def _rate_rule(
    name: str, priority: int, limit: int, scope_down: waf.StatementProperty | None = None
) -> waf.RuleProperty:
    """Block a client IP for as long as it sends more than ``limit`` requests in 5 minutes."""
    return waf.RuleProperty(
        name=name,
        priority=priority,
        action=waf.RuleActionProperty(block={}),
        statement=waf.StatementProperty(
            rate_based_statement=waf.RateBasedStatementProperty(
                limit=limit,
                aggregate_key_type="IP",
                evaluation_window_sec=300,
                scope_down_statement=scope_down,
            )
        ),
        visibility_config=waf.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
        ),
    )


def _web_acl(scope: Construct, env: EnvironmentConfig) -> waf:
    """The REST API's web ACL: per-client rate limits, tighter on ``SIGN_IN_PATHS``.

    AWS WAF associates with REST API stages only, not with WebSocket APIs: the WebSocket
    stage is bounded by its throttling (``WebSocketApi``) and ``$connect``, which refuses
    a bad token before anything is stored."""
    sign_in = waf.StatementProperty(
        or_statement=waf.OrStatementProperty(
            statements=[
                waf.StatementProperty(
                    byte_match_statement=waf.ByteMatchStatementProperty(
                        field_to_match=waf.FieldToMatchProperty(uri_path={}),
                        positional_constraint="CONTAINS",
                        search_string=path,
                        text_transformations=SIGN_IN_TRANSFORMATIONS,
                    )
                )
                for path in SIGN_IN_PATHS
            ]
        )
    )
    return waf(
        scope,
        "WebAcl",
        scope="REGIONAL",
        default_action=waf.DefaultActionProperty(allow={}),
        rules=[
            _rate_rule("SignInPerClient", 0, env.waf_sign_in_rate_limit, sign_in),
            _rate_rule("PerClient", 1, env.waf_rate_limit),
        ],
        visibility_config=waf.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True,
            metric_name=f"crucible-{env.name}-api",
            sampled_requests_enabled=True,
        ),
    )


class WebSocketApi(Construct):
    """$connect/$disconnect/$default to the WebSocket handler; its management endpoint
    goes to the push handler, which posts with ``@connections``. AWS WAF cannot be
    associated with a WebSocket API: the stage's throttling bounds it."""

    def __init__(
        self, scope: Construct, id: str, *, env: EnvironmentConfig, functions: Functions
    ) -> None:
        super().__init__(scope, id)
        fn = functions.websocket
        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("OnConnect", fn)
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("OnDisconnect", fn)
            ),
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("OnMessage", fn)
            ),
        )
        access = logs.LogGroup(self, "AccessLogs", retention=env.retention)
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=env.name,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=env.throttle_rate, burst_limit=env.throttle_burst
            ),
            access_log_settings=_AccessLogs(apigwv2.LogGroupLogDestination(access)),
        )
        self.api.grant_manage_connections(functions.stream_push)
        # $connect only asks whether a user's older connections are still open before it
        # refuses one over the user's cap (GetConnection): GET, this stage, nothing more.
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["execute-api:ManageConnections"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="execute-api",
                        resource=self.api.api_id,
                        resource_name=f"{env.name}/GET/@connections/*",
                    )
                ],
            )
        )
        for pusher in (functions.stream_push, fn):
            pusher.add_environment("CRUCIBLE_WS_MANAGEMENT_ENDPOINT", self.stage.callback_url)
        nag(
            self,
            "APIG4",
            "$connect authenticates the ?token= JWT in the handler (seed 003's contract).",
        )
        stack = cdk.Stack.of(self)
        api_id = stack.resolve(stack.get_logical_id(self.api.node.default_child))
        nag(
            functions,
            f"IAM5[Resource::arn:<AWS::Partition>:execute-api:{env.region}:<AWS::AccountId>:<{api_id}>/*/*/@connections/*]",
            "The push handler posts to any live connection of this API's stages.",
        )
        nag(
            functions,
            f"IAM5[Resource::arn:<AWS::Partition>:execute-api:{env.region}:<AWS::AccountId>:<{api_id}>/{env.name}/GET/@connections/*]",
            "$connect asks about any of the user's connections of this stage (GetConnection).",
        )


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """Access logging for a v2 stage (the library offers only the interface)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return _access_log_format()
