"""Job runners (AWS Batch, and local subprocesses with the same contract) and the
inference Lambda as a predictor (the local stack plugs in its own, in-process, from
functions/local/predictor.py).

The contract a job container gets either way: the Crucible job id (Batch parameter
``job_id``, and ``--job-id`` on the command line), the ``CRUCIBLE_*`` settings and the
AWS endpoint in its environment; SIGTERM means stop (save a checkpoint, exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from shared.routing import LOCAL_BATCH_SOURCE
from shared.settings import EVALUATION_WORKER_MIB, ResourceClass

BATCH_EVENT = "Batch Job State Change"


class BatchJobRunner:
    def __init__(self, client: Any, *, queues: dict[str, str], definitions: dict[str, str]) -> None:
        self.client = client
        self.queues = queues
        self.definitions = definitions

    def submit(
        self, job_id: str, *, job_type: str, queue: str, limits: ResourceClass | None = None
    ) -> str:
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
            parameters={"job_id": job_id, "job_type": job_type},
            containerOverrides=overrides,
            **extra,
        )
        return out["jobId"]

    def terminate(self, runner_job_id: str, reason: str) -> None:
        self.client.terminate_job(jobId=runner_job_id, reason=reason[:256])


class LocalJobRunner:
    """Runs ``command + ["--job-id", id]`` as a subprocess and publishes the Batch
    state changes it goes through (SUBMITTED ... RUNNING, SUCCEEDED or FAILED) to
    EventBridge, where the same rule and handler as in AWS pick them up."""

    def __init__(
        self,
        bus: Any,
        commands: dict[str, list[str]],
        *,
        env: dict[str, str],
        log_dir: Path,
        grace_s: int,
    ) -> None:
        self.bus = bus
        self.commands = commands
        self.env = env
        self.log_dir = log_dir
        self.grace_s = grace_s
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _emit(
        self, runner_id: str, job_id: str, job_type: str, queue: str, status: str, **extra: Any
    ) -> None:
        detail = {
            "jobId": runner_id,
            "jobName": f"crucible-{job_type}-{job_id}",
            "jobQueue": queue,
            "status": status,
            "parameters": {"job_id": job_id, "job_type": job_type},
            "createdAt": int(time.time() * 1000),
            **extra,
        }
        self.bus.put_event(BATCH_EVENT, detail, source=LOCAL_BATCH_SOURCE)

    def submit(
        self, job_id: str, *, job_type: str, queue: str, limits: ResourceClass | None = None
    ) -> str:
        """``limits`` are the job's to enforce (the evaluator's sandbox does)."""
        if job_type not in self.commands:
            raise ValueError(f"no local command for '{job_type}' jobs")
        runner_id = f"local-{uuid.uuid4().hex[:12]}"
        for status in ("SUBMITTED", "RUNNABLE", "STARTING"):
            self._emit(runner_id, job_id, job_type, queue, status)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{runner_id}.log", "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - the configured job command
                [*self.commands[job_type], "--job-id", job_id],
                env={**os.environ, **self.env, "CRUCIBLE_JOB_ID": job_id},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._procs[runner_id] = proc
        self._emit(runner_id, job_id, job_type, queue, "RUNNING", startedAt=int(time.time() * 1000))
        threading.Thread(
            target=self._watch, args=(runner_id, job_id, job_type, queue, proc), daemon=True
        ).start()
        return runner_id

    def _watch(
        self, runner_id: str, job_id: str, job_type: str, queue: str, proc: subprocess.Popen
    ) -> None:
        code = proc.wait()
        with self._lock:
            self._procs.pop(runner_id, None)
        status = "SUCCEEDED" if code == 0 else "FAILED"
        reason = (
            "Essential container in task exited"
            if code == 0
            else (
                f"Job killed by signal {-code}"
                if code < 0
                else f"Essential container in task exited (exit code {code})"
            )
        )
        self._emit(
            runner_id,
            job_id,
            job_type,
            queue,
            status,
            statusReason=reason,
            container={"exitCode": code},
            stoppedAt=int(time.time() * 1000),
        )

    def terminate(self, runner_job_id: str, reason: str) -> None:
        with self._lock:
            proc = self._procs.get(runner_job_id)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)

        def escalate() -> None:
            try:
                proc.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True).start()


class LambdaPredictor:
    """The inference function, invoked synchronously (its answer is JSON)."""

    def __init__(self, client: Any, function_name: str) -> None:
        self.client, self.function_name = client, function_name

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.invoke(
            FunctionName=self.function_name, Payload=json.dumps(request).encode()
        )
        answer = json.loads(resp["Payload"].read() or b"{}")
        if resp.get("FunctionError"):
            raise RuntimeError(f"inference failed: {answer.get('errorMessage', answer)}")
        return answer
