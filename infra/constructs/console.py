"""One origin in AWS (ARCHITECTURE.md, "One origin"): a CloudFront distribution that
serves the web console from a private bucket, the REST API's paths, and every seed's
WebSocket paths, so that a client never needs to know where it runs.

- ``/`` (the default behaviour): the console build (``console/dist``) in a private
  bucket that only this distribution reads (origin access control).
- ``/api/*`` and the seeds' root paths (``API_PATHS``): the REST API, never cached,
  every viewer header but ``Host`` passed on, the viewer's address in
  ``VIEWER_ADDRESS_HEADER`` (``infra/cloudfront/viewer_address.js``) and a secret of
  the distribution's in ``ORIGIN_VERIFY_HEADER``, by which the API knows the address
  was written by CloudFront (a request sent to the API's own address has no secret).
- ``/ws``, ``/ws/workflows/*``, ``/api/v1/ws`` (``WEBSOCKET_PATHS``): the WebSocket
  API's stage. API Gateway gives a WebSocket API one URL per stage, so a CloudFront
  Function (``infra/cloudfront/ws_rewrite.js``) rewrites each path to the stage's, with
  its topic and format as query parameters, as the local dev server does.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.api import RestApi, WebSocketApi
from shared.console import console_csp
from shared.settings import ResourceNames

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIST = ROOT / "console" / "dist"
WS_REWRITE = ROOT / "infra" / "cloudfront" / "ws_rewrite.js"
VIEWER_ADDRESS = ROOT / "infra" / "cloudfront" / "viewer_address.js"
# What CloudFront adds to each request to the REST API: the viewer's address (a viewer
# request function, over anything the client sent) and the distribution's secret (an
# origin custom header, which CloudFront sets over any header of that name the viewer
# sent). The API trusts the first only when the second matches the secret whose ARN it
# gets as CRUCIBLE_ORIGIN_SECRET_ARN.
VIEWER_ADDRESS_HEADER = "x-crucible-viewer-address"
ORIGIN_VERIFY_HEADER = "x-crucible-origin-verify"
STAGE_PATH_MARKER = '"/__STAGE__"'

# The WebSocket paths, most specific first: ``/api/v1/ws`` must be matched before
# ``/api/*`` (CloudFront takes the first behaviour whose pattern matches).
WEBSOCKET_PATHS = ("/api/v1/ws", "/ws", "/ws/workflows/*")
# Every path the REST API serves (functions/api/app.py): /api/v1, the OpenAPI document,
# seed 000's root paths (/train/start, /train/stop, /inference, /config) and seed 004's
# (/submissions, /jobs..., /leaderboard); /jobs is both seeds'. Not the docs pages (/docs,
# /redoc): they load scripts from a CDN, which must never run on the origin whose storage
# holds the console's token; they stay on the API's own address.
API_PATHS = (
    "/api/*",
    "/openapi.json",
    "/train/*",
    "/inference",
    "/config",
    "/submissions*",
    "/jobs*",
    "/leaderboard*",
)
# What the WebSocket handshake needs at the origin (CloudFront's WebSocket guide names
# Key and Version; Protocol carries the browser's ["bearer", <token>]).
WEBSOCKET_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)
HSTS = cloudfront.ResponseHeadersStrictTransportSecurity(
    access_control_max_age=cdk.Duration.days(730), include_subdomains=True, override=True
)
# Shown at / when the stack was synthesized without a console build (see ``Console``).
NOT_BUILT_PAGE = (
    "<!doctype html><meta charset='utf-8'><title>Crucible</title>"
    "<h1>Crucible</h1><p>The web console was not built when this stack was deployed: run "
    "<code>make console</code>, then deploy again. The API is at <a href='docs'>/docs</a>.</p>"
)


def uploads_origins(uploads_bucket: str, region: str) -> tuple[str, str]:
    """The uploads bucket's S3 origins, global and regional as boto3 signs presigned URLs:
    the console POSTs and PUTs files above the API's limit there
    (console/src/recordings/upload.ts), and large files' playback is redirected there."""
    return (
        f"https://{uploads_bucket}.s3.amazonaws.com",
        f"https://{uploads_bucket}.s3.{region}.amazonaws.com",
    )


