"""The API under load, on loopback, as its users would use it: 50 users (arriving over
``--ramp`` seconds) each register, log in, upload a short recording (3 s of synthesized
cry), then read their profile, their list, their file's analysis status and their tags,
one request after another with a 200 ms pause after each answer, for 45 s. Then every
upload must have been analysed exactly once.

Prints p50/p99 latency per route, of the reads and of every request; the reads made;
errors (any answer other than the one expected, dropped connections -- resets, refused
connects, requests closed without an answer -- and timeouts); the steady window, from
the moment every user is past sign-up and upload to the moment the first one stops,
with its throughput, latency and the CPU time the API process and the emulator spent a
read (a figure that CPU contention from other processes disturbs less than latency);
and whether anything was lost. Targets: 0 errors, nothing lost, p99 of the reads
<= 500 ms on a 2-core machine; exit status 1 when one is missed. Sign-up is not in the
target: two argon2 hashes a user (64 MiB, 3 passes, 4 lanes; about 0.3 CPU-s each
here) are meant to be costly, and 50 users signing up within seconds keep both cores
busy for a while whatever the API does.

It starts its own local stack (``python -m functions.local``, rate limits off, a
temporary data directory, free ports, no MLflow UI) unless ``--base`` names a running
one. ``--round-trips`` starts that stack under a bench-only harness that counts the
emulator round trips each API request makes (botocore's sends, by operation) and prints
them per route, and those made outside requests (the dispatcher, the handlers it runs);
the harness costs a little, so read latency from a run without it.

    .venv/bin/python bench/load.py [--users 50] [--duration 45] [--pause 0.2] [--ramp 5]
                                   [--round-trips] [--json out.json] [--log server.log]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

P99_TARGET_MS = 500.0
SR = 16_000
ROUND_TRIPS_PATH = "/_bench/round-trips"  # served by the harness only
# what the users read, over and over: the target is these requests' p99
READS = ("GET /auth/me", "GET /audio-files/", "GET /analysis/{id}/status", "GET /tags/")

# --- the stack --------------------------------------------------------------------------


@dataclass
class Stack:
    base: str
    proc: subprocess.Popen | None = None
    data_dir: Path | None = None
    log: Path | None = None
    emulator: str | None = None  # its endpoint, when this bench started the stack

    def analyses(self, file_ids: list[int]) -> dict[int, int]:
        """How many analyses (task prefixes ``analysis/<file>/<task>/`` in the artifacts
        bucket, shared/keys.py) each file has: one each, when each ran once."""
        import boto3

        from functions.local.emulator import credentials
        from shared.settings import ResourceNames

        assert self.emulator is not None
        assert self.data_dir is not None
        key = credentials(self.data_dir / "aws")
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=self.emulator,
            region_name="us-east-1",
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
        )
        bucket = ResourceNames.for_stage("local").artifacts_bucket
        return {
            fid: len(
                s3.list_objects_v2(Bucket=bucket, Prefix=f"analysis/{fid}/", Delimiter="/").get(
                    "CommonPrefixes", []
                )
            )
            for fid in file_ids
        }

    def emulator_pid(self) -> int | None:
        if self.data_dir is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((self.data_dir / "aws" / "ministack.pid").read_text())
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) a process has used so far (Linux ``/proc``), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    from functions.local.emulator import free_port

    return free_port()


def start_stack(workdir: Path, *, round_trips: bool, timeout: float = 120) -> Stack:
    """``python -m functions.local`` on a fresh data directory, rate limits off (or the
    same under the round-trip harness)."""
    data_dir = workdir / "data"
    port, emu_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "AWS_"))}
    env.update(CRUCIBLE_RATE_LIMIT_PER_MINUTE="0", CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE="0")
    args = [
        *("--port", str(port), "--emulator-port", str(emu_port)),
        *("--data-dir", str(data_dir), "--mlflow-port", "0"),
        *("--ministack", str(ROOT / ".ministack" / "bin" / "ministack")),
    ]
    if round_trips:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-counted", "--", *args]
    else:
        cmd = [sys.executable, "-m", "functions.local", *args]
    log = workdir / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack = Stack(f"http://127.0.0.1:{port}", proc, data_dir, log, f"http://127.0.0.1:{emu_port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the local stack exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(stack.base + "/api/v1/health", timeout=2).status_code == 200:
                return stack
        time.sleep(0.25)
    stop_stack(stack)
    raise SystemExit(f"the local stack did not come up within {timeout:.0f} s; see {log}")


def stop_stack(stack: Stack, timeout: float = 60) -> None:
    if stack.proc and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)  # stops its emulator cleanly
        try:
            stack.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait()


# --- the round-trip harness (runs in the stack's process) ---------------------------------


def serve_counted(argv: list[str]) -> int:
    """``python -m functions.local`` with every botocore send counted: per API request
    (by route template, through a context variable that Starlette carries into its
    thread pool) and outside any request (the dispatcher's polling and the handlers it
    runs). ``GET /_bench/round-trips`` answers the counts."""
    import contextvars

    import uvicorn
    from botocore.endpoint import Endpoint

    from functions.local import server

    current: contextvars.ContextVar[Counter | None] = contextvars.ContextVar(
        "bench_round_trips", default=None
    )
    per_route: dict[str, Counter] = defaultdict(Counter)  # route -> operation -> sends
    requests: Counter = Counter()  # route -> requests
    background: Counter = Counter()
    operation: contextvars.ContextVar[str] = contextvars.ContextVar("bench_op", default="?")

    make_request, send = Endpoint.make_request, Endpoint._send

    def counted_make_request(self, operation_model, request_dict):
        token = operation.set(
            f"{operation_model.service_model.service_name}.{operation_model.name}"
        )
        try:
            return make_request(self, operation_model, request_dict)
        finally:
            operation.reset(token)

    def counted_send(self, request):
        counts = current.get()
        (background if counts is None else counts)[operation.get()] += 1
        return send(self, request)

    Endpoint.make_request = counted_make_request
    Endpoint._send = counted_send

    def counting(app):
        async def asgi(scope, receive, send_):
            if scope["type"] != "http":
                return await app(scope, receive, send_)
            if scope["path"] == ROUND_TRIPS_PATH:
                body = json.dumps(
                    {
                        "requests": dict(requests),
                        "per_route": {r: dict(c) for r, c in per_route.items()},
                        "background": dict(background),
                    }
                ).encode()
                await send_(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                return await send_({"type": "http.response.body", "body": body})
            counts: Counter = Counter()
            token = current.set(counts)
            try:
                await app(scope, receive, send_)
            finally:
                current.reset(token)
                route = scope.get("route")
                name = f"{scope['method']} {getattr(route, 'path', scope['path'])}"
                requests[name] += 1
                per_route[name].update(counts)

        return asgi

    config_init = uvicorn.Config.__init__

    def init(self, app, *args, **kwargs):
        config_init(self, counting(app), *args, **kwargs)

    uvicorn.Config.__init__ = init
    return server.main(argv)


# --- the users ----------------------------------------------------------------------------


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # "route: status/exception" -> n
    dropped: int = 0
    timeouts: int = 0
    samples: list[str] = field(default_factory=list)  # a few error bodies, for the reader
    reads_done: list[tuple[float, float]] = field(default_factory=list)  # (when, ms) a read
    steady: dict[str, float] = field(default_factory=dict)  # the window all users read in

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{what}: {detail[:300]}")


def recording(seed: int) -> bytes:
    import numpy as np

    from tests.audio.synth import cry, wav_bytes

    rng = np.random.default_rng(seed)
    units = [(0.3, 1.2, float(rng.uniform(380, 520))), (1.6, 2.6, float(rng.uniform(380, 520)))]
    return wav_bytes(cry(SR, 3.0, units, seed=seed), SR)


class Phases:
    """Marks the steady window: from the moment every user is reading (signed up and
    uploaded) to the moment the first one stops, with the CPU each process used in it."""

    def __init__(self, users: int, stats: Stats, pids: dict[str, int | None]) -> None:
        self.stats, self.pids = stats, pids
        self.waiting = users
        self.start: tuple[float, dict] | None = None

    def _mark(self) -> tuple[float, dict]:
        return time.monotonic(), {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def reading(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.start = self._mark()

    def done(self) -> None:
        if self.waiting:  # a user failed before reading: the window never opens
            self.waiting -= 1
            return
        if self.start is not None and "t1" not in self.stats.steady:
            (t0, cpu0), (t1, cpu1) = self.start, self._mark()
            self.stats.steady = {"t0": t0, "t1": t1}
            for name in self.pids:
                if cpu0[name] is not None and cpu1[name] is not None:
                    self.stats.steady[f"cpu_{name}"] = cpu1[name] - cpu0[name]


class User:
    def __init__(self, n: int, base: str, stats: Stats, audio: bytes) -> None:
        self.n = n
        self.stats = stats
        self.audio = audio
        self.email = f"load-{n}-{os.urandom(4).hex()}@example.com"
        self.password = os.urandom(12).hex()
        self.http = httpx.AsyncClient(base_url=base + "/api/v1", timeout=30)
        self.file_id: int | None = None

    async def call(self, route: str, method: str, path: str, expect: int = 200, **kw):
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            self.stats.timeouts += 1
            self.stats.error(f"{route}: timeout", repr(exc))
            return None
        except httpx.TransportError as exc:  # reset, refused, closed without an answer
            self.stats.dropped += 1
            self.stats.error(f"{route}: {type(exc).__name__}", repr(exc))
            return None
        ms = (time.perf_counter() - t0) * 1000
        self.stats.latency[route].append(ms)
        if route in READS:
            self.stats.reads_done.append((time.monotonic(), ms))
        if r.status_code != expect:
            self.stats.error(f"{route}: {r.status_code}", r.text)
            return None
        return r.json()

    async def sign_up(self) -> bool:
        creds = {"email": self.email, "password": self.password}
        if (
            await self.call("POST /auth/register", "POST", "/auth/register", 201, json=creds)
            is None
        ):
            return False
        login = await self.call("POST /auth/login", "POST", "/auth/login", json=creds)
        if login is None:
            return False
        self.http.headers["Authorization"] = f"Bearer {login['access_token']}"
        return True

    async def upload(self) -> bool:
        files = {"file": (f"load-{self.n}.wav", self.audio, "audio/wav")}
        up = await self.call(
            "POST /audio-files/upload", "POST", "/audio-files/upload", 201, files=files
        )
        if up is None:
            return False
        self.file_id = up["file"]["id"]
        return True

    async def read(self, duration: float, pause: float) -> None:
        until = time.monotonic() + duration
        reads = [
            ("GET /auth/me", "/auth/me"),
            ("GET /audio-files/", "/audio-files/"),
            ("GET /analysis/{id}/status", f"/analysis/{self.file_id}/status"),
            ("GET /tags/", "/tags/"),
        ]
        i = self.n  # users start at different points of the round
        while time.monotonic() < until:
            route, path = reads[i % len(reads)]
            await self.call(route, "GET", path)
            i += 1
            await asyncio.sleep(pause)

    async def run(self, delay: float, duration: float, pause: float, phases: Phases) -> None:
        await asyncio.sleep(delay)
        if await self.sign_up() and await self.upload():
            phases.reading()
            await self.read(duration, pause)
        phases.done()


# --- checks --------------------------------------------------------------------------------


async def settle(users: list[User], timeout: float) -> dict[int, dict]:
    """Wait (polling, outside the measured load) until every upload's analysis has
    ended; then each file's status and its result document."""
    done: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    pending = [u for u in users if u.file_id is not None]
    while pending and time.monotonic() < deadline:
        still = []
        for u in pending:
            r = await u.http.get(f"/analysis/{u.file_id}/status")
            if r.status_code == 200 and r.json()["status"] in ("completed", "failed"):
                done[u.file_id] = {"status": r.json()}
            else:
                still.append(u)
        pending = still
        if pending:
            await asyncio.sleep(1)
    for u in users:
        if u.file_id in done and done[u.file_id]["status"]["status"] == "completed":
            r = await u.http.get(f"/analysis/{u.file_id}/result")
            done[u.file_id]["result"] = r.json() if r.status_code == 200 else None
            listed = await u.http.get("/audio-files/")
            done[u.file_id]["listed"] = [f["id"] for f in listed.json()["files"]]
    return done


