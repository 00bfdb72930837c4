"""The emulator's own durability (functions/local/emulator_durability.py), against a real
MiniStack killed with SIGKILL: journaled DynamoDB writes are replayed exactly once over
the last checkpoint (a counter incremented concurrently ends at the count of answered
increments, across several checkpoints), a torn journal tail is cut, and SQS messages,
EventBridge deliveries and S3 "Object Created" events that were answered are still
queued."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import boto3
import pytest

from functions.local.emulator import Emulator, credentials, free_port
from tests.conftest import CREDENTIALS, MINISTACK

pytestmark = pytest.mark.e2e

THREADS, PER_THREAD = 6, 40


def _client(emu: Emulator, service: str):
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS.access_key_id,
        aws_secret_access_key=CREDENTIALS.secret_access_key,
    )


def _count(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_answered_writes_survive_sigkill_of_the_emulator(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRUCIBLE_EMULATOR_CHECKPOINT_ENTRIES", "60")  # several checkpoints
    state = tmp_path / "aws"
    credentials(state, seed=CREDENTIALS)
    emu = Emulator(MINISTACK, state, free_port()).start()
    try:
        ddb, sqs = _client(emu, "dynamodb"), _client(emu, "sqs")
        events, s3 = _client(emu, "events"), _client(emu, "s3")
        ddb.create_table(
            TableName="durable",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        direct = sqs.create_queue(QueueName="direct")["QueueUrl"]
        routed = sqs.create_queue(QueueName="routed")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=routed, AttributeNames=["QueueArn"])
        events.put_rule(
            Name="all",
            EventPattern=json.dumps({"source": ["crucible.test", "aws.s3"]}),
            State="ENABLED",
        )
        events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}])
        s3.create_bucket(Bucket="durable-uploads")
        s3.put_bucket_notification_configuration(
            Bucket="durable-uploads",
            NotificationConfiguration={"EventBridgeConfiguration": {}},
        )

        answered = []
        lock = threading.Lock()

        def write(n: int) -> None:
            c = _client(emu, "dynamodb")
            for i in range(PER_THREAD):
                c.put_item(TableName="durable", Item={"pk": {"S": f"{n}-{i}"}})
                c.update_item(
                    TableName="durable",
                    Key={"pk": {"S": "counter"}},
                    UpdateExpression="ADD n :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                with lock:
                    answered.append(f"{n}-{i}")

        began = time.perf_counter()
        threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - began
        print(f"{2 * len(answered)} journaled writes from {THREADS} threads in {took:.1f} s")
        for i in range(7):
            sqs.send_message(QueueUrl=direct, MessageBody=f"m{i}")
        for i in range(3):
            events.put_events(
                Entries=[{"Source": "crucible.test", "DetailType": "t", "Detail": f'{{"i":{i}}}'}]
            )
        for i in range(2):
            s3.put_object(Bucket="durable-uploads", Key=f"k{i}", Body=b"x")  # answered once queued
        assert _count(sqs, routed) == 5

        os.kill(emu.proc.pid, signal.SIGKILL)
        emu.proc.wait(10)
        segments = sorted((state / "journal").glob("dynamodb-*.log"))
        assert segments, "nothing journaled"
        with open(segments[-1], "ab") as f:  # a crash in the middle of an append
            f.write((200).to_bytes(4, "little") + b"\0\0\0\0torn")

        emu.start()
        ddb, sqs = _client(emu, "dynamodb"), _client(emu, "sqs")
        counter = ddb.get_item(TableName="durable", Key={"pk": {"S": "counter"}})["Item"]
        assert int(counter["n"]["N"]) == len(answered) == THREADS * PER_THREAD
        items = ddb.scan(TableName="durable", Select="COUNT")["Count"]
        assert items == len(answered) + 1
        assert _count(sqs, direct) == 7
        assert _count(sqs, routed) == 5
        log = (state / "ministack.log").read_text()
        assert "ends in a torn record" in log
        # the start's checkpoint holds everything: one (fresh) segment is left
        assert len(list((state / "journal").glob("dynamodb-*.log"))) == 1

        # a clean stop leaves nothing to replay
        ddb.put_item(TableName="durable", Item={"pk": {"S": "last"}})
        emu.stop()
        emu.start()
        assert "Item" in _client(emu, "dynamodb").get_item(
            TableName="durable", Key={"pk": {"S": "last"}}
        )
    finally:
        emu.stop()
