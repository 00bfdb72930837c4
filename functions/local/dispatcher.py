"""The local stand-in for Lambda's event source mappings.

* EventBridge -> SQS -> here: the emulator routes S3 "Object Created" and "Batch
  Job State Change" events to a queue; this polls it and calls the same handler
  a Lambda target would get, with the same event JSON. A handler that raises
  leaves its message for redelivery (and the dead-letter queue after 5 tries).
* DynamoDB stream -> here: stream records are wrapped in the Lambda event shape
  (``{"Records": [...]}``) and given to the push handler.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from functions.events import batch_state, s3_object, stream_push
from shared.wiring import Container

log = logging.getLogger("crucible.dispatcher")

Handler = Callable[[dict[str, Any], Container], Any]

ROUTES: dict[str, Handler] = {
    "Object Created": s3_object.handle,
    "Batch Job State Change": batch_state.handle,
}


class Dispatcher:
    def __init__(self, container: Container, queue_url: str, *, poll_s: float = 0.2) -> None:
        self.c = container
        self.queue_url = queue_url
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.delivered = 0

    def start(self) -> Dispatcher:
        stream = self._stream_arn()
        iterators = self._iterators(stream, "LATEST")  # ready before the server takes requests
        for name, target, args in (
            ("sqs", self._poll_queue, ()),
            ("stream", self._poll_stream, (stream, iterators)),
        ):
            t = threading.Thread(
                target=self._guard, args=(target, *args), name=f"dispatch-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _guard(self, loop: Callable[..., None], *args: Any) -> None:
        while not self._stop.is_set():
            try:
                loop(*args)
            except Exception:
                log.exception("dispatcher loop failed; restarting in 1 s")
                self._stop.wait(1)

    # --- EventBridge -> SQS ---------------------------------------------------
    def _poll_queue(self) -> None:
        sqs = self.c.client("sqs")
        while not self._stop.is_set():
            out = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for msg in out.get("Messages", []):
                if self.dispatch(json.loads(msg["Body"])):
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=msg["ReceiptHandle"])

    def dispatch(self, event: dict[str, Any]) -> bool:
        """Run the handler for one EventBridge event; True when it is done with."""
        handler = ROUTES.get(event.get("detail-type", ""))
        if handler is None:
            log.warning("no handler for %s events", event.get("detail-type"))
            return True
        try:
            handler(event, self.c)
        except Exception:
            log.exception(
                "%s handler failed; the message will be redelivered", event.get("detail-type")
            )
            return False
        self.delivered += 1
        return True

    # --- DynamoDB stream ------------------------------------------------------
    def _stream_arn(self) -> str:
        table = self.c.client("dynamodb").describe_table(TableName=self.c.settings.names.table)[
            "Table"
        ]
        return table["LatestStreamArn"]

    def _iterators(
        self, stream: str, kind: str, known: dict[str, str | None] | None = None
    ) -> dict:
        streams = self.c.client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]
        its = dict(known or {})
        for shard in shards:
            sid = shard["ShardId"]
            if sid not in its:
                its[sid] = streams.get_shard_iterator(
                    StreamArn=stream, ShardId=sid, ShardIteratorType=kind
                )["ShardIterator"]
        return its

    def _poll_stream(self, stream: str, iterators: dict[str, str | None]) -> None:
        streams = self.c.client("dynamodbstreams")
        region = self.c.settings.aws_region
        last_shard_check = time.monotonic()
        while not self._stop.is_set():
            got = 0
            for sid, it in list(iterators.items()):
                if it is None:
                    continue
                out = streams.get_records(ShardIterator=it, Limit=100)
                iterators[sid] = out.get("NextShardIterator")
                records = out.get("Records", [])
                if records:
                    got += len(records)
                    event = {
                        "Records": [
                            {**r, "eventSourceARN": stream, "awsRegion": region} for r in records
                        ]
                    }
                    result = stream_push.handle(event, self.c)
                    if result.get("batchItemFailures"):
                        log.warning("push failed for %s", result["batchItemFailures"])
            if time.monotonic() - last_shard_check > 5:  # pick up new shards
                iterators.update(self._iterators(stream, "TRIM_HORIZON", iterators))
                last_shard_check = time.monotonic()
            if not got:
                self._stop.wait(self.poll_s)
