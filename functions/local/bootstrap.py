"""Create the stage's AWS resources in the emulator, idempotently, from the same names
(shared.settings.ResourceNames) and key schema (shared.adapters.dynamodb.TABLE_SCHEMA)
the CDK app deploys.

What the local stack needs beyond the table and buckets is the event path AWS gives
for free: S3 -> EventBridge -> rule -> SQS queue (polled by the local dispatcher),
with a dead-letter queue for events that keep failing.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.dynamodb import TABLE_SCHEMA
from shared.wiring import Container

RULES = {
    "s3-object-created": lambda names: {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [names.uploads_bucket]}},
    },
    "batch-job-state-change": lambda names: {
        "source": ["aws.batch", "crucible.local-batch"],
        "detail-type": ["Batch Job State Change"],
    },
}


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


def _queue_and_rules(c: Container) -> str:
    sqs, events, names = c.client("sqs"), c.client("events"), c.settings.names
    dlq_url = sqs.create_queue(QueueName=names.events_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=names.events_queue,
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for rule, pattern in RULES.items():
        name = f"crucible-{c.settings.stage}-{rule}"
        events.put_rule(Name=name, EventPattern=json.dumps(pattern(names)), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "local-dispatcher", "Arn": arn}])
    return url


def ensure_resources(c: Container) -> dict[str, Any]:
    """Create (or find) everything; safe to run on every start."""
    _table(c)
    _buckets(c)
    queue_url = _queue_and_rules(c)
    return {"table": c.settings.names.table, "queue_url": queue_url}
