"""What MiniStack acknowledges survives a SIGKILL: a redo journal for DynamoDB, and
write-through snapshots for every other service whose state the platform keeps there.

Run inside MiniStack's process by functions/local/emulator_gate.py (MiniStack's own
interpreter; it imports nothing of Crucible). MiniStack on its own writes the state of
every service but S3 to ``<STATE_DIR>/<service>.json`` on a clean shutdown only; S3
objects it writes through. So a SIGKILL (an OOM kill, a power cut, a killed process
tree) loses every DynamoDB item, SQS message and EventBridge rule made since the last
clean stop. This closes that gap:

* **DynamoDB: consistent snapshots plus a redo journal.** Every request that may change
  DynamoDB state (anything but the reads: Get/BatchGet/Query/Scan/TransactGet/Describe/
  List) is appended to ``<STATE_DIR>/journal/dynamodb-<first seq>.log`` once MiniStack
  has applied it with a 2xx, and the response is held until that entry is on disk
  (fdatasync, group commit: one flush covers every write waiting at that moment). The
  append happens in the same synchronous stretch as the apply (MiniStack's DynamoDB
  handlers never await), so no other request runs in between: journal order is apply
  order without a lock, and a snapshot taken on the event loop never sees a write
  whose entry is not in the journal. The TTL reaper's deletions (its own thread) are
  journaled too, so a replayed write meets the table it met the first time.
  A checkpoint (every ``CRUCIBLE_EMULATOR_CHECKPOINT_S`` seconds when something was
  journaled, or after ``CRUCIBLE_EMULATOR_CHECKPOINT_ENTRIES`` entries) copies the state
  of every service on the event loop (so it is consistent), starts a new journal
  segment, writes the files in MiniStack's own format, each stamped with the journal
  sequence number it contains (``crucible_journal_seq``), fsynced and renamed into
  place, and then deletes the segments it covers. On start, after MiniStack has loaded
  its files, the entries after the stamp are replayed in order through MiniStack's own
  request path (same routing, same account and region), before the port is opened;
  then a checkpoint makes that the new base. Replay is exact: each entry is applied to
  the state it was applied to the first time.
* **Everything else (SQS, EventBridge, S3 bucket settings, ...): write-through
  snapshots.** Their state is small (queues, rules, messages waiting), and a request
  replayed there would not do the same thing twice (receipt handles, message ids). So a
  request that changed one of them is answered only once that service's whole state
  has been written (fsynced) again; requests waiting together share one write, and an
  unchanged file is not rewritten. An EventBridge delivery to SQS (PutEvents, or S3's
  "Object Created" events, which MiniStack delivers from a thread of its own) marks SQS
  for writing; an S3 upload to a bucket with notifications is answered only once its
  event is in its queue and written. ReceiveMessage, DeleteMessage and visibility
  changes are written soon after but not waited for: losing one redelivers a message,
  and the event handlers are idempotent.
* S3 objects stay MiniStack's: written to disk as they arrive.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import itertools
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

log = logging.getLogger("crucible.emulator_durability")

STAMP = "crucible_journal_seq"  # first key of every state file this writes
_STAMP_RE = re.compile(rb'^\{"crucible_journal_seq": ([0-9]+)')
_HEADER = struct.Struct("<II")  # length, crc32 of one journal record
_SEGMENT = re.compile(r"^dynamodb-([0-9]{20})\.log$")
# DynamoDB actions that change nothing: every other action is journaled.
_DDB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_DDB_READ_PREFIXES = ("Describe", "List", "Get")
# Request headers a replay needs (routing, account, region); the rest is not kept.
_KEPT_HEADERS = frozenset({"host", "authorization", "x-amz-target", "content-type", "x-amz-date"})
# SQS actions whose loss only redelivers a message: written soon, not waited for.
_SQS_LAZY = frozenset({"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
                       "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"})  # fmt: skip
_READ_PREFIXES = ("Get", "List", "Describe", "Receive", "Head", "Test", "Search", "Query", "Scan")

# Set by the gate for the S3 request being served: the events it fires, to wait for.
s3_events: contextvars.ContextVar[list[concurrent.futures.Future] | None] = contextvars.ContextVar(
    "crucible_s3_events", default=None
)
_s3_event_done: contextvars.ContextVar[concurrent.futures.Future | None] = contextvars.ContextVar(
    "crucible_s3_event_done", default=None
)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ddb_mutates(action: str) -> bool:
    return not (action in _DDB_READS or action.startswith(_DDB_READ_PREFIXES))


def is_read(action: str) -> bool:
    return action.startswith(_READ_PREFIXES)


def is_lazy(action: str) -> bool:
    return action in _SQS_LAZY


def state_keys(service: str) -> tuple[str, ...]:
    """The state files of a service as MiniStack's router names it (``events`` ->
    ``eventbridge``, ``apigateway`` -> it and ``apigateway_v1``)."""
    from ministack import app

    config = app.SERVICE_REGISTRY.get(app.SERVICE_NAME_ALIASES.get(service, service))
    if not config or service in ("dynamodb", "s3"):
        return (service,) if service == "s3" else ()
    module = config["module"]
    return (config.get("state_key", module), *config.get("sub_modules", ()))


# --- the journal ------------------------------------------------------------------------
class Journal:
    """Append-only segments of length-prefixed, CRC-checked JSON records; ``append`` is
    cheap (a write to the page cache), ``durable`` waits for a group fdatasync."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.seq = 0  # the last sequence number appended
        self._lock = threading.Lock()  # appends come from the loop and the TTL reaper
        self._fd: int | None = None
        self._start = 0  # the current segment's first sequence number
        self._retired: list[int] = []  # old segments' fds, synced and closed by the syncer
        self._synced = 0
        self._dir_dirty = False
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._kick = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None

    # reading (at start, before anything is appended)
    def segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.iterdir():
            if m := _SEGMENT.match(path.name):
                found.append((int(m.group(1)), path))
        return sorted(found)

    def records(self) -> list[dict]:
        """Every whole record of every segment, in order. A torn or corrupt record (its
        flush never completed, so it was never acknowledged) ends the journal: the
        segment is cut there and any later one deleted, so nothing after it is read."""
        out: list[dict] = []
        segments = self.segments()
        for i, (_, path) in enumerate(segments):
            data = path.read_bytes()
            pos = 0
            while pos < len(data):
                record = None
                if pos + _HEADER.size <= len(data):
                    length, crc = _HEADER.unpack_from(data, pos)
                    payload = data[pos + _HEADER.size : pos + _HEADER.size + length]
                    if len(payload) == length and zlib.crc32(payload) == crc:
                        record = json.loads(payload)
                if record is None or (out and record["s"] != out[-1]["s"] + 1):
                    log.warning("journal %s ends in a torn record at byte %d", path.name, pos)
                    os.truncate(path, pos)
                    for _, later in segments[i + 1 :]:
                        later.unlink()
                    return out
                out.append(record)
                pos += _HEADER.size + length
        return out

    # writing
    def open(self, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        """Start appending after ``seq`` in a new segment."""
        self._loop = loop
        self.seq = self._synced = seq
        self._new_segment()
        self._thread = threading.Thread(target=self._sync_loop, name="journal-sync", daemon=True)
        self._thread.start()

    def _new_segment(self) -> None:  # with self._lock held (or before any append)
        self._start = self.seq + 1
        path = self.folder / f"dynamodb-{self._start:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        if self._fd is not None:
            self._retired.append(self._fd)
        self._fd = fd
        self._dir_dirty = True

    def rotate(self) -> int:
        """A new segment from the next entry on; returns the last sequence number of the
        old ones (what a snapshot taken now contains)."""
        with self._lock:
            if self.seq >= self._start:  # the current segment has entries
                self._new_segment()
            return self.seq

    def append(self, record: dict) -> int:
        with self._lock:
            if self.failed is not None:
                raise OSError(f"the journal failed earlier: {self.failed}")
            seq = self.seq + 1
            payload = json.dumps({"s": seq, **record}, separators=(",", ":")).encode()
            data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
            written = os.write(self._fd, data)
            if written != len(data):
                self.failed = OSError(f"short write to the journal ({written} of {len(data)})")
                raise self.failed
            self.seq = seq
        self._kick.set()
        return seq

    async def durable(self, seq: int) -> None:
        """Returns once every entry up to ``seq`` is on disk."""
        if self._synced >= seq:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        self._kick.set()
        await fut

    def _sync_loop(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            with self._lock:
                target, fd, retired, dir_dirty = self.seq, self._fd, self._retired, self._dir_dirty
                self._retired, self._dir_dirty = [], False
            error: BaseException | None = None
            try:
                for old in retired:
                    os.fsync(old)
                    os.close(old)
                if target > self._synced:
                    os.fdatasync(fd)
                if dir_dirty:
                    _fsync_dir(self.folder)
            except OSError as exc:
                error = self.failed = exc
                log.error("journal flush failed: %s", exc)
            else:
                self._synced = max(self._synced, target)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._release, error)

    def _release(self, error: BaseException | None) -> None:
        keep = []
        for seq, fut in self._waiters:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(OSError(f"the journal could not be written: {error}"))
            elif seq <= self._synced:
                fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep
        if keep:
            self._kick.set()

    def drop_before(self, start: int) -> None:
        """Delete the segments wholly before sequence number ``start`` (a snapshot has them)."""
        for first, path in self.segments():
            if first < start and first != self._start:
                path.unlink(missing_ok=True)


# --- state files ------------------------------------------------------------------------
class StateFiles:
    """Writes MiniStack's ``<service>.json`` files (its format, plus the journal stamp),
    atomically and durably, newest capture last, from one writer thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="state-writer")
        self._captures = itertools.count(1)
        self._written: dict[str, int] = {}  # service -> capture number on disk
        self._digests: dict[str, int] = {}  # service -> crc32 of what is on disk
        self._lock = threading.Lock()

    def capture(self) -> int:
        return next(self._captures)

    def write(self, service: str, data: Any, stamp: int, capture: int) -> bool:
        from ministack.core import persistence

        text = json.dumps(
            {
                STAMP: stamp,
                "__ministack_format__": persistence._state_format_version(service),
                "payload": data,
            },
            default=persistence._json_default,
        ).encode()
        digest = zlib.crc32(text[text.index(b",") :])  # the stamp alone changes nothing
        with self._lock:
            if self._written.get(service, 0) > capture:
                return False  # a newer capture is already on disk
            if service != "dynamodb" and self._digests.get(service) == digest:
                self._written[service] = capture
                return False
            path = self.folder / f"{service}.json"
            draft = path.with_name(f".{service}.json.crucible-tmp")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(draft, path)
            _fsync_dir(self.folder)
            self._written[service], self._digests[service] = capture, digest
        return True

    def write_all(self, states: dict[str, Any], stamp: int, capture: int) -> None:
        for service, data in states.items():
            try:
                self.write(service, data, stamp, capture)
            except Exception:
                log.exception("could not write the state of %s", service)
                if service == "dynamodb":
                    raise


def read_stamp(path: Path) -> int:
    """The journal sequence number a state file contains (0: written by MiniStack itself)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return 0
    m = _STAMP_RE.match(head)
    return int(m.group(1)) if m else 0


# --- MiniStack, made durable --------------------------------------------------------------
class Durability:
    """Installed into MiniStack's modules before it starts (``install``); ``recover``
    runs at the end of its startup, before the port opens."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.journal = Journal(self.state_dir / "journal")
        self.files = StateFiles(self.state_dir)
        self.checkpoint_s = _env_float("CRUCIBLE_EMULATOR_CHECKPOINT_S", 30.0)
        self.checkpoint_entries = int(_env_float("CRUCIBLE_EMULATOR_CHECKPOINT_ENTRIES", 2000))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.replaying = False
        self.ready = False
        self._stamp = 0  # the journal position the last checkpoint holds
        self._checkpointing: asyncio.Future | None = None
        self._dirty: set[str] = set()
        self._pending: asyncio.Future | None = None
        self._app: Any = None
        self._ttl: Any = None

    # -- installation ----------------------------------------------------------------
    def install(self) -> None:
        from ministack.core import persistence
        from ministack.services import dynamodb, eventbridge, s3

        persistence.save_state = self._save_state  # MiniStack's shutdown save: durable, stamped
        original_ddb = dynamodb.handle_request

        async def ddb_handle_request(method, path, headers, body, query_params):
            return await self._ddb_request(original_ddb, method, path, headers, body, query_params)

        dynamodb.handle_request = ddb_handle_request
        original_remove = dynamodb._remove_item

        def remove_item(table, pk_val, sk_val):
            if threading.current_thread().name == "dynamodb-ttl-reaper" and not self.replaying:
                self._journal_ttl(table, pk_val, sk_val)
            return original_remove(table, pk_val, sk_val)

        dynamodb._remove_item = remove_item
        self._ttl = original_remove
        original_to_sqs = eventbridge._dispatch_to_sqs

        def dispatch_to_sqs(*args, **kwargs):
            try:
                return original_to_sqs(*args, **kwargs)
            finally:
                self.touch_threadsafe("sqs")

        eventbridge._dispatch_to_sqs = dispatch_to_sqs
        original_fire_async, original_fire = s3._fire_s3_event_async, s3._fire_s3_event

        def fire_async(bucket_name, *args, **kwargs):
            waiting = s3_events.get()
            if waiting is None or bucket_name not in s3._bucket_notifications:
                return original_fire_async(bucket_name, *args, **kwargs)
            done: concurrent.futures.Future = concurrent.futures.Future()
            token = _s3_event_done.set(done)  # copied into the event's thread
            try:
                original_fire_async(bucket_name, *args, **kwargs)
            finally:
                _s3_event_done.reset(token)
            waiting.append(done)
            return None

        def fire(*args, **kwargs):
            done = _s3_event_done.get()
            try:
                return original_fire(*args, **kwargs)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

        s3._fire_s3_event_async, s3._fire_s3_event = fire_async, fire

    # -- DynamoDB ----------------------------------------------------------------------
    async def _ddb_request(self, original, method, path, headers, body, query_params):
        action = headers.get("x-amz-target", "").rpartition(".")[2]
        if self.replaying or not ddb_mutates(action):
            return await original(method, path, headers, body, query_params)
        # MiniStack's DynamoDB handlers never await: the apply and the append below run
        # with no other request in between, so the journal's order is the apply order.
        result = await original(method, path, headers, body, query_params)
        if not 200 <= result[0] < 300:
            return result
        record = {
            "k": "req",
            "m": method,
            "p": path,
            "q": query_params,
            "h": {k: v for k, v in headers.items() if k in _KEPT_HEADERS},
        }
        if isinstance(body, str):
            record["b"] = body
        else:
            try:
                record["b"] = bytes(body).decode()
            except UnicodeDecodeError:
                record["b64"] = base64.b64encode(bytes(body)).decode()
        try:
            seq = self.journal.append(record)
            await self.journal.durable(seq)
        except OSError as exc:
            log.error("DynamoDB %s applied but not journaled: %s", action, exc)
            return (
                500,
                {"Content-Type": "application/x-amz-json-1.0"},
                json.dumps({"__type": "InternalFailure", "message": str(exc)}).encode(),
            )
        if seq - self._stamp >= self.checkpoint_entries:
            self.checkpoint_soon()
        return result

    def _journal_ttl(self, table: dict, pk_val: Any, sk_val: Any) -> None:
        try:
            self.journal.append(
                {"k": "ttl", "arn": table.get("TableArn"), "pk": pk_val, "sk": sk_val}
            )
        except (OSError, TypeError, ValueError) as exc:
            log.error("could not journal a TTL deletion: %s", exc)

    # -- write-through services -----------------------------------------------------------
    def touch(self, *services: str) -> asyncio.Future:
        """Mark services' state as changed; the future completes once a copy taken
        after this call is on disk."""
        self._dirty.update(services)
        if self._pending is None:
            self._pending = self.loop.create_future()
            self._pending.add_done_callback(_retrieved)  # a lazy caller never awaits it
            self.loop.call_soon(self._flush)
        return self._pending

    def touch_threadsafe(self, service: str) -> None:
        loop = self.loop
        if loop is None or self.replaying or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.touch(service)
        else:
            loop.call_soon_threadsafe(self.touch, service)

    def _flush(self) -> None:
        fut, self._pending = self._pending, None
        services, self._dirty = self._dirty, set()
        getters = self._getters()
        try:
            states = {s: self._get_state(getters[s]) for s in services if s in getters}
        except Exception as exc:
            log.exception("could not copy the state of %s", sorted(services))
            fut.set_exception(exc)
            return
        states = {s: data for s, data in states.items() if data is not None}
        capture, stamp = self.files.capture(), self._stamp
        done = self.files.writer.submit(self.files.write_all, states, stamp, capture)
        asyncio.wrap_future(done).add_done_callback(lambda f: _settle(fut, f))

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint_soon(self) -> asyncio.Future:
        if self._checkpointing is None:
            self._checkpointing = self.loop.create_future()
            self.loop.call_soon(self._checkpoint)
        return self._checkpointing

    def _checkpoint(self) -> None:
        """Copy every service's state now (on the loop: consistent), start a new journal
        segment, write the copies, then drop the segments they hold."""
        fut, self._checkpointing = self._checkpointing, None
        try:
            with self._ddb_lock():  # and the reaper journals its deletions under it
                states = {s: self._get_state(g) for s, g in self._getters(dynamodb=True).items()}
                stamp = self.journal.rotate()
        except Exception as exc:
            log.exception("checkpoint: could not copy the state")
            fut.set_exception(exc)
            return
        states = {s: data for s, data in states.items() if data is not None}
        start, capture = stamp + 1, self.files.capture()
        began = time.monotonic()

        def write() -> None:
            self.files.write_all(states, stamp, capture)
            self.journal.drop_before(start)

        def finished(f: asyncio.Future) -> None:
            if f.exception() is None:
                self._stamp = max(self._stamp, stamp)
                log.info(
                    "checkpoint at journal entry %d written in %.0f ms",
                    stamp,
                    1000 * (time.monotonic() - began),
                )
            _settle(fut, f)

        asyncio.wrap_future(self.files.writer.submit(write)).add_done_callback(finished)

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_s)
            if self.journal.seq > self._stamp and self._checkpointing is None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.checkpoint_soon())

    def _save_state(self, service: str, data: Any) -> None:
        """MiniStack's own save (on a clean shutdown), made durable and stamped."""
        if not self.ready:  # stopped while replaying: the files and the journal still hold it
            return
        try:
            self.files.write(service, data, self.journal.seq, self.files.capture())
        except Exception:
            log.exception("could not save the state of %s", service)

    @contextlib.contextmanager
    def _ddb_lock(self):
        from ministack.services import dynamodb

        with dynamodb._lock:  # the TTL reaper changes tables under it, from its own thread
            yield

    @staticmethod
    def _getters(dynamodb: bool = False) -> dict[str, Callable[[], Any]]:
        from ministack import app

        getters = app._build_persistence_save_dict()
        if not dynamodb:
            getters.pop("dynamodb", None)
        return getters

    @staticmethod
    def _get_state(getter: Callable[[], Any]) -> Any:
        for attempt in range(5):  # another thread (an S3 event) may change a dict meanwhile
            try:
                return getter()
            except RuntimeError:
                if attempt == 4:
                    raise
        return None

    # -- recovery -----------------------------------------------------------------------
    async def recover(self, app: Callable) -> None:
        """After MiniStack loaded its files: replay the journal past their stamp, open a
        new segment, checkpoint, and start the periodic checkpoints."""
        self.loop, self._app = asyncio.get_running_loop(), app
        stamp = read_stamp(self.state_dir / "dynamodb.json")
        records = [r for r in self.journal.records() if r["s"] > stamp]
        began, failed = time.monotonic(), 0
        self.replaying = True
        try:
            for record in records:
                if not await self._replay(record):
                    failed += 1
        finally:
            self.replaying = False
        last = records[-1]["s"] if records else stamp
        if records:
            log.warning(
                "replayed %d journaled DynamoDB writes (entries %d-%d) in %.0f ms%s",
                len(records),
                records[0]["s"],
                last,
                1000 * (time.monotonic() - began),
                f"; {failed} did not apply as they did the first time" if failed else "",
            )
        self._stamp = stamp
        self.journal.open(last, self.loop)
        await self.checkpoint_soon()  # the replayed state is the new base
        self.ready = True
        self.loop.create_task(self._checkpoints())

    async def _replay(self, record: dict) -> bool:
        if record["k"] == "ttl":
            return self._replay_ttl(record)
        body = base64.b64decode(record["b64"]) if "b64" in record else record.get("b", "").encode()
        headers = [(k.encode("latin-1"), v.encode()) for k, v in record["h"].items()]
        headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": record["m"],
            "scheme": "http",
            "path": record["p"],
            "raw_path": record["p"].encode(),
            "query_string": urlencode(record.get("q") or {}, doseq=True).encode(),
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        sent = [{"type": "http.request", "body": body, "more_body": False}]
        status: list[int] = []

        async def receive() -> dict:
            return sent.pop() if sent else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await self._app(scope, receive, send)
        ok = bool(status) and 200 <= status[0] < 300
        if not ok:
            log.warning(
                "journal entry %d (%s) answered %s on replay",
                record["s"],
                record["h"].get("x-amz-target"),
                status,
            )
        return ok

    def _replay_ttl(self, record: dict) -> bool:
        from ministack.services import dynamodb

        for _key, table in dynamodb._tables.all_items():
            if table.get("TableArn") == record["arn"]:
                self._ttl(table, record["pk"], record["sk"])
                return True
        return False


def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # logged where it happened


def _settle(target: asyncio.Future, source: asyncio.Future) -> None:
    if target.done():
        return
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(None)
