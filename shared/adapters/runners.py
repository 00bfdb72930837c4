"""Job runners (AWS Batch, and local subprocesses with the same contract) and the
inference Lambda as a predictor (the local stack plugs in its own, in-process, from
functions/local/predictor.py).

The contract a job container gets either way: the Crucible job id (Batch parameter
``job_id``, and ``--job-id`` on the command line), the ``CRUCIBLE_*`` settings and the
AWS endpoint in its environment; SIGTERM means stop (save a checkpoint, exit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import CrucibleError
from shared.ports import RunnerState
from shared.routing import LOCAL_BATCH_SOURCE
from shared.settings import EVALUATION_WORKER_MIB, ResourceClass

BATCH_EVENT = "Batch Job State Change"
# The ARN the local runner gives its queues: the stage's rule matches it as it does Batch's.
LOCAL_QUEUE_ARN = "arn:aws:batch:local:000000000000:job-queue/{}"


# Both job queues schedule by fair share (infra/constructs/batch.py): each user's jobs
# under a share of their own. Batch tracks at most 500 active share identifiers per
# queue, so users are spread over this many, by a hash of their id (users who share one
# share its fair part); jobs with no owner run under SYSTEM_SHARE.
FAIR_SHARES = 400
SYSTEM_SHARE = "system"


def share_identifier(owner: int | str | None) -> str:
    """The fair-share identifier of ``owner``'s jobs: letters and digits, as Batch takes them."""
    if owner is None:
        return SYSTEM_SHARE
    digest = hashlib.sha256(str(owner).encode()).digest()
    return f"user{int.from_bytes(digest[:8], 'big') % FAIR_SHARES:03d}"


class BatchJobRunner:
    def __init__(self, client: Any, *, queues: dict[str, str], definitions: dict[str, str]) -> None:
        self.client = client
        self.queues = queues
        self.definitions = definitions

    def submit(
        self,
        job_id: str,
        *,
        job_type: str,
        queue: str,
        limits: ResourceClass | None = None,
        attempt: int | None = None,
        owner: int | str | None = None,
    ) -> str:
        """``owner``: the user whose fair share the job runs under."""
        overrides: dict[str, Any] = {"environment": [{"name": "CRUCIBLE_JOB_ID", "value": job_id}]}
        extra: dict[str, Any] = {}
        if limits is not None:  # Batch enforces the class: its memory, vCPUs and wall time
            overrides["resourceRequirements"] = [
                {"type": "VCPU", "value": f"{limits.vcpu:g}"},
                {"type": "MEMORY", "value": str(limits.memory_mib + EVALUATION_WORKER_MIB)},
            ]
            # The evaluator's own limit comes first; Batch's is the backstop.
            extra["timeout"] = {"attemptDurationSeconds": max(60, limits.seconds + 300)}
        out = self.client.submit_job(
            jobName=f"crucible-{job_type}-{job_id}",
            jobQueue=self.queues[queue],
            jobDefinition=self.definitions[job_type],
            parameters=_parameters(job_id, job_type, attempt),
            containerOverrides=overrides,
            shareIdentifier=share_identifier(owner),
            **extra,
        )
        return out["jobId"]

    def terminate(self, runner_job_id: str, reason: str) -> None:
        self.client.terminate_job(jobId=runner_job_id, reason=reason[:256])

    def describe(self, runner_job_ids: list[str]) -> dict[str, RunnerState]:
        """``DescribeJobs``, 100 ids a call; a job Batch no longer lists is absent."""
        found: dict[str, RunnerState] = {}
        ids = list(dict.fromkeys(runner_job_ids))
        for i in range(0, len(ids), 100):
            for job in self.client.describe_jobs(jobs=ids[i : i + 100]).get("jobs", []):
                reason = job.get("statusReason")
                code = (job.get("container") or {}).get("exitCode")
                if job["status"] in ENDED and code is not None:
                    reason = f"{reason or 'Essential container in task exited'} (exit code {code})"
                found[job["jobId"]] = RunnerState(job["status"], reason)
        return found


