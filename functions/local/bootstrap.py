"""Create the stage's AWS resources in the emulator, idempotently, from the same names
(shared.settings.ResourceNames) and key schema (shared.adapters.dynamodb.table.TABLE_SCHEMA)
the CDK app deploys.

What the local stack needs beyond the table and buckets is the event path AWS gives
for free: S3 -> EventBridge -> one rule per route (shared/routing.py) -> an SQS queue
per route (polled by the local dispatcher), with a dead-letter queue for events that
keep failing.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb.table import TABLE_SCHEMA
from shared.routing import ROUTES
from shared.wiring import Container


def _table(c: Container) -> None:
    ddb, name = c.client("dynamodb"), c.settings.names.table
    keys = [TABLE_SCHEMA["partition_key"], TABLE_SCHEMA["sort_key"]]
    index_keys = [k for pair in TABLE_SCHEMA["indexes"].values() for k in pair]
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": keys[0], "KeyType": "HASH"},
                {"AttributeName": keys[1], "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": k, "AttributeType": "S"} for k in keys + index_keys
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index,
                    "KeySchema": [
                        {"AttributeName": pk, "KeyType": "HASH"},
                        {"AttributeName": sk, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index, (pk, sk) in TABLE_SCHEMA["indexes"].items()
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": TABLE_SCHEMA["stream"]},
        )
        ddb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "Enabled": True,
                "AttributeName": TABLE_SCHEMA["ttl_attribute"],
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise


def _buckets(c: Container) -> None:
    s3, names = c.client("s3"), c.settings.names
    for bucket in (names.uploads_bucket, names.artifacts_bucket):
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
    s3.put_bucket_notification_configuration(
        Bucket=names.uploads_bucket,
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )


def _queues_and_rules(c: Container) -> dict[str, str]:
    """One queue per route (with a shared dead-letter queue), fed by the route's rule."""
    sqs, events, names = c.client("sqs"), c.client("events"), c.settings.names
    dlq_url = sqs.create_queue(QueueName=names.events_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queues = {}
    for route in ROUTES:
        url = sqs.create_queue(
            QueueName=f"{names.events_queue}-{route.name}",
            Attributes={
                "VisibilityTimeout": "900",  # the longest a handler runs (analysis)
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        rule = f"crucible-{c.settings.stage}-{route.name}"
        pattern = route.pattern(names, cloud=False)  # the local job runner's source too
        events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule=rule, Targets=[{"Id": "local-dispatcher", "Arn": arn}])
        queues[route.name] = url
    return queues


def ensure_resources(c: Container) -> dict[str, Any]:
    """Create (or find) everything; safe to run on every start."""
    _table(c)
    _buckets(c)
    return {"table": c.settings.names.table, "queues": _queues_and_rules(c)}
