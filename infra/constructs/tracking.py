"""MLflow for the trainers and the evaluator: a SageMaker managed tracking server with
its artifact store in the artifacts bucket. Its ARN is the tracking URI the jobs receive
(the sagemaker-mlflow plugin resolves it); its URL (``ui_url``) is where the leaderboard's
results link to.

CloudFormation returns only the server's ARN, so the URL is read once per deployment
with DescribeMlflowTrackingServer (a custom resource allowed that one call on this one
server). A browser opens it with a SageMaker session (Studio, or a presigned URL from
CreatePresignedMlflowTrackingServerUrl); its REST API answers SigV4-signed requests.

The server is always on (billed by the hour, idle or not), so an environment may go without
it (``tracking: false`` in cdk.json, infra/stacks.py): the jobs then log to an MLflow store
of their own that ends with them, and the leaderboard's results carry no links."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.refs import DataRefs

# The id CDK gives the function behind every AwsCustomResource of a stack.
AWS_CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"


class Tracking(Construct):
    def __init__(
        self, scope: Construct, id: str, *, env: EnvironmentConfig, data: DataRefs
    ) -> None:
        super().__init__(scope, id)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        data.artifacts.grant_read_write(role, "mlflow/*")
        self.server = sagemaker.CfnMlflowTrackingServer(
            self,
            "Server",
            tracking_server_name=f"crucible-{env.name}",
            artifact_store_uri=data.artifacts.s3_url_for_object("mlflow"),
            role_arn=role.role_arn,
            tracking_server_size=env.mlflow_size,
            automatic_model_registration=False,
        )
        self.uri = self.server.attr_tracking_server_arn
        describe = cr.AwsSdkCall(
            service="SageMaker",
            action="describeMlflowTrackingServer",
            parameters={"TrackingServerName": self.server.tracking_server_name},
            physical_resource_id=cr.PhysicalResourceId.of(self.server.tracking_server_name),
            output_paths=["TrackingServerUrl"],
        )
        url = cr.AwsCustomResource(
            self,
            "Url",
            on_create=describe,
            on_update=describe,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["sagemaker:DescribeMlflowTrackingServer"], resources=[self.uri]
                    )
                ]
            ),
            install_latest_aws_sdk=False,  # the runtime's SDK has the call; synth stays offline
        )
        url.node.add_dependency(self.server)
        self.ui_url = url.get_response_field("TrackingServerUrl")
        # The custom resources' shared function (one per stack, made by CDK).
        provider = cdk.Stack.of(self).node.find_child(AWS_CUSTOM_RESOURCE_PROVIDER)
        nag(
            provider,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's own custom-resource function (it reads the MLflow server's URL): its log writes.",
        )
        nag(self, "IAM5[Action::s3:GetObject*]", "MLflow reads its own artifacts under mlflow/.")
        nag(self, "IAM5[Action::s3:GetBucket*]", "Bucket-level reads through the CDK grant.")
        nag(self, "IAM5[Action::s3:List*]", "MLflow lists its artifact prefix.")
        nag(self, "IAM5[Action::s3:DeleteObject*]", "MLflow deletes artifacts of deleted runs.")
        nag(self, "IAM5[Action::s3:Abort*]", "Multipart artifact uploads can be aborted.")
        bucket = data.artifacts.bucket_name
        nag(
            self,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/mlflow/*]",
            "Scoped to MLflow's prefix.",
        )
