"""The data stack's resources as the app stack's constructs see them (``DataRefs``).

A module of its own so that ``infra/stacks.py`` and the constructs both import it and
no construct imports the stacks."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_dynamodb as ddb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.state import State
from infra.constructs.storage import Storage
from shared.adapters.dynamodb.table import TABLE_SCHEMA
from shared.settings import ResourceNames


class DataRefs:
    """Buckets and table by name (so grants read as plain ARNs), the secrets and the
    table's stream by reference."""

    def __init__(
        self, scope: Construct, names: ResourceNames, *, storage: Storage, state: State
    ) -> None:
        self.table = ddb.Table.from_table_attributes(
            scope,
            "Table",
            table_name=names.table,
            table_stream_arn=state.table.table_stream_arn,
            global_indexes=list(TABLE_SCHEMA["indexes"]),
        )
        self.uploads = s3.Bucket.from_bucket_name(scope, "Uploads", names.uploads_bucket)
        self.artifacts = s3.Bucket.from_bucket_name(scope, "Artifacts", names.artifacts_bucket)
        self.jwt_secret = storage.jwt_secret
        self.internal_secret = storage.internal_secret

    def grant_table(
        self,
        grantee: iam.IGrantable,
        actions: Sequence[str],
        *,
        keys: Sequence[str] | None = None,
        indexes: bool = False,
    ) -> None:
        """Let ``grantee`` call ``actions`` (``GetItem``, ``PutItem``, ...) on the table,
        and on its indexes with ``indexes``; with ``keys``, only on items whose partition
        key matches one of these patterns (``dynamodb:LeadingKeys``, e.g. ``JOB#*``)."""
        arn = self.table.table_arn
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"dynamodb:{a}" for a in actions],
                resources=[arn, f"{arn}/index/*"] if indexes else [arn],
                conditions=(
                    {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(keys)}}
                    if keys
                    else None
                ),
            )
        )
