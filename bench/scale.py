"""Scale by simulation: does any DynamoDB key, list call, item, message or push outgrow AWS?

Drives the real services and adapters (``shared.wiring.build``) against the embedded
emulator (MiniStack, as the tests start it) with a simulated population at several sizes,
records every DynamoDB call by partition key, and prints per size, beside the AWS limit:

* the hottest partition key (base table or index) and its write units per simulated second
  (AWS: 1,000 WCU/s per partition);
* items read per list call (a researcher's page of everyone's files): the first page, a
  page at an offset, and a cursor walk where the code has cursors (AWS: 1 MB per query
  page); per size, and on the largest population's table filled to ``--list-files``
  (300 and 600 files) through the upload path's repository: a page may read a constant
  overhead (index partitions), but no more when the table doubles;
* the largest item written (400 KB) and the largest WebSocket message (128 KB);
* the hottest atomic counter (id blocks, sharded counts): writes per simulated second;
* push time for one job watched by many subscribers, through the stream handler
  (functions/events/stream_push.py) and the real ``ApiGatewayNotifier`` posting to a local
  ``@connections`` endpoint that answers each post after ``--post-latency-ms`` (20 ms, what
  API Gateway's management API takes from inside a region), against the stream
  function's timeout as the CDK app sets it (a batch past it is stopped there, as Lambda
  would, and reported with the posts it made).

The workload, on a simulated clock: every user uploads one recording a minute
(``--recordings`` minutes); each upload goes through ``AudioUploadService.upload`` and the
analysis event handler (functions/events/analysis.py). The first ``--real-analyses`` run
the real DSP on a synthesized cry-like WAV; the others replay the progress steps and the
result those made (the DynamoDB writes are the same; the DSP is not what is measured). One
user in ``--job-every`` trains: a job created, queued, started, one epoch a minute with six
progress reports and a validation (10 classes) through ``shared.services.reporting``, then
completed. One further job reports a validation of ``--classes`` classes (per-class metrics
and the confusion matrix), the largest result the platform produces.

A rate is (writes to a key) / (simulated duration); the workload spreads evenly over it,
so a burst runs hotter than this mean. Sign-ups (and the researcher's) happen before the
simulated minutes and are not in the rates: a population signs up over days, not in the
minute it uploads in; what one sign-up writes is counted apart. Verdicts: OVER LIMIT (past the AWS limit at a
measured size), GROWS (rising with the population so that, extrapolated, it passes the
limit before ``--target-users``), OK. Exit status 1 when any figure is not OK.

Run from the project's root (it imports the project from the working directory, so it can
measure an older tree too)::

    .venv/bin/python bench/scale.py                 # 10, 50, 250 users (minutes)
    .venv/bin/python bench/scale.py --quick         # CI size (2 and 20 users)
    .venv/bin/python bench/scale.py --sizes 10,100,1000 --json out.json

Every DynamoDB call the emulator answers takes its own time (printed), tens of ms on a
busy machine against a few in AWS: wall times and push times here are upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The project under measurement is the one in the working directory (or PYTHONPATH), not
# necessarily the tree this file lives in.
sys.path.insert(0, os.getcwd())

# --- AWS limits (service quotas; the defaults an account starts with) --------------------
PARTITION_WCU = 1000  # write units per second per partition (base table or index)
ITEM_BYTES = 400 * 1024  # DynamoDB item
QUERY_PAGE_BYTES = 1024 * 1024  # one Query/Scan response
WS_FRAME_BYTES = 128 * 1024  # one WebSocket message through API Gateway
API_TIMEOUT_S = 29  # API Gateway integration timeout
LAMBDA_DEFAULT_TIMEOUT_S = (
    30  # the CDK app's default for a function (infra/constructs/functions.py)
)


def stream_push_timeout() -> int:
    """The stream consumer's Lambda timeout as the CDK app under measurement sets it."""
    source = Path("infra/constructs/functions.py")
    text = source.read_text() if source.exists() else ""
    added = re.search(r'"StreamPush"[^)]*', text)  # the arguments of its add(...)
    found = re.search(r"timeout=(\d+)", added.group(0)) if added else None
    return int(found.group(1)) if found else LAMBDA_DEFAULT_TIMEOUT_S


STREAM_PUSH_TIMEOUT_S = stream_push_timeout()

# The simulated users never sign in: a hash no password matches (and no bcrypt cost).
NO_PASSWORD = "!"  # noqa: S105
SIM_MINUTE = 60.0  # simulated seconds per round of the workload
ONE_OFF = ("setup", "signup")  # scopes whose writes are not in the per-second rates

# DynamoDB write/read unit sizes, and what a transaction costs in units
WRITE_UNIT, READ_UNIT = 1024, 4096
ROOT = Path(__file__).resolve().parent.parent
MINISTACK = Path(os.environ.get("CRUCIBLE_MINISTACK", ROOT / ".ministack" / "bin" / "ministack"))


# --- DynamoDB item sizes (AWS's rules: names + values; numbers ~ digits / 2 + 1) ----------
def value_size(v: dict[str, Any]) -> int:
    ((kind, x),) = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        digits = len(x.strip("-").replace(".", "").lstrip("0")) or 1
        return 1 + math.ceil(digits / 2)
    if kind == "B":
        return len(x) if isinstance(x, bytes | bytearray) else len(str(x))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: e}) for e in x)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(e) for k, e in x.items())
    return len(json.dumps(x))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def key_family(index: str, key: str) -> str:
    """A partition key with its numbers as ``#``: the keys of one kind (one per user, job or
    shard) fall in one family."""
    return f"{index}: {re.sub(r'[0-9]+', '#', key)}"


def units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
_NOT_NAMES = {"SET", "REMOVE", "ADD", "DELETE", "if_not_exists", "list_append", "AND", "OR"}


def touched(params: dict[str, Any]) -> set[str]:
    """The attribute names an UpdateItem's expression changes."""
    expr = params.get("UpdateExpression", "")
    names = params.get("ExpressionAttributeNames", {})
    out = {names[t] for t in re.findall(r"#\w+", expr) if t in names}
    bare = re.sub(r"[#:]\w+", " ", expr)
    out |= {t for t in re.findall(r"[A-Za-z_]\w*", bare) if t not in _NOT_NAMES}
    return out


def _s(v: dict[str, Any] | None) -> str | None:
    if not v:
        return None
    ((_, x),) = v.items()
    return str(x)


# --- the recorder ---------------------------------------------------------------------
@dataclass
class Index:
    name: str
    pk: str
    sk: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: frozenset[str] = frozenset()