def check_nothing_lost(users: list[User], done: dict[int, dict], stack: Stack) -> list[str]:
    """Every upload analysed, exactly once: each completed, listed by its owner alone,
    with a result of its own; and (on a stack this bench started) each file has exactly
    one analysis in the artifacts bucket, so none ran twice. (Ids come in per-process
    blocks, shared/adapters/dynamodb/table.py: their values say nothing of a count.)"""
    problems = []
    uploaded = [u for u in users if u.file_id is not None]
    if len(uploaded) != len(users):
        problems.append(f"{len(users) - len(uploaded)} users could not upload")
    result_ids, task_ids = [], []
    for u in uploaded:
        got = done.get(u.file_id)
        if got is None:
            problems.append(f"file {u.file_id}: analysis not ended in time")
            continue
        if got["status"]["status"] != "completed":
            problems.append(f"file {u.file_id}: {got['status']}")
            continue
        if got.get("listed") != [u.file_id]:
            problems.append(f"file {u.file_id}: its owner lists {got.get('listed')}")
        doc = got.get("result")
        if not doc or doc.get("audio_file_id") != u.file_id:
            problems.append(f"file {u.file_id}: no result of its own ({doc and doc.get('id')})")
            continue
        result_ids.append(doc["id"])
        task_ids.append(doc["task_id"])
    if len(set(result_ids)) != len(result_ids) or len(set(task_ids)) != len(task_ids):
        problems.append("two files share a result or a task")
    if stack.emulator and uploaded:
        twice = {f: n for f, n in stack.analyses([u.file_id for u in uploaded]).items() if n != 1}
        if twice:
            problems.append(f"analyses per file other than one: {twice}")
    return problems


