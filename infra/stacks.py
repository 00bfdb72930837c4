"""The stack set of one environment: data (kept across app redeploys) and app."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.api import RestApi, WebSocketApi
from infra.constructs.batch import Batch
from infra.constructs.console import Console
from infra.constructs.events import Events
from infra.constructs.functions import Functions
from infra.constructs.monitoring import Monitoring
from infra.constructs.refs import DataRefs
from infra.constructs.state import State
from infra.constructs.storage import Storage
from infra.constructs.tracking import Tracking
from shared.settings import ResourceNames


class DataStack(cdk.Stack):
    """Buckets, table and secrets: what must outlive any deployment of the app."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        names = ResourceNames.for_stage(config.name)
        self.storage = Storage(self, "Storage", env=config, names=names)
        self.state = State(self, "State", env=config, names=names)
        nag(
            self,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's own custom resource that turns on the uploads bucket's EventBridge notifications.",
        )


class AppStack(cdk.Stack):
    """Functions, APIs, event wiring, Batch, MLflow (``tracking``), alarms, and the one origin
    (CloudFront) that serves the console, the API and the WebSockets."""

    def __init__(
        self, scope: Construct, id: str, *, config: EnvironmentConfig, data: DataStack, **kwargs
    ) -> None:
        super().__init__(scope, id, **kwargs)
        names = ResourceNames.for_stage(config.name)
        refs = DataRefs(self, names, storage=data.storage, state=data.state)
        self.functions = Functions(self, "Functions", env=config, names=names, data=refs)
        self.api = RestApi(self, "Rest", env=config, functions=self.functions)
        self.websocket = WebSocketApi(self, "WebSocket", env=config, functions=self.functions)
        self.console = Console(self, "Console", env=config, api=self.api, websocket=self.websocket)
        # The secret CloudFront sends with each API request: where it matches, the API
        # may take the viewer's address from CloudFront's header (infra/constructs/console.py).
        self.console.origin_secret.grant_read(self.functions.api)
        self.functions.api.add_environment(
            "CRUCIBLE_ORIGIN_SECRET_ARN", self.console.origin_secret.secret_arn
        )
        self.events = Events(
            self, "Events", env=config, names=names, functions=self.functions, data=refs
        )
        # MLflow's managed server, unless the environment has none (``tracking: false``:
        # the jobs log to a store of their own, and the results carry no MLflow links).
        self.tracking = (
            Tracking(self, "Tracking", env=config, data=refs) if config.tracking else None
        )
        tracking_uri = self.tracking.uri if self.tracking else None
        self.batch = Batch(
            self, "Batch", env=config, names=names, data=refs, tracking_uri=tracking_uri
        )
        self.batch.allow_submit(self.functions.api)
        # the reconciler: stops what overstays, asks Batch, resubmits what was never submitted
        self.batch.allow_submit(self.functions.sweeper)
        self.batch.allow_describe(self.functions.sweeper)
        if self.tracking:  # the leaderboard's results link to runs on the managed server
            self.functions.api.add_environment("CRUCIBLE_MLFLOW_UI_URL", self.tracking.ui_url)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            env=config,
            functions=self.functions,
            events=self.events,
            api=self.api,
        )
        cdk.CfnOutput(self, "ApiUrl", value=self.api.api.url)
        cdk.CfnOutput(self, "WebSocketUrl", value=self.websocket.stage.url)
        if self.tracking:
            cdk.CfnOutput(self, "MlflowTrackingUri", value=self.tracking.uri)
        cdk.CfnOutput(
            self,
            "ConsoleUrl",
            value=f"https://{self.console.distribution.distribution_domain_name}/",
            description="The console, the API and every seed's WebSocket paths on one origin",
        )


def environment_stacks(app: cdk.App, config: EnvironmentConfig) -> tuple[DataStack, AppStack]:
    env = cdk.Environment(account=config.account, region=config.region)
    data = DataStack(app, f"crucible-{config.name}-data", config=config, env=env)
    stack = AppStack(app, f"crucible-{config.name}-app", config=config, data=data, env=env)
    for s in (data, stack):
        cdk.Tags.of(s).add("app", "crucible")
        cdk.Tags.of(s).add("environment", config.name)
    return data, stack