@dataclass
class ScopeStats:
    calls: Counter = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    items_read: int = 0
    bytes_read: int = 0
    events: int = 0  # events published (event items written)
    n: int = 0  # how many times the scope ran


class Recorder:
    """Every DynamoDB call of one client: writes by partition (base table and each index,
    from the item's keys), write and read units, items read, item sizes, by scope (per
    thread); S3 and EventBridge calls counted. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.indexes: list[Index] = []
        self.table_keys = ("PK", "SK")
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.writes: Counter = Counter()  # (index or "table", pk value) -> write units
            self.write_ops: Counter = Counter()  # same, in requests
            self.counters: Counter = Counter()  # (pk, sk) of ADD updates -> writes
            self.shadow: dict[tuple[str, str], dict[str, Any]] = {}
            self.largest: tuple[int, str] = (0, "")
            self.refused: list[str] = []  # writes DynamoDB refused for their size
            self.scopes: dict[str, ScopeStats] = defaultdict(ScopeStats)
            self.event_items: list[dict[str, Any]] = []
            self.latency: list[float] = []
            self.other: Counter = Counter()  # S3 and EventBridge calls, "service:Operation"  # seconds per DynamoDB call, in the emulator

    # scope ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[ScopeStats]:
        previous = getattr(self.local, "scope", None)
        self.local.scope = name
        with self.lock:
            stats = self.scopes[name]
            stats.n += 1
        try:
            yield stats
        finally:
            self.local.scope = previous

    def _stats(self) -> ScopeStats | None:
        name = getattr(self.local, "scope", None)
        return self.scopes[name] if name else None

    # attach --------------------------------------------------------------------------
    def attach(self, container: Any) -> None:
        ddb = container.client("dynamodb")
        described = ddb.describe_table(TableName=container.settings.names.table)["Table"]
        keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
        self.table_keys = (keys["HASH"], keys.get("RANGE"))
        self.indexes = []
        for gsi in described.get("GlobalSecondaryIndexes", []):
            ks = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
            proj = gsi.get("Projection", {})
            self.indexes.append(
                Index(
                    gsi["IndexName"],
                    ks["HASH"],
                    ks.get("RANGE"),
                    proj.get("ProjectionType", "ALL"),
                    frozenset(proj.get("NonKeyAttributes", [])),
                )
            )
        ddb.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        ddb.meta.events.register("after-call.dynamodb.*", self._after)
        for service in ("s3", "events"):
            container.client(service).meta.events.register(
                f"after-call.{service}.*", self._count_other
            )

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["h6_params"] = params
        context["h6_began"] = time.perf_counter()
        # the size of every item a request tries to write, written or refused
        items = [params["Item"]] if "Item" in params else []
        items += [e["Put"]["Item"] for e in params.get("TransactItems", []) if "Put" in e]
        for item in items:
            if _s(item.get("type")) == "event":
                with self.lock:
                    self.event_items.append(item)
                    stats = self._stats()
                    if stats is not None:
                        stats.events += 1
            size = item_size(item)
            if size > self.largest[0]:
                with self.lock:
                    base = self._base(item)
                    self.largest = max(self.largest, (size, f"{base[0]} / {base[1]}"))

    def _count_other(self, model: Any, **_: Any) -> None:
        """S3 and EventBridge calls, by phase (S3 transfers run in threads of their own)."""
        with self.lock:
            self.other[f"{model.service_model.service_name}:{model.name}"] += 1

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params = context.get("h6_params") or {}
        op = model.name
        if "h6_began" in context:
            with self.lock:
                self.latency.append(time.perf_counter() - context["h6_began"])
        failed = "Error" in parsed and bool(parsed["Error"].get("Code"))
        with self.lock:
            stats = self._stats()
            if stats is not None:
                stats.calls[op] += 1
            if op == "PutItem":
                self._write(stats, params["Item"], failed=failed)
            elif op == "UpdateItem":
                self._update(stats, params, parsed, failed=failed)
            elif op == "DeleteItem":
                self._delete(stats, params["Key"], failed=failed)
            elif op == "TransactWriteItems":
                for entry in params.get("TransactItems", []):
                    if "Put" in entry:
                        self._write(stats, entry["Put"]["Item"], failed=failed, factor=2)
                    elif "Update" in entry:
                        self._update(stats, entry["Update"], {}, failed=failed, factor=2)
                    elif "Delete" in entry:
                        self._delete(stats, entry["Delete"]["Key"], failed=failed, factor=2)
                    elif "ConditionCheck" in entry and stats is not None:
                        stats.rru += 2
            elif op == "BatchWriteItem":
                for requests in params.get("RequestItems", {}).values():
                    for r in requests:
                        if "PutRequest" in r:
                            self._write(stats, r["PutRequest"]["Item"], failed=failed)
                        else:
                            self._delete(stats, r["DeleteRequest"]["Key"], failed=failed)
            elif op == "GetItem":
                item = parsed.get("Item")
                size = item_size(item) if item else 0
                if item:
                    self._remember(item)
                if stats is not None:
                    stats.items_read += 1 if item else 0
                    stats.bytes_read += size
                    strong = params.get("ConsistentRead")
                    stats.rru += units(size, READ_UNIT) * (1 if strong else 0.5)
            elif op in ("Query", "Scan"):
                items = parsed.get("Items", [])
                size = sum(item_size(i) for i in items)
                for i in items:
                    if "IndexName" not in params:
                        self._remember(i)
                if stats is not None:
                    stats.items_read += int(parsed.get("ScannedCount", len(items)))
                    stats.bytes_read += size
                    strong = params.get("ConsistentRead")
                    stats.rru += units(size, READ_UNIT) * (1 if strong else 0.5)
            elif op == "BatchGetItem":
                for items in parsed.get("Responses", {}).values():
                    size = sum(item_size(i) for i in items)
                    if stats is not None:
                        stats.items_read += len(items)
                        stats.bytes_read += size
                        stats.rru += sum(units(item_size(i), READ_UNIT) * 0.5 for i in items)

    # write bookkeeping (called under the lock) ----------------------------------------
    def _base(self, key_or_item: dict[str, Any]) -> tuple[str, str]:
        pk, sk = self.table_keys
        return _s(key_or_item.get(pk)) or "", _s(key_or_item.get(sk)) if sk else ""

    def _index_keys(self, item: dict[str, Any]) -> dict[str, str]:
        return {
            ix.name: _s(item[ix.pk]) for ix in self.indexes if ix.pk in item and _s(item[ix.pk])
        }

    def _remember(self, item: dict[str, Any]) -> None:
        self.shadow[self._base(item)] = {"gsi": self._index_keys(item), "size": item_size(item)}

    def _steady(self) -> bool:
        """Is this write part of the simulated minutes (not a sign-up before them)?"""
        return getattr(self.local, "scope", None) not in ONE_OFF

    def _charge(self, stats: ScopeStats | None, where: str, pk: str, wu: float) -> None:
        if stats is not None:
            stats.wru += wu
        if not self._steady():
            return
        self.writes[(where, pk)] += wu
        self.write_ops[(where, pk)] += 1

    def _write(
        self,
        stats: ScopeStats | None,
        item: dict[str, Any],
        *,
        failed: bool,
        factor: int = 1,
    ) -> None:
        base = self._base(item)
        size = item_size(item)
        if size > self.largest[0]:
            self.largest = (size, f"{base[0]} / {base[1]}")
        if failed:
            self._charge(stats, "table", base[0], factor)
            if size > ITEM_BYTES:
                self.refused.append(f"{base[0]} ({size // 1024} KB)")
            return
        old = self.shadow.get(base, {"gsi": {}})["gsi"]
        self._charge(stats, "table", base[0], units(size, WRITE_UNIT) * factor)
        new = self._index_keys(item)
        for ix in self.indexes:
            if ix.name in new:
                proj = size if ix.projection != "KEYS_ONLY" else 100
                self._charge(stats, ix.name, new[ix.name], units(proj, WRITE_UNIT))
            if ix.name in old and old[ix.name] != new.get(ix.name):
                self._charge(stats, ix.name, old[ix.name], 1)
        self.shadow[base] = {"gsi": new, "size": size}

    def _update(
        self,
        stats: ScopeStats | None,
        params: dict[str, Any],
        parsed: dict[str, Any],
        *,
        failed: bool,
        factor: int = 1,
    ) -> None:
        base = self._base(params["Key"])
        if "ADD" in params.get("UpdateExpression", "") and self._steady():
            self.counters[base] += 1
        known = self.shadow.get(base)
        after = (
            parsed.get("Attributes")
            if parsed.get("Attributes") and (params.get("ReturnValues") == "ALL_NEW")
            else None
        )
        size = item_size(after) if after else (known or {}).get("size", 0)
        if size > self.largest[0]:
            self.largest = (size, f"{base[0]} / {base[1]}")
        if failed:
            self._charge(stats, "table", base[0], factor)
            return
        self._charge(stats, "table", base[0], units(size, WRITE_UNIT) * factor)
        changed = touched(params)
        old = (known or {}).get("gsi", {})
        new = self._index_keys(after) if after else dict(old)
        for ix in self.indexes:
            if ix.name not in new and ix.name not in old:
                continue
            keys_changed = bool({ix.pk, ix.sk} & changed)
            if ix.projection == "ALL":
                hit = True
            elif ix.projection == "INCLUDE":
                hit = keys_changed or bool(ix.include & changed)
            else:
                hit = keys_changed
            if not hit:
                continue
            if ix.name in new:
                proj = size if ix.projection == "ALL" else 100
                self._charge(stats, ix.name, new[ix.name], units(proj, WRITE_UNIT))
            if ix.name in old and old[ix.name] != new.get(ix.name):
                self._charge(stats, ix.name, old[ix.name], 1)
        self.shadow[base] = {"gsi": new, "size": size}

    def _delete(
        self, stats: ScopeStats | None, key: dict[str, Any], *, failed: bool, factor: int = 1
    ) -> None:
        base = self._base(key)
        known = self.shadow.pop(base, None) or {"gsi": {}, "size": 0}
        self._charge(stats, "table", base[0], units(known["size"], WRITE_UNIT) * factor)
        if failed:
            return
        for name, pk in known["gsi"].items():
            self._charge(stats, name, pk, 1)


# --- a local @connections endpoint ------------------------------------------------------
class ConnectionsEndpoint:
    """Answers API Gateway's management API (``POST /@connections/{id}``) after
    ``latency_s``, as a region's endpoint does; counts posts and the largest body."""

    def __init__(self, latency_s: float) -> None:
        outer = self
        self.fast = threading.Event()  # set: answer at once (the measured window is over)
        self.posts = 0
        self.largest = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not outer.fast.is_set():
                    time.sleep(latency_s)
                with outer.lock:
                    outer.posts += 1
                    outer.largest = max(outer.largest, len(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self) -> None:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ConnectionsEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the workload ---------------------------------------------------------------------
def cry_wav(seconds: float = 6.0, rate: int = 16000) -> bytes:
    """A cry-like recording: three harmonic bursts near 450 Hz with vibrato, in quiet noise."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(7)
    x = 0.003 * rng.standard_normal(t.size)
    for start in (0.5, 2.2, 3.9):
        on = (t >= start) & (t < start + 1.1)
        f0 = 450 + 40 * np.sin(2 * np.pi * 5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        burst = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 6))
        x = x + on * burst * np.hanning(on.sum()).max()
    pcm = (np.clip(x, -1, 1) * 32000).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


class Replay:
    """The analysis's DSP, measured once for real and then replayed: the same progress
    steps and the same result and views, so the writes are those of a real analysis."""

    def __init__(self, audio: Any) -> None:
        self.real = audio._analyse
        self.uploads = audio.uploads
        self.steps: list[tuple[int, str]] | None = None
        self.out: tuple[dict, dict] | None = None
        self.lock = threading.Lock()

    def __call__(self, f: Any, progress: Callable[[int, str], None]) -> tuple[dict, dict]:
        with self.lock:
            steps, out = self.steps, self.out
        if steps is None or out is None:
            seen: list[tuple[int, str]] = []

            def record(pct: int, message: str) -> None:
                seen.append((pct, message))
                progress(pct, message)

            result = self.real(f, record)
            with self.lock:
                self.steps, self.out = seen, result
            return result
        with tempfile.TemporaryDirectory() as tmp:  # the recording is read, as for real
            self.uploads.download(f.key, str(Path(tmp) / "audio"))
        for pct, message in steps:
            progress(pct, message)
        return out


def s3_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    """EventBridge's "Object Created" for an upload, as S3 sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "000000000000",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": uuid.uuid4().hex, "sequencer": "1"},
            "request-id": uuid.uuid4().hex,
            "requester": "000000000000",
            "reason": "PutObject",
        },
    }


