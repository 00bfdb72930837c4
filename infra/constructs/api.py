"""The REST API (API Gateway -> the FastAPI Lambda) and the WebSocket API."""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.functions import Functions

BINARY_TYPES = [
    "multipart/form-data",
    "audio/*",
    "application/octet-stream",
    "application/zip",
    "image/*",
]


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
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=env.name,
                throttling_rate_limit=env.throttle_rate,
                throttling_burst_limit=env.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(access),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                tracing_enabled=True,
            ),
        )
        if env.domain_name and env.certificate_arn:
            self.api.add_domain_name(
                "Domain",
                domain_name=env.domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Cert", env.certificate_arn),
            )
        nag(self, "APIG2", "A proxy to FastAPI, which validates every request body and parameter.")
        nag(
            self,
            "APIG3",
            "WAF is left to the account's edge (CloudFront/WAF) policy, outside this app.",
        )
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


class WebSocketApi(Construct):
    """$connect/$disconnect/$default to the WebSocket handler; its management endpoint
    goes to the push handler, which posts with ``@connections``."""

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
        functions.stream_push.add_environment(
            "CRUCIBLE_WS_MANAGEMENT_ENDPOINT", self.stage.callback_url
        )
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
