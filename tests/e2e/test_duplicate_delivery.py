"""Duplicates are normal: every S3, EventBridge and DynamoDB-stream event delivered three
times, interleaved, out of order and three at a time, has exactly one effect.

The module runs on a stage of its own in the emulator (buckets, table with its stream,
EventBridge rules and their queues: functions/local/bootstrap.py), with no dispatcher
polling it: the test takes the real events off the rules' queues (the JSON EventBridge
delivered for a real S3 PutObject, a real PutEvents) and off the table's stream, then
hands each to its handler three times through the dispatcher's own ``dispatch`` (the
local stand-in for Lambda's event source mapping), all copies shuffled and run by three
threads at once. What each handler's work causes (a stored copy, a follow-up event) is
delivered three times in turn, until nothing more comes.

Then it checks what a user would see: each analysis run once, each dataset ingested once
and its stored archive intact, each job's slot taken and given back once with its final
state the last thing its followers hear, each batch's images answered once, one retry
per overdue analysis however many reconcilers run, one subscription per WebSocket
connection however often it connected, and one message per client per stored event.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.events import reconciler, stream_push, websocket
from shared import keys
from shared.models import Principal, TrainingJob
from tests import datasets as make
from tests.audio.synth import cry, wav_bytes

pytestmark = pytest.mark.e2e

BOUNDS = {"analysis_deadline_s": 3, "reconcile_max_retries": 1, "max_active_jobs": 20}
COPIES = 3


def until(condition: Callable[[], Any], what: str, timeout: float = 60, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if got := condition():
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def thrice(deliveries: list[Callable[[], Any]], seed: int) -> list[Any]:
    """Each delivery ``COPIES`` times: every copy of every one shuffled together, run by
    three threads at once (Lambda runs duplicates concurrently too)."""
    copies = [d for d in deliveries for _ in range(COPIES)]
    random.Random(seed).shuffle(copies)
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda deliver: deliver(), copies))


class Stream:
    """The table's DynamoDB stream, read from where it was when the module began: the
    records Lambda's stream mapping would hand to functions/events/stream_push.py."""

    def __init__(self, c) -> None:
        self.c = c
        self.client = c.client("dynamodbstreams")
        table = c.client("dynamodb").describe_table(TableName=c.settings.names.table)["Table"]
        self.arn = table["LatestStreamArn"]
        self.iterators: dict[str, str | None] = {}
        self._shards("LATEST")

    def _shards(self, kind: str) -> None:
        desc = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]
        for shard in desc["Shards"]:
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self.client.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType=kind
                )["ShardIterator"]

    def read(self, quiet: float = 1.5) -> list[dict]:
        """Every record since the last read, once nothing new came for ``quiet`` seconds."""
        out: list[dict] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            self._shards("TRIM_HORIZON")
            got = 0
            for sid, it in list(self.iterators.items()):
                if it is None:
                    continue
                page = self.client.get_records(ShardIterator=it, Limit=100)
                self.iterators[sid] = page.get("NextShardIterator")
                records = page.get("Records", [])
                got += len(records)
                out += [
                    {**r, "eventSourceARN": self.arn, "awsRegion": self.c.settings.aws_region}
                    for r in records
                ]
            if got:
                last = time.monotonic()
            else:
                time.sleep(0.1)
        return out

    def events(self, records: list[dict]) -> list:
        """The ProgressEvents those records inserted, in stream order."""
        found = (self.c.push.events.inserted(r) for r in records)
        return [e for e in found if e is not None]


class World:
    """The module's stage: its container, the dispatcher's ``dispatch`` (never started)
    and the stream."""

    def __init__(self, c, dispatcher, stream: Stream) -> None:
        self.c = c
        self.d = dispatcher
        self.stream = stream
        self.sqs = c.client("sqs")
        self.delivered: Counter[str] = Counter()

    def take(self, wait: float = 2.0) -> list[tuple[str, dict]]:
        """Whatever the rules' queues hold, waiting up to ``wait`` s for a first message."""
        got: list[tuple[str, dict]] = []
        end = time.monotonic() + wait
        while True:
            for route, url in self.c.resources["queues"].items():
                out = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
                for msg in out.get("Messages", []):
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                    got.append((route, json.loads(msg["Body"])))
            if got or time.monotonic() > end:
                return got
            time.sleep(0.1)

    def pump(self, seed: int, first_wait: float = 20.0) -> list[tuple[str, dict]]:
        """Deliver every event on the queues three times, and what that causes, until
        the queues stay empty; every delivery must be done with (not left for a retry)."""
        seen: list[tuple[str, dict]] = []
        wait = first_wait
        while batch := self.take(wait):
            seen += batch
            results = thrice(
                [lambda r=route, e=event: self.d.dispatch(r, e) for route, event in batch], seed
            )
            assert all(results), f"a handler failed on a duplicate of {batch}"
            self.delivered.update(route for route, _ in batch)
            wait = 2.0
        return seen