ENDED = ("SUCCEEDED", "FAILED")
LOST = "lost: the local stack restarted and the process is gone"
# Runs the job's command, then writes its exit status beside its record, so that a stack
# restarted meanwhile still learns how it ended. SIGTERM and SIGINT are the command's: the
# shell's own trap waits for the command, which saves its checkpoint and exits.
_WRAPPER = 'trap : TERM INT; "$@"; rc=$?; echo "$rc" > "$CRUCIBLE_EXIT_FILE.tmp" && mv "$CRUCIBLE_EXIT_FILE.tmp" "$CRUCIBLE_EXIT_FILE"; exit "$rc"'


def _parameters(job_id: str, job_type: str, attempt: int | None) -> dict[str, str]:
    params = {"job_id": job_id, "job_type": job_type}
    if attempt is not None:
        params["attempt"] = str(attempt)
    return params


def _exit_reason(code: int) -> str:
    if code == 0:
        return "Essential container in task exited"
    if code < 0:
        return f"Job killed by signal {-code}"
    if 128 < code < 128 + 65:  # as a shell reports a child a signal ended (137: SIGKILL)
        return f"Job killed by signal {code - 128} (exit code {code})"
    return f"Essential container in task exited (exit code {code})"


def process_start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), which
    tells a process from a later one given the same pid; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] == "Z":  # a zombie has ended: only its parent has yet to reap it
        return None
    return int(fields[19])