def stream_record(item: dict[str, Any], seq: int, table: str) -> dict[str, Any]:
    """A DynamoDB stream record of ``item``'s insert, as Lambda's event source hands it over."""
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": time.time(),
            "Keys": {"PK": item["PK"], "SK": item["SK"]},
            "NewImage": item,
            "SequenceNumber": f"{seq:021d}",
            "SizeBytes": item_size(item),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026",
    }


def call(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn`` with the keyword arguments it accepts (the code under measurement may be an
    older or newer version of an API: a cursor it lacks is not passed)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def accepts(fn: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(fn).parameters


def page_cursor(page: Any) -> str | None:
    for name in ("next_cursor", "cursor", "next"):
        value = getattr(page, name, None)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass
class Lists:
    """What listing everyone's files cost on a table of ``files`` files."""

    files: int
    first_items: int
    first_bytes: int
    deep_skip: int
    deep_items: int | None
    deep_bytes: int | None
    deep_note: str
    cursor_items: float | None
    cursor_bytes: float | None


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return int(status) if status is not None else None


def measure_lists(
    c: Any, recorder: Recorder, reader: Any, files: int, deep_skip: int, page_size: int
) -> Lists:
    """A researcher's first page of everyone's files, a page at offset ``deep_skip``, and
    up to five pages by cursor where the code has cursors: items and bytes each read."""
    tag = f"{files}:{uuid.uuid4().hex[:6]}"
    with recorder.scope(f"list:first:{tag}") as st:
        page = call(c.audio.list, actor=reader, skip=0, limit=page_size)
    first_items, first_bytes = st.items_read, st.bytes_read
    deep_note = ""
    with recorder.scope(f"list:deep:{tag}") as st:
        try:
            call(c.audio.list, actor=reader, skip=deep_skip, limit=page_size)
        except Exception as exc:  # a refused offset must say why, as a 4xx
            status = _status(exc)
            if status is None or not 400 <= status < 500:
                raise
            deep_note = f"refused ({status})"
    deep_items, deep_bytes = (None, None) if deep_note else (st.items_read, st.bytes_read)
    cursor_items = cursor_bytes = None
    if accepts(c.audio.list, "cursor") and page_cursor(page):
        cursor, pages = page_cursor(page), 0
        with recorder.scope(f"list:cursor:{tag}") as st:
            while cursor and pages < 5:
                nxt = call(c.audio.list, actor=reader, skip=0, limit=page_size, cursor=cursor)
                cursor, pages = page_cursor(nxt), pages + 1
        cursor_items = st.items_read / max(pages, 1)
        cursor_bytes = st.bytes_read / max(pages, 1)
    return Lists(
        files,
        first_items,
        first_bytes,
        deep_skip,
        deep_items,
        deep_bytes,
        deep_note,
        cursor_items,
        cursor_bytes,
    )


def fill(c: Any, owners: list[Any], count: int, workers: int) -> None:
    """``count`` more registered files, spread over ``owners``, through the upload path's
    own repository (the item and whatever the adapter indexes it under; no audio bytes:
    only the table's size matters here)."""
    from shared import keys
    from shared.models import AudioFile

    files = c.audio_uploads.files

    def one(i: int) -> None:
        owner = owners[i % len(owners)]
        file_id = files.next_id()
        key = keys.audio_arrival(owner.id, file_id, "wav")
        files.create(
            AudioFile(
                id=file_id,
                owner_id=owner.id,
                filename=Path(key).name,
                original_filename="cry.wav",
                key=key,
                file_size=192_044,
                sample_rate=16_000,
                duration=6.0,
                channels=1,
                format="wav",
                content_type="audio/wav",
                recording_start_time=None,
            )
        )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))