# --- report ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(stats: Stats, elapsed: float) -> dict:
    """Latency per route, of the reads (the target's) and of every request."""
    every = [v for vs in stats.latency.values() for v in vs]
    reads = [v for r in READS for v in stats.latency.get(r, [])]
    width = max([len(r) for r in stats.latency] + [24])
    print(f"\n{'route':<{width}} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")

    def row(name: str, vs: list[float]) -> None:
        if vs:
            print(
                f"{name:<{width}} {len(vs):>6} {pct(vs, 50):>8.0f} {pct(vs, 99):>8.0f} {max(vs):>8.0f}"
            )

    for route, vs in sorted(stats.latency.items()):
        row(route, vs)
    row("reads (the target's)", reads)
    row("every request", every)
    summary = {
        "requests": len(every),
        "reads": len(reads),
        "reads_per_s": len(reads) / elapsed,
        "p50_ms": pct(every, 50) if every else None,
        "p99_ms": pct(every, 99) if every else None,
        "reads_p50_ms": pct(reads, 50) if reads else None,
        "reads_p99_ms": pct(reads, 99) if reads else None,
        "per_route": {
            r: {"n": len(vs), "p50_ms": pct(vs, 50), "p99_ms": pct(vs, 99)}
            for r, vs in stats.latency.items()
        },
        "errors": sum(stats.errors.values()),
        "dropped": stats.dropped,
        "timeouts": stats.timeouts,
    }
    print(
        f"\n{summary['reads']} reads in {elapsed:.1f} s ({summary['reads_per_s']:.1f}/s); "
        f"errors {summary['errors']} (dropped connections {stats.dropped}, "
        f"timeouts {stats.timeouts})"
    )
    w = stats.steady
    if "t1" in w:
        inside = [ms for t, ms in stats.reads_done if w["t0"] <= t <= w["t1"]]
        n, span = len(inside), w["t1"] - w["t0"]
        cpu = {k[4:]: v for k, v in w.items() if k.startswith("cpu_")}
        summary["steady"] = {"seconds": span, "reads": n, "cpu_s": cpu}
        if inside:
            summary["steady"].update(p50_ms=pct(inside, 50), p99_ms=pct(inside, 99))
            print(
                f"steady window (every user past sign-up and upload): {span:.1f} s, {n} reads "
                f"({n / span:.1f}/s), p50 {pct(inside, 50):.0f} ms, "
                f"p99 {pct(inside, 99):.0f} ms; CPU a read: "
                + ", ".join(f"{k} {v / n * 1000:.2f} ms" for k, v in cpu.items())
            )
    for what, n in stats.errors.most_common():
        print(f"  {n:>5}  {what}")
    for line in stats.samples:
        print(f"  e.g. {line}")
    return summary


