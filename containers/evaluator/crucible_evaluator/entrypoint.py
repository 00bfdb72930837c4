"""``main(--job-id)``: evaluate one leaderboard job (seed 004).

Begin the job (it is ``running`` now), start its MLflow run, fetch and unpack the
submission, run ``python <entrypoint> --config <config_file> --output /out`` in the
sandbox with the resource class's limits while its lines go to the job's log, then
read ``metrics.json`` and end the job ``completed`` (the metrics on its leaderboard and
its MLflow run) or ``failed`` with the reason: a limit, an exit status, a bad
``metrics.json``, a missing protection, or the evaluator's own error. Whatever happens,
the job ends.

The job's log is saved and its last lines pushed before its final state, which is the
last thing its followers hear; a job that has ended meanwhile (a cancel, the sweeper)
gets no more pushes, its log is only saved.

At start (as root) it removes the workspaces of runs killed long ago (a SIGKILLed
evaluator's) and takes a private mount namespace, so that its sandboxes' output tmpfs
go with it whatever happens.

Exit status: 0 once the job has ended (however the submission did), 1 when the
evaluator itself failed, 143 on SIGTERM (a cancel, or the runner stopping it: the
sandbox is killed and the job failed, unless it had ended already, then 0)."""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from crucible_evaluator.joblog import JobLog
from crucible_evaluator.outputs import InvalidMetrics, Metrics, Params, read_metrics
from crucible_evaluator.sandbox import (
    Limits,
    Sandbox,
    SandboxUnavailable,
    isolate_mounts,
    probe,
    remove_stale_workspaces,
)
from crucible_evaluator.tracking import Tracking
from shared.errors import CrucibleError
from shared.models import Evaluation, Submission
from shared.services.evaluations import EvaluationService
from shared.settings import Settings, load_settings
from shared.submissions import unpack
from shared.wiring import Container, build

log = logging.getLogger("crucible.evaluator")
INTERRUPTED = 128 + signal.SIGTERM
STALE_AFTER_S = 3600  # a workspace older than the longest class and this is a dead run's


class JobFailed(Exception):
    """The job ends failed with this message (the submission's doing, or a refusal)."""


class Interrupted(Exception):
    """SIGTERM arrived: a cancel, or the runner stopping the evaluator."""


