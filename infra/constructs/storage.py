"""Upload and artifact buckets (+ their access-log bucket) and the secrets."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from shared.settings import ResourceNames


class Storage(Construct):
    def __init__(
        self, scope: Construct, id: str, *, env: EnvironmentConfig, names: ResourceNames
    ) -> None:
        super().__init__(scope, id)
        removal = cdk.RemovalPolicy.RETAIN if env.retain else cdk.RemovalPolicy.DESTROY
        common = dict(
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=removal,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **{**common, "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_PREFERRED},
            lifecycle_rules=[
                s3.LifecycleRule(expiration=cdk.Duration.days(env.log_retention_days))
            ],
        )
        nag(
            self.access_logs,
            "S1",
            "This is the access-log bucket; logging it into itself would loop.",
        )
        cors = (
            [
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.PUT, s3.HttpMethods.GET],
                    allowed_origins=env.cors_origins,
                    allowed_headers=["*"],
                    exposed_headers=["ETag"],
                    max_age=3000,
                )
            ]
            if env.cors_origins
            else None
        )
        self.uploads = s3.Bucket(
            self,
            "Uploads",
            bucket_name=names.uploads_bucket,
            **common,
            versioned=True,
            event_bridge_enabled=True,
            cors=cors,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="uploads/",
            lifecycle_rules=[
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
                s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(30)),
            ],
        )
        self.artifacts = s3.Bucket(
            self,
            "Artifacts",
            bucket_name=names.artifacts_bucket,
            **common,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
                s3.LifecycleRule(prefix="tmp/", expiration=cdk.Duration.days(7)),
                s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(30)),
                # A trainer overwrites its "last" checkpoint (jobs/<id>/checkpoints/) every
                # checkpoint interval: each overwritten copy is a noncurrent version, kept
                # this long, not 30 days (where two rules overlap, S3 applies the earlier
                # expiry). Nothing else under jobs/ is overwritten.
                s3.LifecycleRule(
                    prefix="jobs/",
                    noncurrent_version_expiration=cdk.Duration.days(env.checkpoint_versions_days),
                ),
            ],
        )
        generator = sm.SecretStringGenerator(exclude_punctuation=True, password_length=64)
        self.jwt_secret = sm.Secret(
            self, "JwtSecret", generate_secret_string=generator, removal_policy=removal
        )
        self.internal_secret = sm.Secret(
            self, "InternalSecret", generate_secret_string=generator, removal_policy=removal
        )
        for secret in (self.jwt_secret, self.internal_secret):
            nag(
                secret,
                "SMG4",
                "Rotating the signing secret invalidates every session; it is rotated by "
                "a planned redeploy (runbook), not on a schedule.",
            )