def print_round_trips(counts: dict) -> None:
    print("\nemulator round trips per request (botocore sends; cached users re-read every few s)")
    for route, n in sorted(counts["requests"].items()):
        ops = counts["per_route"].get(route, {})
        total = sum(ops.values())
        detail = ", ".join(f"{op} {k / n:.2f}" for op, k in sorted(ops.items()))
        print(f"  {route:<34} {n:>6} requests  {total / n:>5.2f} per request  ({detail})")
    bg = counts["background"]
    print(f"  outside requests (dispatcher, handlers): {sum(bg.values())} sends")
    for op, k in sorted(bg.items(), key=lambda kv: -kv[1])[:8]:
        print(f"      {op} {k}")


# --- main -----------------------------------------------------------------------------------


async def load(args, base: str, pids: dict[str, int | None]):
    """Run the users; then wait for the analyses. Returns the users, the stats, the
    seconds under load, each file's end, and the CPU seconds each process used meanwhile."""
    stats = Stats()
    audio = [recording(i) for i in range(min(args.users, 5))]
    users = [User(i, base, stats, audio[i % len(audio)]) for i in range(args.users)]
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.monotonic()
    step = args.ramp / args.users
    phases = Phases(len(users), stats, pids)
    await asyncio.gather(
        *(u.run(i * step, args.duration, args.pause, phases) for i, u in enumerate(users))
    )
    elapsed = time.monotonic() - start
    cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu = {n: cpu1[n] - cpu0[n] for n in pids if cpu0[n] is not None and cpu1[n] is not None}
    done = await settle(users, args.settle)
    for u in users:
        await u.http.aclose()
    return users, stats, elapsed, done, cpu


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-counted":
        return serve_counted(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--duration", type=float, default=45.0, help="seconds each user reads")
    ap.add_argument(
        "--ramp", type=float, default=5.0, help="seconds over which the users arrive (0: at once)"
    )
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between a user's requests")
    ap.add_argument(
        "--settle", type=float, default=300.0, help="seconds to wait for analyses to end"
    )
    ap.add_argument("--base", help="a running stack's URL (rate limits off) instead of a new one")
    ap.add_argument(
        "--round-trips", action="store_true", help="count emulator round trips per request"
    )
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--log", help="keep the stack's log here (and the emulator's, + .emulator)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="crucible-load-") as tmp:
        stack = (
            Stack(args.base.rstrip("/"))
            if args.base
            else start_stack(Path(tmp), round_trips=args.round_trips)
        )
        try:
            if stack.proc:
                print(
                    f"stack pid {stack.proc.pid}, emulator pid {stack.emulator_pid()}, {stack.base}"
                )
            pids = {
                "api": stack.proc.pid if stack.proc else None,
                "emulator": stack.emulator_pid(),
            }
            users, stats, elapsed, done, cpu = asyncio.run(load(args, stack.base, pids))
            summary = report(stats, elapsed)
            summary["cpu_s"] = cpu
            if summary["cpu_s"]:
                n = summary["requests"] or 1
                print(
                    "CPU used while loaded (analyses included): "
                    + ", ".join(
                        f"{name} {sec:.1f} s ({sec / n * 1000:.1f} ms a request)"
                        for name, sec in summary["cpu_s"].items()
                    )
                )
            problems = check_nothing_lost(users, done, stack)
            analysed = sum(1 for d in done.values() if d["status"]["status"] == "completed")
            print(f"\nuploads {sum(u.file_id is not None for u in users)}, analysed {analysed}")
            for p in problems:
                print(f"  LOST: {p}")
            if args.round_trips:
                counts = httpx.get(stack.base + ROUND_TRIPS_PATH, timeout=10).json()
                print_round_trips(counts)
                summary["round_trips"] = counts
        finally:
            stop_stack(stack)
            if args.log and stack.log:
                Path(args.log).write_bytes(stack.log.read_bytes())
                emulator_log = stack.data_dir / "aws" / "ministack.log"
                if emulator_log.exists():
                    Path(f"{args.log}.emulator").write_bytes(emulator_log.read_bytes())
    summary.update(problems=problems, analysed=analysed, users=args.users)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    ok = (
        not problems
        and summary["errors"] == 0
        and summary["dropped"] == 0
        and summary["reads_p99_ms"] is not None
        and summary["reads_p99_ms"] <= P99_TARGET_MS
    )
    reads_p99 = summary["reads_p99_ms"] or float("nan")
    print(
        f"\nreads p99 {reads_p99:.0f} ms (target <= {P99_TARGET_MS:.0f}), "
        f"errors {summary['errors']}, lost {len(problems)}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