def ws_rewrite_code(stage: str) -> str:
    """The viewer-request function's code for ``stage``: ws_rewrite.js with its stage path."""
    code = WS_REWRITE.read_text()
    if code.count(STAGE_PATH_MARKER) != 1:
        raise ValueError(f"{WS_REWRITE} must name the stage path {STAGE_PATH_MARKER} once")
    return code.replace(STAGE_PATH_MARKER, json.dumps(f"/{stage}"))


class Console(Construct):
    """The distribution, the console's bucket and its upload at deploy."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env: EnvironmentConfig,
        api: RestApi,
        websocket: WebSocketApi,
        dist: Path = CONSOLE_DIST,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=cdk.RemovalPolicy.RETAIN if env.retain else cdk.RemovalPolicy.DESTROY,
        )
        nag(
            self.bucket,
            "S1",
            "Holds only the public console build, read by this distribution alone (origin "
            "access control) and written by the deployment; its reads are no one's secret.",
        )

        console_headers = cloudfront.ResponseHeadersPolicy(
            self,
            "ConsoleHeaders",
            comment=f"crucible {env.name}: the web console's security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=console_csp(
                        uploads_origins(
                            ResourceNames.for_stage(env.name).uploads_bucket, stack.region
                        )
                    ),
                    override=True,
                ),
                strict_transport_security=HSTS,
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
        )
        # The API sets its own headers; HTTPS-only and nosniff are added to what it answers.
        # (No CSP: /docs and /redoc load their scripts from a CDN.)
        api_headers = cloudfront.ResponseHeadersPolicy(
            self,
            "ApiHeaders",
            comment=f"crucible {env.name}: HSTS and nosniff on the API's answers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=HSTS,
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
            ),
        )
        websocket_request = cloudfront.OriginRequestPolicy(
            self,
            "WebSocketRequest",
            comment=f"crucible {env.name}: the WebSocket handshake and the rewritten query",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(*WEBSOCKET_HEADERS),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        self.ws_rewrite = cloudfront.Function(
            self,
            "WebSocketRewrite",
            comment="Seed WebSocket paths to the stage, topic and format to the query",
            code=cloudfront.FunctionCode.from_inline(ws_rewrite_code(websocket.stage.stage_name)),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
        )

        self.origin_secret = sm.Secret(
            self,
            "OriginSecret",
            description=f"crucible {env.name}: what CloudFront sends the REST API in "
            f"{ORIGIN_VERIFY_HEADER}",
            generate_secret_string=sm.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        nag(
            self.origin_secret,
            "SMG4",
            "CloudFront's origin header holds it: a new value is set by a deploy (runbook), "
            "which updates the distribution and the API's cached copy expires on its own.",
        )
        self.viewer_address = cloudfront.Function(
            self,
            "ViewerAddress",
            comment="The viewer's address, for the API's per-client limits",
            code=cloudfront.FunctionCode.from_file(file_path=str(VIEWER_ADDRESS)),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
        )
        api_behaviour = cloudfront.BehaviorOptions(
            origin=origins.RestApiOrigin(
                api.api,
                custom_headers={
                    # a dynamic reference, resolved by CloudFormation: not in the template
                    ORIGIN_VERIFY_HEADER: self.origin_secret.secret_value.unsafe_unwrap()
                },
            ),
            function_associations=[
                cloudfront.FunctionAssociation(
                    function=self.viewer_address,
                    event_type=cloudfront.FunctionEventType.VIEWER_REQUEST,
                )
            ],
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            response_headers_policy=api_headers,
        )
        websocket_behaviour = cloudfront.BehaviorOptions(
            origin=origins.HttpOrigin(
                f"{websocket.api.api_id}.execute-api.{stack.region}.{stack.url_suffix}",
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            ),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=websocket_request,
            function_associations=[
                cloudfront.FunctionAssociation(
                    function=self.ws_rewrite, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST
                )
            ],
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"crucible {env.name}: the console, the API and its WebSockets on one origin",
            default_root_object="index.html",
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=console_headers,
            ),
            # in this order: the first pattern that matches a path takes it
            additional_behaviors={
                **{path: websocket_behaviour for path in WEBSOCKET_PATHS},
                **{path: api_behaviour for path in API_PATHS},
            },
        )
        nag(
            self.distribution,
            "CFR1",
            "A research tool open to its users wherever they are: no country to exclude; "
            "who may do what is the API's sign-in and roles.",
        )
        nag(
            self.distribution,
            "CFR2",
            "The REST API behind it has its own regional AWS WAF web ACL (RestApi); a "
            "CLOUDFRONT-scope web ACL must live in us-east-1, which this stack's region need "
            "not be. Behind CloudFront that ACL's per-IP limits count edge addresses.",
        )
        nag(
            self.distribution,
            "CFR3",
            "Standard logs would record query strings, and seed 003's WebSocket clients send "
            "?token= there; the REST and WebSocket stages log each request without them.",
        )
        nag(
            self.distribution,
            "CFR4",
            "The default *.cloudfront.net certificate, whose security policy CloudFront fixes "
            "(TLSv1); a custom domain with its own certificate would set TLSv1.2_2021.",
        )
        self._deploy(env, dist)

    def _deploy(self, env: EnvironmentConfig, dist: Path) -> None:
        """Upload the console build to the bucket at deploy: ``index.html`` and the rest
        revalidated on every load (``no-cache``), the content-hashed ``assets/`` kept a year.
        Without a build (``dist`` has no index.html) synth goes on with a warning and
        deploys a page that says how to build it: the stack stays deployable (the API and
        the WebSockets work without the console) and ``/`` says what is missing."""
        common = dict(
            destination_bucket=self.bucket,
            prune=True,
            # destroy: the objects go with the deployment, so the empty bucket can go too
            retain_on_delete=env.retain,
        )
        if not (dist / "index.html").is_file():
            cdk.Annotations.of(self).add_warning_v2(
                "crucible:console-not-built",
                f"{dist} has no index.html: deploying a placeholder page at / "
                "(run `make console` before `cdk deploy`)",
            )
            uploads = [
                s3deploy.BucketDeployment(
                    self,
                    "Upload",
                    sources=[s3deploy.Source.data("index.html", NOT_BUILT_PAGE)],
                    cache_control=[s3deploy.CacheControl.no_cache()],
                    content_type="text/html; charset=utf-8",
                    **common,
                )
            ]
        else:
            build = s3deploy.Source.asset(str(dist))
            uploads = [
                s3deploy.BucketDeployment(
                    self,
                    "Upload",
                    sources=[build],
                    exclude=["assets/*"],
                    cache_control=[s3deploy.CacheControl.no_cache()],
                    **common,
                ),
                s3deploy.BucketDeployment(
                    self,
                    "UploadAssets",
                    sources=[build],
                    exclude=["*"],
                    include=["assets/*"],
                    cache_control=[
                        s3deploy.CacheControl.set_public(),
                        s3deploy.CacheControl.max_age(cdk.Duration.days(365)),
                        s3deploy.CacheControl.immutable(),
                    ],
                    **common,
                ),
            ]
        self._acknowledge_uploader(uploads[0])

    def _acknowledge_uploader(self, upload: s3deploy.BucketDeployment) -> None:
        """cdk-nag's findings on CDK's own BucketDeployment function (one per stack, shared
        by every upload), each by its exact id."""
        stack = cdk.Stack.of(self)
        role = upload.handler_role
        account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
        region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
        assets = f"cdk-{cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER}-assets-{account}-{region}"
        bucket = stack.resolve(stack.get_logical_id(self.bucket.node.default_child))
        nag(
            role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's BucketDeployment function, which copies the console build into its bucket.",
        )
        for finding in (
            "Action::s3:GetObject*",
            "Action::s3:GetBucket*",
            "Action::s3:List*",
            "Action::s3:DeleteObject*",
            "Action::s3:Abort*",
            f"Resource::arn:<AWS::Partition>:s3:::{assets}/*",
            f"Resource::<{bucket}.Arn>/*",
        ):
            nag(
                role,
                f"IAM5[{finding}]",
                "CDK's BucketDeployment grants: read the build's asset and sync it into the "
                "console bucket (prune deletes what the build no longer has), nothing else.",
            )
        nag(
            role.node.scope,
            "L1",
            "CDK's BucketDeployment function: aws-cdk-lib pins its runtime with the AWS CLI "
            "layer it runs; it runs only at deploy.",
        )
