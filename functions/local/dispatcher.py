"""The local stand-in for Lambda's event source mappings.

* EventBridge -> SQS -> here: each route of shared/routing.py has a rule and a queue
  in the emulator; this polls every queue and calls the route's handler — the one a
  Lambda target would run — with the same event JSON. A handler that raises leaves
  its message for redelivery (and the dead-letter queue after 5 tries).
* DynamoDB stream -> here: stream records are wrapped in the Lambda event shape
  (``{"Records": [...]}``) and given to the push handler. Streams cannot be long-polled,
  so the pace adapts: an event published in this process (a handler's status, an error)
  wakes the reader at once; right after an event nobody here announced (another
  process's: a trainer's), the stream is read every ``busy_poll_s`` for ``busy_s``;
  otherwise every ``poll_s``. Other writes to the table (users, files, counters) are on
  the stream too, but push nothing: they set no pace. A page that was full, or held
  events (more are likely), is followed at once; a short page of other writes is not
  (one cut short by its size, 1 MB, of other writes waits ``poll_s`` for the next).
* EventBridge Scheduler -> here: each schedule of shared/routing.py runs its handler
  every ``schedule_s`` seconds (sooner than in AWS, so a local stack settles quickly).
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from functions.events import stream_push
from shared.routing import ROUTES, SCHEDULES
from shared.wiring import Container

log = logging.getLogger("crucible.dispatcher")

Handler = Callable[[dict[str, Any], Container], Any]
RETRY_AFTER_S = 5
PAGE = 100  # stream records a read


class Dispatcher:
    def __init__(
        self,
        container: Container,
        queues: dict[str, str],
        *,
        poll_s: float = 0.1,
        schedule_s: float = 10.0,
        busy_poll_s: float = 0.01,  # while another process publishes: ~35-70 reads/s
        busy_s: float = 10.0,
    ) -> None:
        self.c = container
        self.queues = queues
        self.handlers: dict[str, Handler] = {
            r.name: importlib.import_module(r.handler).handle for r in ROUTES if r.name in queues
        }
        self.poll_s = poll_s
        self.busy_poll_s, self.busy_s = busy_poll_s, busy_s
        self._wake = threading.Event()  # set: read the stream now
        self._unhook: Callable[[], None] | None = None
        self.schedules: dict[str, Handler] = {
            s.name: importlib.import_module(s.handler).handle for s in SCHEDULES
        }
        self.schedule_s = schedule_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.delivered = 0

    def start(self) -> Dispatcher:
        stream = self._stream_arn()
        iterators = self._iterators(stream, "LATEST")  # ready before the server takes requests
        self._unhook = self.c.push.on_publish(self._wake.set)
        loops = [(f"sqs-{name}", self._poll_queue, (name,)) for name in self.handlers]
        loops.append(("schedules", self._run_schedules, ()))
        for name, target, args in [*loops, ("stream", self._poll_stream, (stream, iterators))]:
            t = threading.Thread(
                target=self._guard, args=(target, *args), name=f"dispatch-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
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
    def _poll_queue(self, route: str) -> None:
        sqs, url = self.c.client("sqs"), self.queues[route]
        while not self._stop.is_set():
            out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for msg in out.get("Messages", []):
                if self.dispatch(route, json.loads(msg["Body"])):
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                else:
                    sqs.change_message_visibility(
                        QueueUrl=url,
                        ReceiptHandle=msg["ReceiptHandle"],
                        VisibilityTimeout=RETRY_AFTER_S,
                    )

    def dispatch(self, route: str, event: dict[str, Any]) -> bool:
        """Run a route's handler on one EventBridge event; True when it is done with."""
        try:
            self.handlers[route](event, self.c)
        except Exception:
            log.exception("%s handler failed; the message will be redelivered", route)
            return False
        self.delivered += 1
        return True

    # --- EventBridge Scheduler --------------------------------------------------
    def _run_schedules(self) -> None:
        while not self._stop.wait(self.schedule_s):
            for name, handle in self.schedules.items():
                try:
                    handle({"source": "aws.scheduler", "detail-type": "Scheduled Event"}, self.c)
                except Exception:
                    log.exception(
                        "scheduled %s failed; it runs again in %s s", name, self.schedule_s
                    )

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

    def _events_in(self, records: list[dict[str, Any]]) -> int:
        """How many of the stream's records are events to push (the rest: other writes)."""
        n = 0
        for record in records:
            try:
                n += self.c.push.events.inserted(record) is not None
            except ValueError:  # the push handler logs it
                continue
        return n

    def _poll_stream(self, stream: str, iterators: dict[str, str | None]) -> None:
        streams = self.c.client("dynamodbstreams")
        region = self.c.settings.aws_region
        last_shard_check = last_foreign = time.monotonic()
        woken = False  # this read follows an event published in this process
        while not self._stop.is_set():
            full, pushed = False, 0
            for sid, it in list(iterators.items()):
                if it is None:
                    continue
                out = streams.get_records(ShardIterator=it, Limit=PAGE)
                iterators[sid] = out.get("NextShardIterator")
                records = out.get("Records", [])
                if records:
                    full |= len(records) >= PAGE
                    pushed += self._events_in(records)
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
            now = time.monotonic()
            # Events nobody announced come from another process (a trainer): more are
            # likely, so read often for a while; announced ones need no such watch.
            if pushed and not (woken or self._wake.is_set()):
                last_foreign = now
            if full or pushed:  # more are waiting, or likely
                woken = False
                continue
            quiet = now - last_foreign >= self.busy_s
            woken = self._wake.wait(self.poll_s if quiet else self.busy_poll_s)
            self._wake.clear()