class StopOnSigterm:
    """SIGTERM kills the running sandbox at once; between steps ``check`` raises."""

    def __init__(self) -> None:
        self.requested = False
        self.box: Sandbox | None = None
        self.joblog: JobLog | None = None
        signal.signal(signal.SIGTERM, self)

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.joblog is not None:  # a cancel, or the sweeper: the job ends (or has ended)
            self.joblog.silence()
        if self.box is not None:
            self.box.stop("Stopped: the job was cancelled or its evaluator was stopped")

    def check(self) -> None:
        if self.requested:
            raise Interrupted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crucible_evaluator")
    ap.add_argument("--job-id", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = StopOnSigterm()

    settings = load_settings()
    _prepare(settings)
    c = build(settings)
    svc = c.evaluations
    started = svc.begin(args.job_id)
    if started is None:
        log.info("job %s has ended already (or does not exist): nothing to run", args.job_id)
        return 0
    job, sub = started

    joblog = JobLog(svc, job, ended=lambda: svc.ended(job.id)).start()
    stop.joblog = joblog
    joblog.add(f"Starting job {job.id}")
    tracking: Tracking | None = None
    with tempfile.TemporaryDirectory(prefix="crucible-worker-") as tmp:
        try:
            stop.check()
            tracking = Tracking(settings, Path(tmp))
            run_id, experiment_id = tracking.start(job, sub)
            svc.record_run(job.id, run_id, experiment_id)
            params, metrics = evaluate(settings, c, job, sub, Path(tmp), joblog, stop)
            tracking.finish(params, metrics)
        except JobFailed as exc:
            return _failed(svc, job, joblog, tracking, str(exc), 0)
        except Interrupted:
            return _failed(
                svc,
                job,
                joblog,
                tracking,
                "Stopped: the job was cancelled or its evaluator was stopped (SIGTERM)",
                INTERRUPTED,
            )
        except Exception as exc:
            log.exception("the evaluator failed on job %s", job.id)
            reason = f"The evaluator failed: {type(exc).__name__}: {exc}"
            return _failed(svc, job, joblog, tracking, reason, 1)
    shown = ", ".join(f"{k}={v:g}" for k, v in list(metrics.items())[:10])
    joblog.add(f"Metrics: {shown}{' ...' if len(metrics) > 10 else ''}")
    joblog.add("Job completed")
    try:
        done = _end(joblog, lambda: svc.complete(job.id, params, metrics))
    except Exception as exc:
        log.exception("could not complete job %s", job.id)
        reason = f"The evaluator could not record the result: {type(exc).__name__}"
        joblog.add(f"Job failed: {reason}")
        joblog.save()
        svc.fail(job.id, reason)
        return 1
    if done is None:
        joblog.add("The job had ended meanwhile (cancelled): its result is not recorded")
        joblog.save()
    return 0


def evaluate(
    settings: Settings,
    c: Container,
    job: Evaluation,
    sub: Submission,
    work: Path,
    joblog: JobLog,
    stop: StopOnSigterm,
) -> tuple[Params, Metrics]:
    """Fetch, run and read the submission; JobFailed says why it cannot count."""
    rc = settings.resource_classes.get(job.resource_class)
    if rc is None:
        raise JobFailed(f"Unknown resource class '{job.resource_class}'")
    try:
        checked = probe(settings.sandbox_python)
        if checked.missing:  # only reached when the operator allowed it
            for problem in checked.missing:
                joblog.add(f"WARNING: RUNNING WITHOUT A COMPLETE SANDBOX: {problem}", "sandbox")
            log.warning("CRUCIBLE_ALLOW_UNSANDBOXED is set: untrusted code runs unprotected")
        box = Sandbox(
            checked,
            Limits.of(rc, settings),
            name=f"job-{job.id}",
            allow_unsandboxed=settings.allow_unsandboxed,
        )
    except SandboxUnavailable as exc:
        raise JobFailed(str(exc)) from None
    with box:
        files = []
        (work / "files").mkdir()
        for i, f in enumerate(sub.files):
            local = work / "files" / str(i)
            c.uploads.download(f.key, str(local))
            files.append((f.name, local))
        try:
            unpack(files, box.code)
        except CrucibleError as exc:
            raise JobFailed(f"The submission cannot be unpacked: {exc}") from None
        stop.check()
        joblog.add(
            f"Running python {sub.entrypoint} --config {sub.config_file} --output /out "
            f"(class {rc.name}: {rc.seconds} s, {rc.memory_mib} MiB, {rc.vcpu:g} vCPU)"
        )
        stop.box = box
        try:
            outcome = box.run(sub.entrypoint, sub.config_file, lambda s, line: joblog.add(line, s))
        finally:
            stop.box = None
        stop.check()
        if outcome.error:
            raise JobFailed(outcome.error)
        joblog.add(f"The submission exited 0 after {outcome.seconds:.1f} s")
        try:
            return read_metrics(box.out)
        except InvalidMetrics as exc:
            raise JobFailed(str(exc)) from None


def _failed(
    svc: EvaluationService,
    job: Evaluation,
    joblog: JobLog,
    tracking: Tracking | None,
    reason: str,
    code: int,
) -> int:
    """End the job failed (unless it has ended already): the log first, then the state."""
    joblog.add(reason if code == INTERRUPTED else f"Job failed: {reason}")
    if tracking is not None:
        try:
            tracking.end("KILLED" if code == INTERRUPTED else "FAILED")
        except Exception:
            log.exception("could not end the MLflow run of job %s", job.id)
    if _end(joblog, lambda: svc.fail(job.id, reason)) is None:
        return 0  # it had ended already (a cancel): nothing left to report
    return code


def _end(joblog: JobLog, end: Callable[[], Evaluation | None]) -> Evaluation | None:
    """Save the log, push its last lines, then ``end`` the job (its final state, pushed by
    the service, is the last thing followers hear). If the job has ended already (a
    cancel, the sweeper: its followers heard that final state), the log is only saved."""
    joblog.silence()
    joblog.close(push=not joblog.job_ended())
    return end()


def _prepare(settings: Settings) -> None:
    """Remove the workspaces of runs long dead (a SIGKILLed evaluator's, with their
    mounts), then take a mount namespace of this process's own (as root)."""
    longest = max((rc.seconds for rc in settings.resource_classes.values()), default=0)
    try:
        for path in remove_stale_workspaces(longest + STALE_AFTER_S):
            log.info("removed the stale workspace %s", path)
    except Exception:
        log.exception("could not remove stale workspaces")
    isolate_mounts()
