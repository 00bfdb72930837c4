"""The data stack's resources as the app stack's constructs see them (``DataRefs``).

A module of its own so that ``infra/stacks.py`` and the constructs both import it and
no construct imports the stacks."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as ddb
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