@pytest.fixture(scope="module")
def world(emulator, tmp_path_factory):
    from functions.local.bootstrap import ensure_resources
    from functions.local.dispatcher import Dispatcher
    from shared.adapters.push import LocalHub
    from shared.settings import load_settings
    from shared.wiring import build

    settings = load_settings(
        stage=f"dd{uuid.uuid4().hex[:8]}",
        rate_limit_per_minute=0,
        data_dir=str(tmp_path_factory.mktemp("duplicates")),
        **BOUNDS,
    )
    c = build(settings, hub=LocalHub())
    c.resources = ensure_resources(c)
    return World(c, Dispatcher(c, c.resources["queues"]), Stream(c))


def a_user(c) -> Principal:
    user = c.auth.register(email=f"{uuid.uuid4().hex[:10]}@example.com", password="password123")
    return Principal(user_id=user.id, role="user")


class Inbox:
    """A WebSocket client of the local hub: what it received, by event id."""

    def __init__(self, c, principal: Principal, topics: list[str]) -> None:
        self.cid = f"dd-{uuid.uuid4().hex[:12]}"
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        c.hub.register(self.cid, self._got)
        c.push.connect(principal, self.cid, topic=topics[0])
        for topic in topics[1:]:
            c.push.subscribe(self.cid, topic)

    def _got(self, text: str) -> bool:
        with self._lock:
            self.messages.append(json.loads(text))
        return True

    def per_event(self) -> Counter[str]:
        return Counter(m["event_id"] for m in self.messages)


@pytest.fixture
def analysed_calls(world, monkeypatch):
    """How many times an analysis actually ran (the work, not the events about it)."""
    calls: list[int] = []
    real = world.c.audio._analyse

    def counted(f, progress):
        calls.append(f.id)
        return real(f, progress)

    monkeypatch.setattr(world.c.audio, "_analyse", counted)
    return calls


def upload_recording(world, principal: Principal) -> int:
    """A presigned upload of a short cry, its bytes PUT to S3 as a browser would."""
    data = wav_bytes(cry(16_000, 2.0, [(0.3, 1.0, 450.0), (1.2, 1.8, 500.0)]), 16_000)
    intent = world.c.audio_uploads.presign(principal, "cry.wav", len(data), "audio/wav", None)
    world.c.uploads.put(intent["key"], data, content_type="audio/wav")
    return int(intent["file_id"])


# --- S3 Object Created (s3_object, analysis), Analysis Requested (analysis) --------------
def test_an_upload_delivered_thrice_is_registered_and_analysed_once(world, analysed_calls):
    c = world.c
    owner = a_user(c)
    file_id = upload_recording(world, owner)
    seen = world.pump(seed=1)
    routes = Counter(route for route, _ in seen)
    assert routes["object-created"] >= 1 and routes["audio-uploaded"] >= 1, routes

    f = c.audio.files.get(file_id)
    assert f.status == "completed", (f.status, f.error)
    assert analysed_calls == [file_id]  # three deliveries, one analysis
    first_task = f.task_id
    stored = c.artifacts.get(keys.analysis_results(file_id, first_task) + keys.ANALYSIS_RESULT)
    assert json.loads(stored)["task_id"] == first_task

    events = world.stream.events(world.stream.read())
    arrivals = [e for e in events if e.data.get("status") == "object_received"]
    assert len(arrivals) == 1 and arrivals[0].topic == f"user:{owner.user_id}"
    ends = [e for e in events if e.topic == f"file:{file_id}" and e.data.get("status")]
    assert [e.data["status"] for e in ends].count("completed") == 1, ends

    # "Analysis Requested" (POST /analysis/{id}/start) thrice: one more run, one new task
    c.audio.request_analysis(owner, file_id)
    seen = world.pump(seed=2)
    assert [route for route, _ in seen] == ["analysis-requested"]
    f = c.audio.files.get(file_id)
    assert f.status == "completed" and f.task_id != first_task
    assert analysed_calls == [file_id, file_id]
    assert not list(c.artifacts.keys(keys.analysis_results(file_id, first_task)))  # replaced


