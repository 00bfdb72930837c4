"""MLflow for the trainers: a SageMaker managed tracking server with its artifact
store in the artifacts bucket. Its ARN is the tracking URI the jobs receive (the
sagemaker-mlflow plugin resolves it)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.refs import DataRefs


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