class LocalJobRunner:
    """Runs ``command + ["--job-id", id]`` as a subprocess and publishes the Batch
    state changes it goes through (SUBMITTED ... RUNNING, SUCCEEDED or FAILED) to
    EventBridge, where the same rule and handler as in AWS pick them up.

    Each runner job has a record on disk, ``<log_dir>/<runner id>.json`` (its Crucible
    job, its process id and start time, its log, and once it ended, its exit code and
    whether its end was published), and the command's exit status lands beside it as it
    exits. So a runner built over the same ``log_dir`` after the local stack restarted
    knows what its predecessor ran: it watches the processes still alive (re-adopted:
    their end is published when they end), publishes the ends it had not, and fails
    those that are gone without an exit status (``LOST``). ``describe`` answers from the
    same records."""

    def __init__(
        self,
        bus: Any,
        commands: dict[str, list[str]],
        *,
        env: dict[str, str],
        log_dir: Path,
        grace_s: int,
        queues: Mapping[str, str],
        poll_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.commands = commands
        self.queues = queues  # "gpu"/"cpu" -> the stage's queue names, as Batch's
        self.env = env
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.poll_s = poll_s
        self._procs: dict[str, subprocess.Popen] = {}
        self._adopted: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.adopt()

    # --- records ----------------------------------------------------------------------
    def _record_path(self, runner_id: str) -> Path:
        return self.log_dir / f"{runner_id}.json"

    def _exit_path(self, runner_id: str) -> Path:
        return self.log_dir / f"{runner_id}.exit"

    def _read(self, runner_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._record_path(runner_id).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, record: dict[str, Any]) -> None:
        path = self._record_path(record["runner_id"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # whole or not at all, whenever the stack dies

    def _exit_code(self, runner_id: str) -> int | None:
        try:
            return int(self._exit_path(runner_id).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, record: dict[str, Any]) -> bool:
        """Whether the recorded process still runs: the same pid AND the same start time.
        Without a start time (no /proc, e.g. macOS) a pid alone could be another process
        by now, which must never be adopted or signalled: the job counts as lost."""
        if record.get("started") is None:
            return False
        return process_start_time(record["pid"]) == record["started"]

    # --- running ------------------------------------------------------------------------
    def _emit(
        self, runner_id: str, job_id: str, job_type: str, queue: str, status: str, **extra: Any
    ) -> None:
        detail = {
            "jobId": runner_id,
            "jobName": f"crucible-{job_type}-{job_id}",
            "jobQueue": LOCAL_QUEUE_ARN.format(self.queues.get(queue, queue)),
            "status": status,
            "parameters": extra.pop("parameters", None) or {"job_id": job_id, "job_type": job_type},
            "createdAt": int(time.time() * 1000),
            **extra,
        }
        self.bus.put_event(BATCH_EVENT, detail, source=LOCAL_BATCH_SOURCE)

    def submit(
        self,
        job_id: str,
        *,
        job_type: str,
        queue: str,
        limits: ResourceClass | None = None,
        attempt: int | None = None,
        owner: int | None = None,
    ) -> str:
        """``limits`` are the job's to enforce (the evaluator's sandbox does); one
        machine has no queue to share, so ``owner`` changes nothing here."""
        if job_type not in self.commands:
            raise ValueError(f"no local command for '{job_type}' jobs")
        runner_id = f"local-{uuid.uuid4().hex[:12]}"
        params = _parameters(job_id, job_type, attempt)
        for status in ("SUBMITTED", "RUNNABLE", "STARTING"):
            self._emit(runner_id, job_id, job_type, queue, status, parameters=params)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{runner_id}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - the configured job command, in sh to record its exit
                ["/bin/sh", "-c", _WRAPPER, "sh", *self.commands[job_type], "--job-id", job_id],
                env={
                    **os.environ,
                    **self.env,
                    "CRUCIBLE_JOB_ID": job_id,
                    "CRUCIBLE_EXIT_FILE": str(self._exit_path(runner_id)),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record = {
            "runner_id": runner_id,
            "job_id": job_id,
            "job_type": job_type,
            "queue": queue,
            "parameters": params,
            "pid": proc.pid,
            "started": process_start_time(proc.pid),
            "log": str(log_path),
            "exit_code": None,
            "published": False,
        }
        self._write(record)
        with self._lock:
            self._procs[runner_id] = proc
        self._emit(
            runner_id,
            job_id,
            job_type,
            queue,
            "RUNNING",
            parameters=params,
            startedAt=int(time.time() * 1000),
        )
        threading.Thread(target=self._watch, args=(record, proc), daemon=True).start()
        return runner_id

    def _watch(self, record: dict[str, Any], proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._lock:
            self._procs.pop(record["runner_id"], None)
        self._ended(record, code)

    def _ended(self, record: dict[str, Any], code: int | None) -> None:
        """Record how a job ended, then publish it (a stack that dies between the two
        publishes it when it starts again)."""
        record = {**record, "exit_code": code, "reason": LOST if code is None else None}
        self._write(record)
        status = "SUCCEEDED" if code == 0 else "FAILED"
        reason = LOST if code is None else _exit_reason(code)
        self._emit(
            record["runner_id"],
            record["job_id"],
            record["job_type"],
            record["queue"],
            status,
            parameters=record.get("parameters"),
            statusReason=reason,
            container={"exitCode": code} if code is not None else {},
            stoppedAt=int(time.time() * 1000),
        )
        self._write({**record, "published": True})

    # --- after a restart ----------------------------------------------------------------
    def adopt(self) -> None:
        """Take over the runner jobs recorded in ``log_dir`` by an earlier runner (a stack
        that restarted): watch the live ones, publish the ends not yet published."""
        if not self.log_dir.is_dir():
            return
        for path in sorted(self.log_dir.glob("local-*.json")):
            record = self._read(path.stem)
            if record is None or record.get("published"):
                continue
            runner_id = record["runner_id"]
            with self._lock:
                if runner_id in self._procs or runner_id in self._adopted:
                    continue
            if record.get("exit_code") is None and self._alive(record):
                with self._lock:
                    self._adopted[runner_id] = record
                threading.Thread(target=self._poll, args=(record,), daemon=True).start()
            else:
                code = record.get("exit_code")
                self._ended(record, code if code is not None else self._exit_code(runner_id))

    def _poll(self, record: dict[str, Any]) -> None:
        """Watch a process this runner did not start (no parent can wait for it): by its
        pid and start time, until it is gone; its exit status is the one it left."""
        while self._alive(record):
            time.sleep(self.poll_s)
        deadline = time.monotonic() + 2  # the wrapper writes the status as it exits
        while self._exit_code(record["runner_id"]) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            self._adopted.pop(record["runner_id"], None)
        self._ended(record, self._exit_code(record["runner_id"]))

    # --- asking and stopping ------------------------------------------------------------
    def describe(self, runner_job_ids: list[str]) -> dict[str, RunnerState]:
        found: dict[str, RunnerState] = {}
        for runner_id in dict.fromkeys(runner_job_ids):
            record = self._read(runner_id) if runner_id.startswith("local-") else None
            if record is None:
                continue
            code = record.get("exit_code")
            if code is None:
                code = self._exit_code(runner_id)
            if code is not None:
                found[runner_id] = RunnerState(
                    "SUCCEEDED" if code == 0 else "FAILED", _exit_reason(code)
                )
            elif self._alive(record):
                found[runner_id] = RunnerState("RUNNING")
            else:
                found[runner_id] = RunnerState("FAILED", LOST)
        return found

    def terminate(self, runner_job_id: str, reason: str) -> None:
        with self._lock:
            proc = self._procs.get(runner_job_id)
            adopted = self._adopted.get(runner_job_id)
        if proc is not None:
            if proc.poll() is not None:
                return
            pid, alive = proc.pid, lambda: proc.poll() is None
        elif adopted is not None and self._alive(adopted):
            pid, alive = adopted["pid"], lambda: self._alive(adopted)
        else:
            return
        # ProcessLookupError: it ended meanwhile; PermissionError: the pid is no longer ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)

        def escalate() -> None:
            end = time.monotonic() + self.grace_s
            while alive() and time.monotonic() < end:
                time.sleep(0.1)
            if alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True).start()


# API Gateway gives a request 29 s in all; the API's own work (auth, the checkpoint's
# HEAD, a cold start of its own function) takes a few, so the inference function gets at
# most this long to answer before the caller is told to retry.
INVOKE_TIMEOUT_S = 22
# What a caller is told to wait: the function it timed out on goes on loading the model
# (its own timeout is minutes), so by then the retry finds it warm.
WARMING_RETRY_AFTER_S = 10


class InferenceUnavailable(CrucibleError):
    """The inference function did not answer in time (a cold start: it goes on loading
    the model, so a retry soon finds it warm), or it is at its concurrency limit."""

    code = "MODEL_WARMING_UP"
    http_status = 503
    retry_after = WARMING_RETRY_AFTER_S


class LambdaPredictor:
    """The inference function, invoked synchronously (its answer is JSON), exactly once per
    call: botocore's retries (on a read timeout, a throttle, a 5xx) would invoke it again,
    a second prediction the caller never sees, on a function that may still be busy with
    the first. A call that cannot be answered within the API's time answers
    :class:`InferenceUnavailable` (503, ``Retry-After``) instead."""

    def __init__(
        self, client: Any, function_name: str, *, timeout_s: float = INVOKE_TIMEOUT_S
    ) -> None:
        import boto3
        from botocore.config import Config

        meta = client.meta  # the same endpoint and settings, one attempt, a bounded wait
        self.client = boto3.session.Session().client(
            "lambda",
            region_name=meta.region_name,
            endpoint_url=meta.endpoint_url,
            config=meta.config.merge(
                Config(
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=min(5, timeout_s),
                    read_timeout=timeout_s,
                )
            ),
        )
        self.function_name = function_name

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        try:
            resp = self.client.invoke(
                FunctionName=self.function_name, Payload=json.dumps(request).encode()
            )
        except ReadTimeoutError as exc:
            raise InferenceUnavailable(
                "The model is warming up (loading on a fresh inference function) and did "
                f"not answer within {self.client.meta.config.read_timeout:g} s; retry in "
                f"{WARMING_RETRY_AFTER_S} s, when it will be warm"
            ) from exc
        except (ConnectTimeoutError, EndpointConnectionError) as exc:
            raise InferenceUnavailable(
                "The inference function could not be reached; retry in a few seconds",
                code="INFERENCE_BUSY",
            ) from exc
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TooManyRequestsException":
                raise
            raise InferenceUnavailable(
                "Inference is at its concurrency limit; retry in a few seconds",
                code="INFERENCE_BUSY",
            ) from exc
        answer = json.loads(resp["Payload"].read() or b"{}")
        if resp.get("FunctionError"):
            raise RuntimeError(f"inference failed: {answer.get('errorMessage', answer)}")
        return answer