# --- S3 Object Created (datasets) ---------------------------------------------------------
def test_a_dataset_arrival_delivered_thrice_is_ingested_once_and_kept(world):
    c = world.c
    owner = a_user(c)
    archive = make.imagefolder(per_class=3)
    intent = c.datasets.presign(owner, name="shapes", size=len(archive))
    c.uploads.put(intent["key"], archive, content_type="application/zip")
    seen = world.pump(seed=3)
    assert "dataset-uploaded" in {route for route, _ in seen}

    d = c.datasets.datasets.get(intent["dataset_id"])
    assert d.status == "ready", (d.status, d.error)
    # the archive and statistics it was read from are kept: no duplicate's clean-up took them
    assert c.uploads.exists(d.key), d.key
    assert c.uploads.exists(keys.dataset_statistics_of(d.key))
    assert not c.uploads.exists(intent["key"])  # the arrival itself is never read again
    events = world.stream.events(world.stream.read())
    settled = [e for e in events if e.topic == f"dataset:{d.id}"]
    assert [e.data["status"] for e in settled] == ["ready"], settled


# --- Batch Job State Change (batch_state) --------------------------------------------------
@pytest.mark.parametrize("order", ["reversed", 4, 5, 6])  # reversed, or shuffled by a seed
def test_batch_states_delivered_thrice_move_a_job_forward_once(world, order):
    from shared.adapters.runners import BATCH_EVENT, LOCAL_QUEUE_ARN
    from shared.routing import LOCAL_BATCH_SOURCE

    c = world.c
    owner = a_user(c)
    job = c.job_repository.create(
        TrainingJob(
            id=0,
            owner_id=owner.user_id,
            framework="timm",
            model_name="resnet10t",
            task_type="image_classification",
        )
    )
    runner_id = f"local-{uuid.uuid4().hex[:12]}"
    queued = c.jobs.advance(job.id, "queued", acquire={"jobs": None}, runner_job_id=runner_id)
    assert queued is not None and c.job_repository.active(owner.user_id)["jobs"] == 1
    inbox = Inbox(c, owner, [f"job:{job.id}"])
    world.stream.read(quiet=0.5)  # what came before the job's events

    statuses = ["SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    if order == "reversed":
        statuses.reverse()
    for status in statuses:  # as the local runner reports them (shared/adapters/runners.py)
        c.bus.put_event(
            BATCH_EVENT,
            {
                "jobId": runner_id,
                "jobName": f"crucible-trainer-{job.id}",
                "jobQueue": LOCAL_QUEUE_ARN.format(c.settings.names.gpu_queue),
                "status": status,
                "parameters": {
                    "job_id": str(job.id),
                    "job_type": "trainer",
                    "attempt": str(queued.attempt),
                },
                "createdAt": int(time.time() * 1000),
            },
            source=LOCAL_BATCH_SOURCE,
        )
    events = []
    while len(events) < len(statuses):  # all five taken before any is delivered
        got = world.take(wait=20)
        assert got, f"only {len(events)} of {len(statuses)} Batch events arrived"
        events += got
    if order == "reversed":  # as sent: the end first
        events.sort(key=lambda e: statuses.index(e[1]["detail"]["status"]))
        for route, event in events:
            assert all(world.d.dispatch(route, event) for _ in range(COPIES))
    else:
        results = thrice([lambda r=r, e=e: world.d.dispatch(r, e) for r, e in events], order)
        assert all(results)

    assert c.job_repository.get(job.id).status == "completed"
    assert c.job_repository.active(owner.user_id)["jobs"] == 0  # given back once, not thrice
    stored = [e for e in world.stream.events(world.stream.read()) if e.topic == f"job:{job.id}"]
    for e in stored:  # once each, in stream order (the stream's own duplicates: below)
        c.push.deliver(e)
    told = [m["data"].get("batch_status") for m in inbox.messages]
    assert told.count("SUCCEEDED") == 1, told
    assert told[-1] == "SUCCEEDED", f"the end must be the last thing followers hear: {told}"
    assert len(told) == len(set(told)), f"a status told twice: {told}"


def test_evaluator_states_delivered_thrice_end_a_leaderboard_job_once(world):
    """An evaluator that died (its runner job FAILED before it reported): the leaderboard
    job fails once, its slot among the user's concurrent jobs is given back once."""
    from shared.adapters.runners import BATCH_EVENT, LOCAL_QUEUE_ARN
    from shared.models import Evaluation
    from shared.routing import LOCAL_BATCH_SOURCE

    c = world.c
    owner = a_user(c)
    evaluations = c.evaluations.jobs

    def new_job() -> Evaluation:
        return Evaluation(
            id=uuid.uuid4().hex[:16],
            owner_id=owner.user_id,
            submission_id=uuid.uuid4().hex[:16],
            resource_class="small",
            deadline=time.time() + 3600,
        )

    job = new_job()
    assert evaluations.create(job, cap=1)
    runner_id = f"local-{uuid.uuid4().hex[:12]}"
    for status in ("RUNNABLE", "RUNNING", "FAILED"):
        c.bus.put_event(
            BATCH_EVENT,
            {
                "jobId": runner_id,
                "jobQueue": LOCAL_QUEUE_ARN.format(c.settings.names.cpu_queue),
                "status": status,
                "statusReason": "exit code 137",
                "parameters": {"job_id": job.id, "job_type": "evaluator"},
            },
            source=LOCAL_BATCH_SOURCE,
        )
    seen = world.pump(seed=13)
    assert [route for route, _ in seen].count("batch-job-state-change") == 3
    ended = evaluations.get(job.id)
    assert ended.status == "failed" and "exit code 137" in ended.error, ended
    events = world.stream.events(world.stream.read())
    failures = [e for e in events if e.topic == f"job:{job.id}" and e.kind == "error"]
    assert len(failures) == 1, failures
    # the slot came back once: one job fits under a cap of 1 again, and only one
    assert evaluations.create(new_job(), cap=1)
    assert not evaluations.create(new_job(), cap=1)


# --- Batch Inference Requested (batch_inference) ---------------------------------------------
def test_a_batch_inference_request_delivered_thrice_answers_each_image_once(world):
    c = world.c
    owner = a_user(c)
    job = c.job_repository.create(
        TrainingJob(
            id=0,
            owner_id=owner.user_id,
            framework="timm",
            model_name="resnet10t",
            task_type="image_classification",
        )
    )
    batch_id = keys.new_batch_id()
    images = []
    for i in range(4):  # not images: each one's own error is its answer (no model needed)
        key = keys.batch_image(job.id, batch_id, i)
        c.artifacts.put(key, b"not an image %d" % i, content_type="image/png")
        images.append({"key": key})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {
        "batch_id": batch_id,
        "workflow_id": job.id,
        "owner_id": owner.user_id,
        "requested_by": owner.user_id,
        "checkpoint": keys.best_checkpoint(job.id),
        "model_version": "v1",
        "options": {},
        "created_at": now,
        "estimated_completion_time": now,
        "images": images,
    }
    c.artifacts.put(keys.batch_request(job.id, batch_id), json.dumps(record).encode())
    from shared.services.inference import BATCH_REQUESTED

    c.bus.put_event(BATCH_REQUESTED, {"workflow_id": job.id, "batch_id": batch_id})
    seen = world.pump(seed=5)
    assert [route for route, _ in seen] == ["batch-inference-requested"]
    result = json.loads(c.artifacts.get(keys.batch_result(job.id, batch_id)))
    assert result["status"] == "completed"
    assert sorted(r["index"] for r in result["results"]) == [0, 1, 2, 3]  # each once
    assert all("error" in r for r in result["results"])


# --- the reconciler's schedule -------------------------------------------------------------
def test_reconcilers_run_thrice_at_once_retry_an_overdue_analysis_once(world, analysed_calls):
    c = world.c
    owner = a_user(c)
    file_id = upload_recording(world, owner)
    world.pump(seed=6)
    assert c.audio.files.get(file_id).status == "completed"
    stuck = c.audio.request_analysis(owner, file_id)  # its worker dies: the event is lost
    lost = world.take(wait=20)
    assert [route for route, _ in lost] == ["analysis-requested"]
    until(
        lambda: any(
            d.data.get("task_id") == stuck.task_id for d in c.deadlines.due(time.time(), limit=100)
        ),
        "the analysis to be overdue",
        timeout=30,
    )
    scheduled = {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}
    reports = thrice([lambda: reconciler.handle(scheduled, c)], seed=7)

    f = c.audio.files.get(file_id)
    assert f.task_id != stuck.task_id and f.status == "processing", (f.status, reports)
    retried = world.take(wait=5)
    assert [route for route, _ in retried] == ["analysis-requested"], retried  # one retry
    assert retried[0][1]["detail"]["task_id"] == f.task_id
    results = thrice([lambda: world.d.dispatch(*retried[0])], seed=8)
    assert all(results)
    assert c.audio.files.get(file_id).status == "completed"
    assert analysed_calls.count(file_id) == 2  # the upload's run and the retry's, once each
    events = world.stream.events(world.stream.read())
    retries = [e for e in events if "Retrying" in str(e.data.get("message", ""))]
    assert len(retries) == 1, retries


# --- WebSocket routes (websocket) ------------------------------------------------------------
def test_websocket_routes_delivered_thrice_keep_one_connection_and_one_subscription(world):
    c = world.c
    owner = a_user(c)
    token = c.auth.issue(c.auth.users.get(owner.user_id)).access_token
    cid = f"dd-{uuid.uuid4().hex[:12]}"
    got: list[dict] = []
    c.hub.register(cid, lambda text: got.append(json.loads(text)) or True)

    def route(key: str, **extra) -> Callable[[], dict]:
        event = {"requestContext": {"routeKey": key, "connectionId": cid}, **extra}
        return lambda: websocket.handle(event, c)

    connect = route("$connect", queryStringParameters={"token": token, "format": "crucible"})
    assert all(r["statusCode"] == 200 for r in thrice([connect], seed=9))
    topic = f"user:{owner.user_id}"
    subscribe = route("$default", body=json.dumps({"action": "subscribe", "topic": topic}))
    ping = route("$default", body=json.dumps({"action": "ping"}))
    assert all(r["statusCode"] == 200 for r in thrice([subscribe, ping], seed=10))
    assert [s.connection_id for s in c.push.registry.subscribers(topic)].count(cid) == 1

    from shared.events import ProgressEvent

    event = ProgressEvent(topic=topic, kind="log", event_id=uuid.uuid4().hex, data={"n": 1})
    assert c.push.deliver(event) == 1 and len(got) == 1  # one subscription: one message

    disconnect = route("$disconnect")
    assert all(r["statusCode"] == 200 for r in thrice([disconnect], seed=11))
    assert c.push.registry.get(cid) is None
    # a duplicate $connect arriving after the socket closed leaves a registration that the
    # next delivery finds gone, and drops: nothing is sent to a closed socket
    c.hub.unregister(cid)
    connect()
    later = ProgressEvent(topic=topic, kind="log", event_id=uuid.uuid4().hex, data={"n": 2})
    assert c.push.deliver(later) == 0 and len(got) == 1
    assert c.push.registry.get(cid) is None


# --- DynamoDB stream -> WebSocket (stream_push) ------------------------------------------------
def test_stream_records_delivered_thrice_reach_each_client_once(world):
    c = world.c
    owner = a_user(c)
    inbox = Inbox(c, owner, [f"user:{owner.user_id}"])
    other = Inbox(c, owner, [f"user:{owner.user_id}"])  # a second tab of the same user
    world.stream.read(quiet=0.5)
    from shared.events import ProgressEvent

    for n in range(5):
        c.push.publish(
            ProgressEvent(
                topic=f"user:{owner.user_id}", kind="log", event_id=f"dd-{uuid.uuid4().hex}-{n}"
            )
        )
    records = until(lambda: world.stream.read(), "the stored events on the stream")
    mine = [r for r in records if c.push.events.inserted(r) is not None]
    assert len(mine) == 5
    results = thrice([lambda r=r: stream_push.handle({"Records": [r]}, c) for r in mine], seed=12)
    assert all(not out.get("batchItemFailures") for out in results)
    for client in (inbox, other):
        counts = client.per_event()
        assert len(counts) == 5 and set(counts.values()) == {1}, counts
