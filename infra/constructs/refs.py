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

# Partition keys (``dynamodb:LeadingKeys`` patterns) by what lives under them (README,
# "Data model"). Users and the locks that name them: only the API and the WebSocket
# function (which creates API tokens' service users) are granted these.
IDENTITY = ("USER#*", "EMAIL#*", "TOKEN#*")
CONNECTIONS = ("CONN#*", "TOPIC#*")  # WebSocket connections and their subscriptions
# Where a topic's owner is read (shared/adapters/dynamodb/push.py, DynamoOwners): the
# ``<KIND>#<id>`` item of every topic kind but ``user`` (shared/events.py, TOPIC_RE), and
# a file's upload intent before the file exists.
TOPIC_OWNERS = ("JOB#*", "FILE#*", "UPLOAD#*", "DATASET#*", "WORKFLOW#*", "SUBMISSION#*")


def event_keys(kind: str) -> tuple[str, str]:
    """What publishing on ``<kind>:<id>`` topics writes: each event's id lock and the
    event in its topic's log (shared/adapters/dynamodb/push.py, DynamoEventLog)."""
    return "EVENT#*", f"EVENTS#{kind}:*"


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
        index: str | None = None,
    ) -> None:
        """Let ``grantee`` call ``actions`` (``GetItem``, ``PutItem``, ...) on the table,
        and on its indexes with ``indexes``, or on the one index ``index`` only (``GSI1``:
        queries of it, never the table); with ``keys``, only on items whose partition key
        matches one of these patterns (``dynamodb:LeadingKeys``, e.g. ``JOB#*``; for an
        index query, the index's partition key, e.g. ``CONN#*`` on GSI1)."""
        arn = self.table.table_arn
        if index is not None:
            if index not in TABLE_SCHEMA["indexes"]:
                raise ValueError(f"the table has no index {index!r}")
            resources = [f"{arn}/index/{index}"]
        else:
            resources = [arn, f"{arn}/index/*"] if indexes else [arn]
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[f"dynamodb:{a}" for a in actions],
                resources=resources,
                conditions=(
                    {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(keys)}}
                    if keys
                    else None
                ),
            )
        )