@dataclass
class Args:
    sizes: list[int]
    recordings: int
    job_every: int
    real_analyses: int
    classes: int
    subscribers: int
    push_events: int
    post_latency_ms: float
    target_users: int
    workers: int
    page_size: int
    list_files: list[int]


@dataclass
class SizeResult:
    users: int
    files: int
    jobs: int
    sim_s: float
    hot_key: str
    hot_wcu_s: float
    # key family (numbers as "#") -> mean write units per second of one of its keys
    family_wcu_s: dict[str, float]
    hot_ops_s: float
    counter_key: str
    counter_writes_s: float
    ids_s: float
    lists: Lists
    grown: list[Lists]  # the largest size: lists on tables of args.list_files files
    largest_item: int
    largest_item_key: str
    refused: list[str]
    largest_message: int
    call_ms: float
    per_analysis: dict[str, float]
    per_job_minute: dict[str, float]
    wall_s: float


def run_size(
    n_users: int,
    args: Args,
    last: bool,
    recorder: Recorder,
    wav: bytes,
    replay_state: dict[str, Any],
) -> SizeResult:
    from functions.local.bootstrap import ensure_resources
    from shared.models import Principal, TrainingJob
    from shared.settings import load_settings
    from shared.wiring import build

    began = time.monotonic()
    settings = load_settings(
        stage=f"s{uuid.uuid4().hex[:8]}", rate_limit_per_minute=0, jwt_secret="x" * 48
    )
    c = build(settings)
    c.resources = ensure_resources(c)
    # The bench hands each upload's "Object Created" event to the handler itself; the
    # emulator's own S3 -> EventBridge -> SQS routing (no dispatcher here) is turned off.
    c.client("s3").put_bucket_notification_configuration(
        Bucket=settings.names.uploads_bucket, NotificationConfiguration={}
    )
    recorder.reset()
    recorder.attach(c)
    replay = Replay(c.audio)
    if replay_state.get("steps") is not None:
        replay.steps, replay.out = replay_state["steps"], replay_state["out"]
    c.audio._analyse = replay

    # one researcher lists everyone's files; users upload and train
    with recorder.scope("setup"):
        researcher = c.user_repository.create(
            email=f"r-{uuid.uuid4().hex[:8]}@example.com",
            password_hash=NO_PASSWORD,
            role="researcher",
            full_name=None,
        )
    pool = ThreadPoolExecutor(args.workers)

    def new_user(i: int) -> Any:
        with recorder.scope("signup"):
            return c.user_repository.create(
                email=f"u{i}-{uuid.uuid4().hex[:8]}@example.com",
                password_hash=NO_PASSWORD,
                role="user",
                full_name=None,
            )

    users = list(pool.map(new_user, range(n_users)))
    from functions.events import analysis as analysis_handler

    def upload_and_analyse(user: Any) -> None:
        actor = Principal(user_id=user.id, role=user.role)
        with recorder.scope("analysis"):
            f = c.audio_uploads.upload(actor, io.BytesIO(wav), "cry.wav", None)
            event = s3_event(settings.names.uploads_bucket, f.key, len(wav))
            out = analysis_handler.handle(event, c)
            if out.get("status") not in ("completed", "failed"):
                raise RuntimeError(f"the analysis of file {f.id} ended {out}")

    def train(user: Any, epochs: int, classes: int = 10) -> None:
        job = c.job_repository.create(
            TrainingJob(
                id=0,
                owner_id=user.id,
                framework="pytorch",
                model_name="resnet18",
                task_type="classification",
                epochs=epochs,
                total_epochs=epochs,
                num_classes=classes,
            )
        )
        if job is None:
            raise RuntimeError(f"user {user.id}'s training job was not stored")
        train_job(c, recorder, job, epochs, classes)

    phases: dict[str, Counter] = {}
    mark = Counter(recorder.other)
    for minute in range(args.recordings):
        rest = users
        if minute == 0:  # the first analyses run the real DSP, alone; the rest replay them
            real = max(0, args.real_analyses - replay_state.get("real_done", 0))
            for user in users[:real]:
                replay.steps = None
                upload_and_analyse(user)
            replay_state["real_done"] = replay_state.get("real_done", 0) + min(real, len(users))
            rest = users[real:]
        list(pool.map(upload_and_analyse, rest))
    replay_state["steps"], replay_state["out"] = replay.steps, replay.out
    phases["analysis"], mark = Counter(recorder.other) - mark, Counter(recorder.other)
    trainers = users[:: args.job_every]
    list(pool.map(lambda u: train(u, args.recordings), trainers))
    phases["training"] = Counter(recorder.other) - mark
    pool.shutdown()

    sim_s = args.recordings * SIM_MINUTE
    # --- hottest partition (writes in the measured window: everything but the lists) ---
    with recorder.lock:
        (where, pk), wu = recorder.writes.most_common(1)[0]
        ops = recorder.write_ops[(where, pk)]
        counter = recorder.counters.most_common(1)
        largest, largest_key = recorder.largest
        refused = list(recorder.refused)
        events = list(recorder.event_items)
        families: dict[str, list[float]] = defaultdict(list)
        for (index, key), units_written in recorder.writes.items():
            families[key_family(index, key)].append(units_written)
    counter_key, counter_writes = (
        (f"{counter[0][0][0]} / {counter[0][0][1]}", counter[0][1]) if counter else ("-", 0)
    )
    ids = n_users * args.recordings * 2 + len(trainers) + n_users  # files, results, jobs, users

    # --- lists: on the population's table, and (largest size) on bigger tables ---------
    reader = Principal(user_id=researcher.id, role="researcher")
    files = n_users * args.recordings
    lists = measure_lists(c, recorder, reader, files, files // 4, args.page_size)
    grown = []
    for target in args.list_files if last else ():
        now = grown[-1].files if grown else files
        fill(c, users, max(0, target - now), args.workers)
        grown.append(
            measure_lists(c, recorder, reader, target, args.list_files[0] // 2, args.page_size)
        )

    largest_message = 0
    if events:
        from shared.adapters.dynamodb.table import from_ddb
        from shared.events import ProgressEvent, render

        for item in events:
            ev = ProgressEvent.model_validate(from_ddb(item))
            largest_message = max(largest_message, len(json.dumps(render(ev, "crucible"))))

    def per(scope: str, count: int) -> dict[str, float]:
        s, other = recorder.scopes.get(scope), phases.get(scope, Counter())
        if s is None or not count:
            return {}

        def s3(*ops: str) -> float:
            return sum(other[f"s3:{op}"] for op in ops) / count

        return {
            "dynamodb_requests": sum(s.calls.values()) / count,
            "dynamodb_writes": sum(s.calls[op] for op in WRITE_OPS) / count,
            "wru": s.wru / count,
            "rru": s.rru / count,
            "s3_put": s3("PutObject", "CopyObject", "UploadPart", "CreateMultipartUpload"),
            "s3_get": s3("GetObject", "HeadObject"),
            "s3_list_delete": s3("ListObjectVersions", "ListObjectsV2", "DeleteObjects"),
            "eventbridge": other["events:PutEvents"] / count,
            "events_published": s.events / count,
        }

    return SizeResult(
        users=n_users,
        files=files,
        jobs=len(trainers),
        sim_s=sim_s,
        hot_key=f"{where}: {pk}",
        hot_wcu_s=wu / sim_s,
        family_wcu_s={f: sum(v) / len(v) / sim_s for f, v in families.items()},
        hot_ops_s=ops / sim_s,
        counter_key=counter_key,
        counter_writes_s=counter_writes / sim_s,
        ids_s=ids / sim_s,
        lists=lists,
        grown=grown,
        call_ms=1000 * sorted(recorder.latency)[len(recorder.latency) // 2],
        largest_item=largest,
        largest_item_key=largest_key,
        refused=refused,
        largest_message=largest_message,
        per_analysis=per("analysis", files),
        per_job_minute=per("training", len(trainers) * args.recordings),
        wall_s=time.monotonic() - began,
    )


def _reporter(c: Any, job: Any) -> Any:
    from shared.services.reporting import Reporter

    kwargs = {"artifacts": c.artifacts, "throttle_s": 0.0}
    params = inspect.signature(Reporter).parameters
    return Reporter(
        c.push,
        c.job_repository,
        job,
        c.job_records,
        None,
        **{k: v for k, v in kwargs.items() if k in params},
    )


def _validation(classes: int, epoch: int) -> dict[str, Any]:
    """What a trainer's validation reports for ``classes`` classes: the numbers, per-class
    metrics and the confusion matrix (counts), and a few per-sample predictions."""
    names = [f"class_{i:04d}" for i in range(classes)]
    per_class = {
        n: {"precision": 0.9123, "recall": 0.8765, "f1": 0.8941, "support": 50} for n in names
    }
    matrix = [
        [(45 if i == j else (1 if (i + j) % 97 == 0 else 0)) for j in range(classes)]
        for i in range(classes)
    ]
    return {
        "val_loss": 0.4321 / epoch,
        "accuracy": 0.8765,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "samples": [
            {"index": i, "label": i % classes, "predicted": i % classes} for i in range(50)
        ],
    }


def train_job(c: Any, recorder: Recorder, job: Any, epochs: int, classes: int) -> None:
    """A job through its states and a trainer's reports: one epoch a simulated minute,
    six progress reports and a validation each."""
    with recorder.scope("training"):
        for to, frm in (("queued", {"pending"}), ("running", {"queued"})):
            job = c.job_repository.transition(job.id, to, frozenset(frm)) or job
        reporter = _reporter(c, job)
        reporter.on_status("running", "Training started")
        steps = 6
        for epoch in range(1, epochs + 1):
            for step in range(1, steps + 1):
                reporter.on_step(epoch, step * 10, steps * 10, 1.0 / (epoch * step), 1e-3)
            try:
                reporter.on_epoch_end(epoch, 0.5 / epoch, _validation(classes, epoch), 1e-3)
            except Exception as exc:  # a write DynamoDB refuses fails the job (as in a trainer)
                reporter.on_error(f"validation of epoch {epoch} could not be stored: {exc}")
                c.job_repository.transition(job.id, "failed", frozenset({"running"}))
                return
        reporter.on_status("completed", "Training completed")
        c.job_repository.transition(job.id, "completed", frozenset({"running"}))


@dataclass
class PushResult:
    subscribers: int
    events: int
    seconds: float
    posts: int
    timed_out: bool
    failures: int
    largest_post: int
    large_validation_item: int
    large_validation_message: int
    large_refused: list[str]


def run_push(args: Args, recorder: Recorder) -> PushResult:
    """One job watched by ``args.subscribers`` connections: its progress events delivered
    through the stream handler and the real ApiGatewayNotifier; then one validation of
    ``args.classes`` classes (item and message sizes)."""
    from functions.events import stream_push
    from functions.local.bootstrap import ensure_resources
    from shared.models import Principal, TrainingJob
    from shared.settings import load_settings
    from shared.wiring import build

    with ConnectionsEndpoint(args.post_latency_ms / 1000) as endpoint:
        settings = load_settings(
            stage=f"p{uuid.uuid4().hex[:8]}",
            rate_limit_per_minute=0,
            jwt_secret="x" * 48,
            ws_management_endpoint=endpoint.url,
        )
        c = build(settings)
        c.resources = ensure_resources(c)
        recorder.reset()
        recorder.attach(c)
        owner = c.user_repository.create(
            email=f"o-{uuid.uuid4().hex[:8]}@example.com",
            password_hash=NO_PASSWORD,
            role="user",
            full_name=None,
        )
        job = c.job_repository.create(
            TrainingJob(
                id=0,
                owner_id=owner.id,
                framework="pytorch",
                model_name="resnet18",
                task_type="classification",
                epochs=1,
                total_epochs=1,
                num_classes=args.classes,
            )
        )
        job = c.job_repository.transition(job.id, "queued", frozenset({"pending"})) or job
        job = c.job_repository.transition(job.id, "running", frozenset({"queued"})) or job
        principal = Principal(user_id=owner.id, role="user")
        with ThreadPoolExecutor(args.workers) as pool:
            list(
                pool.map(
                    lambda i: c.push.connect(
                        principal, f"conn-{i:05d}-{uuid.uuid4().hex[:6]}", topic=f"job:{job.id}"
                    ),
                    range(args.subscribers),
                )
            )
        # the largest result: a validation of args.classes classes (item and message)
        with recorder.lock:
            recorder.event_items.clear()
            recorder.largest = (0, "")
        try:
            _reporter(c, job).on_epoch_end(1, 0.5, _validation(args.classes, 1), 1e-3)
        except Exception as exc:  # DynamoDB refused it: the trainer's job would fail here
            recorder.refused.append(f"validation of {args.classes} classes: {type(exc).__name__}")
        from shared.adapters.dynamodb.table import from_ddb
        from shared.events import ProgressEvent, render

        with recorder.lock:
            large_item = recorder.largest[0]
            events = list(recorder.event_items)
            refused = list(recorder.refused)
            recorder.event_items.clear()
        large_msg = max(
            (
                len(json.dumps(render(ProgressEvent.model_validate(from_ddb(i)), "crucible")))
                for i in events
            ),
            default=0,
        )

        # the push: a stream batch of the job's progress events, to every subscriber
        reporter = _reporter(c, job)
        for step in range(1, args.push_events + 1):
            reporter.on_step(1, step, args.push_events, 1.0 / step, 1e-3)
        with recorder.lock:
            items = [i for i in recorder.event_items if _s(i.get("topic")) == f"job:{job.id}"]
        records = [stream_record(i, n, settings.names.table) for n, i in enumerate(items, 1)]
        answer: dict[str, Any] = {}

        def consume() -> None:
            with recorder.scope("push"):
                try:
                    answer.update(stream_push.handle({"Records": records}, c) or {})
                except Exception as exc:  # reported below, unless left behind at the timeout
                    answer["error"] = exc

        began = time.monotonic()
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        consumer.join(STREAM_PUSH_TIMEOUT_S)
        timed_out = consumer.is_alive()
        seconds = time.monotonic() - began
        posts, largest_post = endpoint.posts, endpoint.largest  # within the timeout
        if timed_out:  # Lambda stops it here; this process leaves it behind, unmeasured
            logging.getLogger("shared.services.push").setLevel(logging.CRITICAL)
            endpoint.fast.set()
        elif "error" in answer:
            raise answer["error"]
        failures = len(answer.get("batchItemFailures") or [])
    return PushResult(
        subscribers=args.subscribers,
        events=len(records),
        seconds=seconds,
        posts=posts,
        timed_out=timed_out,
        failures=failures,
        largest_post=largest_post,
        large_validation_item=large_item,
        large_validation_message=large_msg,
        large_refused=refused,
    )


# --- verdicts and the table ------------------------------------------------------------
def limit_population(sizes: list[int], values: list[float], limit: float) -> float | None:
    """The population at which ``values`` (measured at ``sizes``), growing as they grew
    between the smallest and largest size, reach ``limit``; None if they do not grow."""
    n0, n1, v0, v1 = sizes[0], sizes[-1], values[0], values[-1]
    if n1 <= n0 or v1 <= max(v0 * 1.5, v0 + 1e-9):
        return None
    slope = (v1 - v0) / (n1 - n0)
    return n1 + (limit - v1) / slope


def verdict(sizes: list[int], values: list[float], limit: float, target: int) -> tuple[str, str]:
    if any(v > limit for v in values):
        return "OVER LIMIT", ""
    at = limit_population(sizes, values, limit)
    if at is None:
        return "OK", "flat"
    note = f"limit at ~{at:,.0f} users"
    return ("GROWS" if at < target else "OK"), note


def kb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1024:,.1f} KB"


def report(results: list[SizeResult], push: PushResult, args: Args) -> tuple[str, bool, dict]:
    sizes = [r.users for r in results]
    lines: list[str] = []
    ok = True
    figures: dict[str, Any] = {}

    def row(name: str, cells: list[str], limit: str, v: tuple[str, str]) -> None:
        nonlocal ok
        ok = ok and v[0] == "OK"
        figures[name] = v[0]
        lines.append(
            f"{name:<34}" + "".join(f"{c:>16}" for c in cells) + f"  {limit:<22} {v[0]:<10} {v[1]}"
        )

    head = f"{'users':<34}" + "".join(f"{n:>16,}" for n in sizes) + f"  {'AWS limit':<22} verdict"
    lines += [head, "-" * len(head)]
    lines.append(
        f"{'files / training jobs':<34}"
        + "".join(f"{f'{r.files:,} / {r.jobs:,}':>16}" for r in results)
    )
    lines.append(f"{'simulated seconds':<34}" + "".join(f"{r.sim_s:>16,.0f}" for r in results))
    target = args.target_users
    row(
        "hottest key, WCU/s",
        [f"{r.hot_wcu_s:,.2f}" for r in results],
        f"{PARTITION_WCU:,} WCU/s/partition",
        verdict(sizes, [r.hot_wcu_s for r in results], PARTITION_WCU, target),
    )
    for r in results:
        lines.append(f"{'':<4}{r.users:>7,} users: {r.hot_key} ({r.hot_ops_s:,.2f} writes/s)")
    # A key family (a sharded listing, one per user, one per job) grows when the mean rate
    # of one of its keys rises with the population: a fixed number of shards does, one
    # key per user or job does not. The one that reaches the limit first:
    growing = []
    for family in set(results[0].family_wcu_s) & set(results[-1].family_wcu_s):
        values = [r.family_wcu_s.get(family, 0.0) for r in results]
        at = limit_population(sizes, values, PARTITION_WCU)
        if at is not None:
            growing.append((at, family, values))
    if growing:
        at, family, values = min(growing)
        row(
            "fastest-growing key, WCU/s (mean)",
            [f"{v:,.2f}" for v in values],
            f"{PARTITION_WCU:,} WCU/s/partition",
            verdict(sizes, values, PARTITION_WCU, target),
        )
        lines.append(f"{'':<4}{family}")
    else:
        lines.append(f"{'fastest-growing key':<34}  none: no key family's rate grows")
    row(
        "hottest atomic counter, writes/s",
        [f"{r.counter_writes_s:,.2f}" for r in results],
        f"{PARTITION_WCU:,} WCU/s/partition",
        verdict(sizes, [r.counter_writes_s for r in results], PARTITION_WCU, target),
    )
    lines.append(
        f"{'':<4}ids served/s: "
        + ", ".join(f"{r.ids_s:,.1f}" for r in results)
        + f"; counter: {results[-1].counter_key}"
    )
    # Reads: a page's cost must not grow with the table. Per size (informational), then
    # on the largest population's table filled to each of args.list_files files: a page
    # may read a constant overhead (several index partitions), never more as the table
    # doubles; an offset page may read the offset, never the table.
    grown = results[-1].grown
    small, big = (grown[0], grown[-1]) if len(grown) > 1 else (None, None)

    def flat(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and b <= 1.25 * a + args.page_size

    def page_row(name: str, cell: Callable[[Lists], str], a: Any, b: Any, nbytes: Any) -> None:
        cells = [cell(r.lists) for r in results]
        if small is None:
            v = ("OK", "not measured on bigger tables")
        elif any((x or 0) > QUERY_PAGE_BYTES for x in nbytes):
            v = ("OVER LIMIT", "")
        elif a is None and b is None:
            v = ("OK", "refused with a 4xx")
        elif flat(a, b):
            v = ("OK", f"{small.files:,} -> {big.files:,} files: {a:,.0f} -> {b:,.0f}")
        else:
            v = ("GROWS", f"{small.files:,} -> {big.files:,} files: {a:,.0f} -> {b:,.0f}")
        row(name, cells, "1 MB per query page", v)

    every = [r.lists for r in results] + list(grown)
    page_row(
        f"first page ({args.page_size}): items read",
        lambda x: f"{x.first_items:,}",
        small and small.first_items,
        big and big.first_items,
        [x.first_bytes for x in every],
    )
    lines.append(
        f"{'':<4}bytes read: "
        + ", ".join(kb(r.lists.first_bytes) for r in results)
        + "".join(
            f"; {g.files:,} files: {g.first_items:,} items, {kb(g.first_bytes)}" for g in grown
        )
    )
    page_row(
        "deep page: items read",
        lambda x: x.deep_note[:14] if x.deep_note else f"{x.deep_items:,}",
        small and small.deep_items,
        big and big.deep_items,
        [x.deep_bytes for x in every],
    )
    lines.append(
        f"{'':<4}skip = files/4: "
        + ", ".join(f"{r.lists.deep_skip:,}" for r in results)
        + "".join(
            f"; {g.files:,} files, skip {g.deep_skip:,}: "
            + (g.deep_note or f"{g.deep_items:,} items, {kb(g.deep_bytes)}")
            for g in grown
        )
    )
    if all(x.cursor_items is None for x in every):
        lines.append(
            f"{'cursor walk: items read per page':<34}"
            + "".join(f"{'n/a':>16}" for _ in results)
            + "  (no cursors in this code)"
        )
    else:
        page_row(
            "cursor walk: items read per page",
            lambda x: "n/a" if x.cursor_items is None else f"{x.cursor_items:,.1f}",
            small and small.cursor_items,
            big and big.cursor_items,
            [x.cursor_bytes for x in every],
        )
    items = [r.largest_item for r in results] + [push.large_validation_item]
    row(
        "largest item written",
        [kb(r.largest_item) for r in results],
        "400 KB per item",
        ("OVER LIMIT", "")
        if max(items) > ITEM_BYTES or push.large_refused or any(r.refused for r in results)
        else ("OK", ""),
    )
    lines.append(f"{'':<4}at {results[-1].users:,} users: {results[-1].largest_item_key}")
    lines.append(
        f"{'':<4}validation of {args.classes:,} classes: item {kb(push.large_validation_item)}"
        + (f"; REFUSED: {'; '.join(push.large_refused)}" if push.large_refused else "")
    )
    msgs = [r.largest_message for r in results] + [push.large_validation_message, push.largest_post]
    row(
        "largest WebSocket message",
        [kb(r.largest_message) for r in results],
        "128 KB per frame",
        ("OVER LIMIT", "") if max(msgs) > WS_FRAME_BYTES else ("OK", ""),
    )
    lines.append(
        f"{'':<4}validation of {args.classes:,} classes: message "
        + (
            kb(push.large_validation_message)
            if push.large_validation_message
            else "none (its write failed before it was published)"
        )
    )
    expected = push.subscribers * push.events
    # a timed-out batch: per event served in the time it had
    served = push.posts / max(push.subscribers, 1) if push.timed_out else push.events
    per_event = push.seconds / max(served, 1e-9)
    lines.append("")
    lines.append(
        f"push: one job, {push.subscribers:,} subscribers, a stream batch of {push.events} events "
        f"(@connections answering in {args.post_latency_ms:g} ms, the real ApiGatewayNotifier)"
    )
    if push.timed_out:
        push_v = (
            "OVER LIMIT",
            f"timed out: {push.posts:,} of {expected:,} posts in {STREAM_PUSH_TIMEOUT_S} s",
        )
    elif push.failures or push.posts < push.subscribers:  # coalesced progress: >= 1 each
        push_v = (
            "OVER LIMIT",
            f"{push.failures} records failed, {push.posts:,} of {expected:,} posts",
        )
    else:
        push_v = ("OK", "")
    ok = ok and push_v[0] == "OK"
    figures["push"] = push_v[0]
    lines.append(
        f"{'push time per event':<34}{per_event:>15.2f}s  "
        f"{f'{STREAM_PUSH_TIMEOUT_S} s function timeout':<22} {push_v[0]:<10} {push_v[1]}"
    )
    lines.append(
        f"{'':<4}batch {push.seconds:.2f} s{' (stopped at the timeout)' if push.timed_out else ''}, "
        f"{push.posts:,} posts, largest {kb(push.largest_post)}; "
        f"{push.posts / max(push.seconds, 1e-9):,.0f} posts/s"
    )
    a = results[-1].per_analysis
    if a:
        lines.append("")
        lines.append(
            "one analysis (from the recorder): "
            f"{a['dynamodb_requests']:.1f} DynamoDB requests ({a['dynamodb_writes']:.1f} writes), "
            f"{a['wru']:.1f} WRU incl. indexes, {a['rru']:.1f} RRU, "
            f"{a['s3_put']:.1f} S3 PUT, {a['s3_get']:.1f} S3 GET/HEAD, "
            f"{a['eventbridge']:.1f} EventBridge, {a['events_published']:.1f} events published"
        )
    j = results[-1].per_job_minute
    if j:
        lines.append(
            "one training minute (one epoch, 6 progress reports, a validation): "
            f"{j['dynamodb_requests']:.1f} DynamoDB requests, {j['wru']:.1f} WRU, {j['s3_put']:.1f} S3 PUT"
        )
    lines.append(
        "median DynamoDB call in the emulator: "
        + ", ".join(f"{r.call_ms:.0f} ms" for r in results)
        + " (AWS in-region: a few ms; push times here are slower than in AWS by as much)"
    )
    lines.append(
        "wall time per size: " + ", ".join(f"{r.users:,}: {r.wall_s:.0f} s" for r in results)
    )
    return "\n".join(lines), ok, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,50,250", help="populations, comma-separated")
    p.add_argument(
        "--quick", action="store_true", help="CI size: 2 and 20 users, 20 subscribers, 220 classes"
    )
    p.add_argument(
        "--recordings",
        type=int,
        default=1,
        help="minutes of the workload (one upload a user a minute)",
    )
    p.add_argument("--job-every", type=int, default=10, help="one user in this many trains")
    p.add_argument("--real-analyses", type=int, default=1, help="analyses that run the real DSP")
    p.add_argument("--classes", type=int, default=500, help="classes of the largest validation")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--push-events", type=int, default=5, help="events in the measured stream batch")
    p.add_argument("--post-latency-ms", type=float, default=20.0)
    p.add_argument(
        "--target-users", type=int, default=1_000_000, help="GROWS if a limit is reached below this"
    )
    p.add_argument("--workers", type=int, default=8, help="threads driving the population")
    p.add_argument("--page-size", type=int, default=20, help="items per listed page")
    p.add_argument(
        "--list-files",
        default="300,600",
        help="table sizes (files) the largest population's table is filled to, to see "
        "whether a page's reads grow with the table",
    )
    p.add_argument("--json", help="also write the figures here")
    ns = p.parse_args(argv)
    if ns.quick:
        ns.sizes, ns.subscribers, ns.push_events, ns.classes = "2,20", 20, 2, 220
        ns.page_size = 5
    args = Args(
        sizes=sorted(int(s) for s in ns.sizes.split(",")),
        recordings=ns.recordings,
        job_every=ns.job_every,
        real_analyses=ns.real_analyses,
        classes=ns.classes,
        subscribers=ns.subscribers,
        push_events=ns.push_events,
        post_latency_ms=ns.post_latency_ms,
        target_users=ns.target_users,
        workers=ns.workers,
        page_size=ns.page_size,
        list_files=sorted(int(s) for s in ns.list_files.split(",")),
    )
    if not MINISTACK.exists():
        print(f"MiniStack is not installed at {MINISTACK} (make install)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "crucible-scale")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    from functions.local.emulator import Emulator, credentials, free_port

    # a SIGTERM (a CI timeout) still stops the emulator, in the ``finally`` below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = Path(tempfile.mkdtemp(prefix="crucible-scale-"))
    os.environ.update(credentials(state).environ())
    emu = Emulator(MINISTACK, state, free_port()).start()
    os.environ["AWS_ENDPOINT_URL"] = emu.endpoint
    try:
        recorder = Recorder()
        wav = cry_wav()
        replay_state: dict[str, Any] = {}
        results = []
        for n in args.sizes:
            last = n == args.sizes[-1]
            results.append(run_size(n, args, last, recorder, wav, replay_state))
            print(f"... {n:,} users: {results[-1].wall_s:.0f} s", file=sys.stderr, flush=True)
        push = run_push(args, recorder)
    finally:
        emu.stop()
        shutil.rmtree(state, ignore_errors=True)
    text, ok, figures = report(results, push, args)
    print(text)
    print(f"\nverdict: {'OK' if ok else 'FAIL'}")
    if ns.json:
        Path(ns.json).write_text(
            json.dumps(
                {
                    "verdicts": figures,
                    "sizes": [dataclasses.asdict(r) for r in results],
                    "push": dataclasses.asdict(push),
                    "ok": ok,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
