"""Seed 004's leaderboard: submissions, the jobs that evaluate them, and the ranking.

A job runs a submission in the evaluator (containers/evaluator/): AWS Batch, or a local
subprocess, through the same job runner as training. Its lifecycle is forward-only:

    pending -> running -> completed | failed | cancelled     (pending -> failed | cancelled)

Each move is one conditional write; a move into an end state gives back the owner's
slot (at most ``max_active`` jobs pending or running at once) in the same write. The
evaluator moves its own job (``begin``, ``complete``, ``fail``); the runner's state
changes (``on_runner_state``) end a job whose evaluator died without saying so; and the
sweeper (``sweep``) ends any job still pending or running past its deadline (its
class's time limit plus a grace period), whatever happened to the runner. So every job
reaches an end with a reason.

Submissions and their logs are their owner's (404 to anyone else, as if absent); the
leaderboard, params and metrics of completed jobs are public within the deployment.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from shared import keys, submissions
from shared.errors import Conflict, InvalidInput, InvalidState, NotFound, RateLimited
from shared.events import ProgressEvent, event_id_for
from shared.models import (
    EVALUATION_TERMINAL,
    Evaluation,
    Principal,
    Submission,
    SubmissionFile,
    utcnow,
)
from shared.ports import (
    EvaluationRepository,
    JobRunner,
    LeaderboardRepository,
    ObjectStore,
    SubmissionRepository,
)
from shared.services.push import PushService
from shared.settings import ResourceClass

log = logging.getLogger(__name__)

ALLOWED_FROM: dict[str, frozenset[str]] = {
    "running": frozenset({"pending"}),
    "completed": frozenset({"running"}),
    "failed": frozenset({"pending", "running"}),
    "cancelled": frozenset({"pending", "running"}),
}
WINDOW_S = 3600  # seed 004: submissions per user per hour (a rolling window)
CONCURRENCY_RETRY_S = 30  # a hint: a slot frees when one of the caller's jobs ends
LEADERBOARD_ORDER = ("desc", "asc")
MAX_LOG_LINES_PUSHED = 50
MAX_METRIC_NAMES = 100  # listed in a ranking: those its rows report


@dataclass(frozen=True)
class EvaluationLimits:
    classes: Mapping[str, ResourceClass]
    grace_s: int
    max_active: int  # jobs pending or running per user
    per_hour: int  # submissions per user per rolling hour
    max_bytes: int  # all the files of one submission


def new_id() -> str:
    """A random id that is never all digits (training jobs' ids are numbers, and both
    kinds of job are followed on ``job:<id>`` topics)."""
    while True:
        candidate = secrets.token_hex(6)
        if not candidate.isdigit():
            return candidate


class EvaluationService:
    def __init__(
        self,
        submissions_repo: SubmissionRepository,
        jobs: EvaluationRepository,
        boards: LeaderboardRepository,
        uploads: ObjectStore,
        artifacts: ObjectStore,
        runner: JobRunner,
        push: PushService,
        *,
        limits: EvaluationLimits,
        mlflow_ui_url: str | None,
    ) -> None:
        self.submissions = submissions_repo
        self.jobs = jobs
        self.boards = boards
        self.uploads = uploads
        self.artifacts = artifacts
        self.runner = runner
        self.push = push
        self.limits = limits
        self.mlflow_ui_url = (mlflow_ui_url or "").rstrip("/") or None

    # --- submissions -------------------------------------------------------------------
    def submit(
        self,
        actor: Principal,
        files: list[tuple[str, IO[bytes], int]],
        entrypoint: str,
        config_file: str,
        metadata: str | None,
    ) -> Submission:
        """Check what was sent (names, kinds, archives, entrypoint and config, metadata),
        keep the files, and count the submission against its owner's hourly limit. A
        refused submission stores nothing and does not count."""
        if not files:
            raise InvalidInput("Send at least one file as multipart field 'files'", field="files")
        if len(files) > submissions.MAX_FILES:
            raise InvalidInput(f"At most {submissions.MAX_FILES} files", field="files")
        total = sum(size for _, _, size in files)
        if total > self.limits.max_bytes:
            raise InvalidInput(
                f"The files come to {submissions.mib(total)}; a submission may be at most "
                f"{submissions.mib(self.limits.max_bytes)} in all",
                field="files",
                code="SUBMISSION_TOO_LARGE",
            )
        meta, board = submissions.parse_metadata(metadata)
        listed = []
        for name, data, size in files:
            kind = submissions.kind_of(name)
            if kind in ("zip", "tar.gz"):
                inside = submissions.archive_paths(kind, data, size)
                data.seek(0)
            else:
                inside = [(name, size)]
            listed.append((name, inside))
        paths = submissions.tree(listed)
        entry, config = submissions.check_entry(paths, entrypoint, config_file)
        self._check_rate(actor.user_id)  # before the bytes are kept: refusals cost nothing
        sid = new_id()
        kept = []
        try:  # whatever stops it from here, the files it kept go
            for i, (name, data, size) in enumerate(files):
                key = keys.submission_file(actor.user_id, sid, i, name)
                self.uploads.put(key, data.read(), content_type="application/octet-stream")
                kept.append(SubmissionFile(name=name, size=size, key=key))
            sub = Submission(
                id=sid,
                owner_id=actor.user_id,
                entrypoint=entry,
                config_file=config,
                metadata=meta,
                leaderboard=board,
                files=kept,
                paths=paths,
                total_bytes=total,
            )
            retry_at = self.submissions.create(
                sub, per_window=self.limits.per_hour, window_s=WINDOW_S
            )
            if retry_at is not None:  # another request took the last place meanwhile
                raise self._too_many_submissions(retry_at)
        except BaseException:
            self.uploads.delete_prefix(keys.submission_prefix(actor.user_id, sid))
            raise
        return sub

    def _check_rate(self, user_id: int) -> None:
        recent = self.submissions.recent(user_id, window_s=WINDOW_S)
        per_hour = self.limits.per_hour
        if len(recent) >= per_hour:
            raise self._too_many_submissions(recent[len(recent) - per_hour] + WINDOW_S)

    def _too_many_submissions(self, retry_at: float) -> RateLimited:
        n = self.limits.per_hour
        return RateLimited(
            f"Submission limit reached: at most {n} submissions in any 60 minutes; the next "
            f"one is possible in {max(1, math.ceil(retry_at - time.time()))} s",
            limit=n,
            reset_at=math.ceil(retry_at),
        )

    def submission(self, actor: Principal, submission_id: str) -> Submission:
        sub = self.submissions.get(submission_id) if _plausible(submission_id) else None
        if sub is None or sub.owner_id != actor.user_id:
            raise NotFound("Submission not found", code="SUBMISSION_NOT_FOUND")
        return sub

    # --- jobs --------------------------------------------------------------------------
    def create_job(
        self,
        actor: Principal,
        submission_id: str,
        resource_class: str | None,
        *,
        rerun_of: str | None = None,
    ) -> Evaluation:
        classes = self.limits.classes
        name = resource_class or ("small" if "small" in classes else next(iter(classes)))
        cls = classes.get(name)
        if cls is None:
            raise InvalidInput(
                f"Unknown resource_class '{name}': choose one of {', '.join(classes)}",
                field="config.resource_class",
            )
        try:
            sub = self.submission(actor, submission_id)
        except NotFound:  # seed 004: 400 for a submission that does not exist
            raise InvalidInput(
                f"submission_id '{submission_id}' does not exist",
                field="submission_id",
                code="SUBMISSION_NOT_FOUND",
            ) from None
        job = Evaluation(
            id=new_id(),
            owner_id=actor.user_id,
            submission_id=sub.id,
            leaderboard=sub.leaderboard,
            resource_class=cls.name,
            rerun_of=rerun_of,
            deadline=time.time() + cls.seconds + self.limits.grace_s,
        )
        if not self.jobs.create(job, cap=self.limits.max_active):
            n = self.limits.max_active
            raise RateLimited(
                f"Concurrent job limit reached: at most {n} of your jobs may be pending or "
                "running at once; cancel one or wait for one to finish",
                limit=n,
                reset_at=int(time.time()) + CONCURRENCY_RETRY_S,
            )
        self._status(job, "pending", "Job queued")
        try:
            runner_id = self.runner.submit(
                job.id, job_type="evaluator", queue="cpu", limits=cls, owner=job.owner_id
            )
        except Exception:
            self.fail(job.id, "The job could not be submitted to the runner")
            raise
        now = self.jobs.update(job.id, {"runner_job_id": runner_id})
        if now is None:  # cancelled while it was being submitted
            self.runner.terminate(runner_id, "Cancelled by user")
            return self.jobs.get(job.id) or job
        # Seed 004 answers a new job as pending; on a quick runner it may be running by
        # now (the status route says so), which is still the job as created, submitted.
        return now.model_copy(update={"status": "pending"}) if now.status == "running" else now

    def get(self, actor: Principal, job_id: str) -> Evaluation:
        job = self.jobs.get(job_id) if _plausible(job_id) else None
        if job is None or not actor.can_read(job.owner_id):
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        return job

    def list(self, actor: Principal, limit: int) -> list[Evaluation]:
        return self.jobs.list(actor.user_id, limit=limit)

    def logs(self, actor: Principal, job_id: str) -> str:
        """The job's log (its owner's, and an admin's, as its WebSocket topic is): a
        timestamped line per line it printed."""
        job = self.get(actor, job_id)
        key = keys.evaluation_logs(job.id)
        if not self.artifacts.exists(key):
            raise NotFound("No log for this job yet", code="LOGS_NOT_FOUND")
        return self.artifacts.get(key).decode("utf-8", "replace")

    def results(self, actor: Principal, job_id: str) -> dict[str, Any]:
        job = self.get(actor, job_id)
        if not job.run_id:
            raise NotFound(
                f"The job is {job.status} and has no MLflow run yet", code="RESULTS_NOT_FOUND"
            )
        return {
            "job_id": job.id,
            "status": job.status,
            "run_id": job.run_id,
            **self.links(job.experiment_id, job.run_id),
            "params": job.params,
            "metrics": job.metrics,
        }

    def links(self, experiment_id: str | None, run_id: str | None) -> dict[str, str | None]:
        base = self.mlflow_ui_url
        if base is None or not run_id:
            return {"mlflow_ui_link": None, "mlflow_rest_link": None}
        return {
            "mlflow_ui_link": f"{base}/#/experiments/{experiment_id or 0}/runs/{run_id}",
            "mlflow_rest_link": f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}",
        }

    def cancel(self, actor: Principal, job_id: str) -> Evaluation:
        job = self.get(actor, job_id)
        if job.owner_id != actor.user_id and not actor.at_least("admin"):
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        done = self.jobs.transition(
            job.id,
            "cancelled",
            ALLOWED_FROM["cancelled"],
            {"finished_at": utcnow(), "error": "Cancelled by user"},
        )
        if done is None:
            now = self.jobs.get(job.id) or job
            raise InvalidState(
                f"The job is {now.status}; only pending or running jobs can be cancelled",
                code="INVALID_STATUS",
            )
        if done.runner_job_id:
            self.runner.terminate(done.runner_job_id, "Cancelled by user")
        self._status(done, "cancelled", "Cancelled by user")
        return done

    def rerun(self, actor: Principal, job_id: str) -> Evaluation:
        job = self.get(actor, job_id)
        if job.owner_id != actor.user_id:
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        if job.status not in EVALUATION_TERMINAL:
            raise Conflict(
                f"The job is {job.status}: re-run it once it has ended (or cancel it first)",
                code="INVALID_STATUS",
            )
        return self.create_job(actor, job.submission_id, job.resource_class, rerun_of=job.id)

    # --- the leaderboard ---------------------------------------------------------------
    def leaderboard(
        self,
        board: str,
        *,
        metric: str | None,
        order: str,
        filters: Mapping[str, str],
        every_run: bool,
        limit: int,
    ) -> dict[str, Any]:
        """Completed jobs ranked by ``metric`` (``desc``: higher is better; by default the
        metric most of them report), only those whose params match ``filters``; each
        user's best run unless ``every_run``."""
        if order not in LEADERBOARD_ORDER:
            raise InvalidInput("order must be desc or asc", field="order")
        entries = [
            e
            for e in self.boards.entries(board)
            if all(str(e.get("params", {}).get(k)) == v for k, v in filters.items())
        ]
        if metric is None:  # the metric most runs report (ties: by name)
            counts = Counter(m for e in entries for m in e.get("metrics", {}))
            metric = min(counts, key=lambda m: (-counts[m], m)) if counts else None
        ranked = [e for e in entries if metric is not None and _number(e["metrics"].get(metric))]
        sign = -1 if order == "desc" else 1
        ranked.sort(key=lambda e: (e["metrics"][metric] * sign, e["finished_at"]))
        if not every_run:
            best: dict[int, dict] = {}
            for e in ranked:
                best.setdefault(e["user_id"], e)
            ranked = list(best.values())
        rows = []
        for rank, e in enumerate(ranked[:limit], start=1):
            rows.append(
                {
                    "rank": rank,
                    "score": e["metrics"][metric],
                    **{k: e.get(k) for k in ("job_id", "submission_id", "user_id", "run_id")},
                    "params": e.get("params", {}),
                    "metrics": e.get("metrics", {}),
                    "metadata": e.get("metadata", {}),
                    "finished_at": e.get("finished_at"),
                    **self.links(e.get("experiment_id"), e.get("run_id")),
                }
            )
        names = sorted({m for row in rows for m in row["metrics"]})[:MAX_METRIC_NAMES]
        return {
            "leaderboard": board,
            "metric": metric,
            "order": order,
            "best_per_user": not every_run,
            "metrics": names,
            "total": len(ranked),
            "entries": rows,
        }

    # --- the evaluator's side ------------------------------------------------------------
    def begin(self, job_id: str) -> tuple[Evaluation, Submission] | None:
        """The job and its submission, the job now ``running``; None when it has ended
        (cancelled before it started, or swept)."""
        job = self.jobs.get(job_id)
        if job is None or job.status in EVALUATION_TERMINAL:
            return None
        if job.status == "pending":
            moved = self.jobs.transition(
                job.id, "running", ALLOWED_FROM["running"], {"started_at": utcnow()}
            )
            if moved is None:
                return (
                    self.begin(job_id)
                    if (self.jobs.get(job_id) or job).status == "running"
                    else None
                )
            job = moved
            self._status(job, "running", "Evaluation started")
        sub = self.submissions.get(job.submission_id)
        if sub is None:
            self.fail(job.id, "The submission no longer exists")
            return None
        return job, sub

    def ended(self, job_id: str) -> bool:
        """Whether the job has reached an end (or is gone): its evaluator stops reporting."""
        job = self.jobs.get(job_id)
        return job is None or job.status in EVALUATION_TERMINAL

    def record_run(self, job_id: str, run_id: str, experiment_id: str) -> None:
        self.jobs.update(job_id, {"run_id": run_id, "experiment_id": experiment_id})

    def save_logs(self, job_id: str, text: bytes) -> None:
        self.artifacts.put(
            keys.evaluation_logs(job_id), text, content_type="text/plain; charset=utf-8"
        )

    def publish_logs(self, job: Evaluation, seq: int, lines: list[str]) -> None:
        """New log lines to the job's followers (the last ``MAX_LOG_LINES_PUSHED`` of them)."""
        if not lines:
            return
        shown = lines[-MAX_LOG_LINES_PUSHED:]
        self.push.publish(
            ProgressEvent(
                topic=f"job:{job.id}",
                kind="log",
                event_id=event_id_for("evaluation-log", job.id, seq),
                also=[f"user:{job.owner_id}"],
                data={
                    "job_id": job.id,
                    "level": "INFO",
                    "message": "\n".join(shown),
                    "lines": len(lines),
                },
            )
        )

    def complete(self, job_id: str, params: dict, metrics: dict) -> Evaluation | None:
        """The job measured ``metrics``: completed, and on its leaderboard."""
        done = self.jobs.transition(
            job_id,
            "completed",
            ALLOWED_FROM["completed"],
            {"params": params, "metrics": metrics, "finished_at": utcnow()},
        )
        if done is None:
            return None
        sub = self.submissions.get(done.submission_id)
        self.boards.put(
            done.leaderboard,
            {
                "job_id": done.id,
                "submission_id": done.submission_id,
                "user_id": done.owner_id,
                "run_id": done.run_id,
                "experiment_id": done.experiment_id,
                "params": params,
                "metrics": metrics,
                "metadata": sub.metadata if sub else {},
                "finished_at": (done.finished_at or utcnow()).isoformat(),
            },
        )
        self._status(done, "completed", "Evaluation completed", metrics=metrics)
        return done

    def fail(self, job_id: str, error: str) -> Evaluation | None:
        """End the job failed with ``error`` (unless it has ended already)."""
        done = self.jobs.transition(
            job_id,
            "failed",
            ALLOWED_FROM["failed"],
            {"error": error[:2000], "finished_at": utcnow()},
        )
        if done is not None:
            self._status(done, "failed", error[:2000])
        return done

    # --- what the runner reports, and the sweeper ------------------------------------------
    def on_runner_state(
        self, job_id: str, batch_status: str, reason: str | None
    ) -> Evaluation | None:
        """A "Batch Job State Change" of an evaluator: RUNNING starts the job (if the
        evaluator has not); SUCCEEDED or FAILED of a job not ended means the evaluator
        died without ending it, so it fails with the runner's reason."""
        job = self.jobs.get(job_id) if _plausible(job_id) else None
        if job is None or job.status in EVALUATION_TERMINAL:
            return job
        if batch_status == "RUNNING" and job.status == "pending":
            moved = self.jobs.transition(
                job.id, "running", ALLOWED_FROM["running"], {"started_at": utcnow()}
            )
            if moved:
                self._status(moved, "running", "Evaluation started")
            return moved
        if batch_status in ("SUCCEEDED", "FAILED"):
            return self.fail(
                job.id,
                f"The evaluator stopped without reporting a result ({reason or batch_status})",
            )
        return job

    def sweep(self, now: float | None = None) -> list[str]:
        """End every job still pending or running past its deadline; returns their ids."""
        now = time.time() if now is None else now
        ended = []
        for job in self.jobs.active():
            if job.deadline > now:
                continue
            cls = self.limits.classes.get(job.resource_class)
            limit = f"{cls.seconds} s" if cls else "its class's limit"
            if job.runner_job_id:
                try:
                    self.runner.terminate(job.runner_job_id, "Past its deadline")
                except Exception:  # the runner may have lost it already; the job ends anyway
                    log.warning("could not terminate %s of job %s", job.runner_job_id, job.id)
            if self.fail(
                job.id,
                f"Timed out: the job did not finish within its time limit ({limit}) plus "
                f"{self.limits.grace_s} s of grace (it was {job.status})",
            ):
                ended.append(job.id)
        return ended

    def _status(self, job: Evaluation, status: str, message: str, **extra: Any) -> None:
        data: dict[str, Any] = {"job_id": job.id, "status": status, "message": message, **extra}
        if status == "failed":
            data["error"] = message
        self.push.publish(
            ProgressEvent(
                topic=f"job:{job.id}",
                kind="error" if status == "failed" else "status",
                event_id=event_id_for("evaluation", job.id, status),
                also=[f"user:{job.owner_id}"],
                data=data,
            )
        )


def _plausible(rid: str) -> bool:
    """Ids are short hex strings: anything else is not looked up at all."""
    return 1 <= len(rid) <= 32 and rid.isalnum() and rid.isascii()


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
