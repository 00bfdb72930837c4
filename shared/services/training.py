"""Seed 002's training jobs (and seed 003's workflows over them): create, start (with
resume from a checkpoint), stop, and read progress, metrics and logs.

A job's status moves only through shared/services/jobs.py. Starting queues it and
submits the trainer to the job runner (AWS Batch, or a local subprocess); the runner's
"Batch Job State Change" events move it on from there; stopping asks the runner to
SIGTERM it, and the trainer saves a last checkpoint before it exits. ``resume`` continues
a stopped or failed job, the same job, from its last checkpoint as a new attempt.

Nothing stays stuck: each submission is numbered (``attempt``, passed to the runner and
named by its state changes), its runner job is recorded only for that attempt and only
once (a submission that loses a race terminates its own runner job), and a deadline is
written before it is handed to the runner, so the reconciler (``reconcile``) submits
again or fails a job whose submission died, and asks the runner about each active job
now and then (shared/services/reconciler.py). A failed submission fails the job with the
reason; a job stopped while it was being submitted ends ``stopped`` only once its runner
job has ended.

Every id a request names is checked against the caller as GET checks the job: the
dataset and project of a new job, and the job a checkpoint to resume from belongs to.
A user has at most ``JobLimits.active_jobs`` jobs active, and one seed 000 run; both
are taken atomically with the move to ``queued``. A refused request stores nothing:
everything is checked before the one conditional write that starts a job.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any, NamedTuple

from shared import keys
from shared.catalogue import ASR_DEFAULTS, FRAMEWORKS, check_model
from shared.errors import Conflict, CrucibleError, InvalidInput, InvalidState, NotFound, TooLarge
from shared.models import ACTIVE_STATUSES, Dataset, Principal, TrainingJob, utcnow
from shared.ports import (
    Deadline,
    DeadlineRepository,
    JobRecordRepository,
    JobRepository,
    JobRunner,
    ObjectStore,
    Predictor,
    RunnerState,
)
from shared.services.datasets import DatasetService
from shared.services.jobs import (
    ALL_JOBS,
    ASR_RUNS,
    OUTCOME_MESSAGES,
    RESUMABLE_FROM,
    JobBounds,
    JobLimits,
    JobStates,
)
from shared.services.projects import ProjectService
from shared.services.push import PushService
from shared.services.reporting import (
    Reporter,
    details_key,
    read_details,
    stored_details_size,
)

# What a job can resume from: a checkpoint its trainer saved, named by its artifacts key
# (shared/keys.py).
CHECKPOINT_NOT_FOUND = (
    f"Checkpoint not found: checkpoint_path must be {keys.CHECKPOINT_FORM} "
    "of a job of yours that saved one"
)
# advanced_config keys the platform writes itself, and what a client does instead.
INTERNAL_OPTIONS = {
    "resume_from": "to continue from a checkpoint, start the job with checkpoint_path or resume",
}
MAX_ADVANCED_CONFIG_BYTES = 16 * 1024
# Per-class metrics and confusion matrices one /validation/results answer inlines: Lambda
# returns at most 6 MB, and 1,000 classes' matrix alone takes about 2-4 MB of JSON.
RESULTS_DETAILS_BYTES = 4 * 2**20

log = logging.getLogger(__name__)


class SubmitFailed(CrucibleError):
    """The job runner refused or could not take a submission; the job is failed with the
    reason and may be started again."""

    code = "SUBMIT_FAILED"
    http_status = 503


# How many completed jobs' checkpoints a process keeps (checkpoint_of): a few hundred bytes each.
FINAL_CHECKPOINTS_KEPT = 1024


class Checkpoint(NamedTuple):
    """A job's checkpoint: its key in the artifacts bucket and the version (ETag) found."""

    key: str
    etag: str


class TrainingService:
    def __init__(
        self,
        states: JobStates,
        jobs: JobRepository,
        records: JobRecordRepository,
        datasets: DatasetService,
        artifacts: ObjectStore,
        runner: JobRunner,
        push: PushService,
        predictor: Predictor,
        *,
        projects: ProjectService,
        limits: JobLimits,
        max_inference_bytes: int,
        deadlines: DeadlineRepository,
        bounds: JobBounds,
    ) -> None:
        self.deadlines = deadlines
        self.bounds = bounds
        self.states = states
        self.jobs = jobs
        self.records = records
        self.datasets = datasets
        self.artifacts = artifacts
        self.runner = runner
        self.push = push
        self.predictor = predictor
        # completed jobs' checkpoints as last found (checkpoint_of), the oldest dropped first
        self._final_checkpoints: dict[tuple[int, datetime], Checkpoint] = {}
        self.projects = projects
        self.limits = limits
        self.max_inference_bytes = max_inference_bytes

    def get(self, actor: Principal, job_id: int) -> TrainingJob:
        job = self.jobs.get(job_id)
        if job is None or not actor.can_read(job.owner_id):
            raise NotFound("Training job not found", code="JOB_NOT_FOUND")
        return job

    def create(self, actor: Principal, cfg: dict[str, Any], meta: dict[str, Any]) -> TrainingJob:
        return self.jobs.create(self._new(actor, cfg, meta))  # nothing to acquire: stored

    def _new(self, actor: Principal, cfg: dict[str, Any], meta: dict[str, Any]) -> TrainingJob:
        """A new pending job of ``actor``'s from a seed 002 config, every part checked."""
        framework = str(cfg.get("framework") or "")
        tasks = FRAMEWORKS.get(framework, {}).get("tasks", {})
        task = str(cfg.get("task_type") or next(iter(tasks), ""))
        model_name = str(cfg.get("model_name") or "")
        advanced = dict(cfg.get("advanced_config") or {})
        # Model names and starting weights come only from the catalogue (never a path/URL).
        check_model(framework, task, model_name, advanced)
        spec = FRAMEWORKS[framework]
        for key, instead in INTERNAL_OPTIONS.items():
            if key in advanced:
                raise InvalidInput(
                    f"advanced_config.{key} is set by the platform, not by requests: {instead}",
                    field=f"config.advanced_config.{key}",
                )
        if len(json.dumps(advanced, default=str)) > MAX_ADVANCED_CONFIG_BYTES:
            raise InvalidInput(
                f"advanced_config must be at most {MAX_ADVANCED_CONFIG_BYTES} bytes of JSON",
                field="config.advanced_config",
            )
        try:
            dataset = self.datasets.get(actor, str(cfg.get("dataset_id")))
        except NotFound:
            raise NotFound(
                "Dataset not found", field="config.dataset_id", code="DATASET_NOT_FOUND"
            ) from None
        if dataset.status != "ready":
            raise InvalidInput(f"The dataset is {dataset.status}", field="config.dataset_id")
        (metric, mode), formats = spec["tasks"][task]
        if dataset.format not in formats:
            raise InvalidInput(
                f"{framework} {task} needs a {' or '.join(formats)} dataset, not {dataset.format}",
                field="config.dataset_id",
            )
        project = None
        if meta.get("project_id") is not None:  # only a project its creator can read
            project = self.projects.get(actor, int(meta["project_id"]), field="project_id")
        # Seed 002's knobs, checked (a 400 names any the framework does not honour), and
        # the fields the job keeps of its dataset and project.
        from shared.training_options import new_job

        cfg, meta = new_job(framework, cfg, meta, dataset, project)
        epochs = int(cfg.get("epochs", 10))
        return TrainingJob(
            id=0,
            owner_id=actor.user_id,
            framework=framework,
            model_name=model_name,
            task_type=task,
            dataset_id=dataset.id,
            epochs=epochs,
            total_epochs=epochs,
            batch_size=int(cfg.get("batch_size", 16)),
            learning_rate=float(cfg.get("learning_rate", 1e-3)),
            advanced_config=advanced,
            primary_metric=metric,
            primary_metric_mode=mode,
            **meta,
        )

    def _checkpoint(self, actor: Principal, job: TrainingJob, key: str) -> str:
        """``key`` if it names a saved checkpoint of a job ``actor`` may read, of the same
        model as ``job``; any other key gets the same answer, whether or not an object
        exists there."""
        found = keys.parse_checkpoint(key)
        try:
            if found is None:
                raise NotFound(CHECKPOINT_NOT_FOUND)
            source = self.get(actor, found[0])
            if not self.artifacts.exists(key):
                raise NotFound(CHECKPOINT_NOT_FOUND)
        except NotFound:
            raise NotFound(
                CHECKPOINT_NOT_FOUND, field="checkpoint_path", code="CHECKPOINT_NOT_FOUND"
            ) from None
        if (source.framework, source.task_type, source.model_name) != (
            job.framework,
            job.task_type,
            job.model_name,
        ):
            raise InvalidInput(
                f"The checkpoint is of a {source.framework} {source.model_name} "
                f"{source.task_type} job; this job trains {job.framework} {job.model_name} "
                f"{job.task_type}",
                field="checkpoint_path",
            )
        return key

    def _slots(self, job: TrainingJob, *, one_run: bool = False) -> dict[str, int | None]:
        """The counters a job takes a slot in when it starts, with their caps: every job
        counts against its owner's cap; a speech run also counts as an ASR run, capped
        at one for seed 000's /train/start (``one_run``)."""
        slots: dict[str, int | None] = {ALL_JOBS: self.limits.active_jobs(job.owner_id)}
        if job.framework == "torchaudio":
            slots[ASR_RUNS] = 1 if one_run else None
        return slots

    def _refused(
        self,
        job: TrainingJob,
        *,
        one_run: bool = False,
        startable: frozenset[str] = frozenset({"pending"}),
    ) -> Exception:
        """Why a stored job (or, for ``one_run``, a new run) could not start: its status,
        or a cap. Read after the refusal, for the message; the refusal itself was the
        conditional write's."""
        now = job if one_run else self.jobs.get(job.id)
        if now is None or (not one_run and now.status not in startable):
            status = now.status if now else "deleted"
            return InvalidState(f"A {status} job cannot be started", code="INVALID_STATUS")
        if one_run and self.jobs.active(job.owner_id).get(ASR_RUNS, 0) >= 1:
            return Conflict("Training is already in progress.", code="TRAINING_IN_PROGRESS")
        cap = self.limits.active_jobs(job.owner_id)
        return Conflict(
            f"Too many active training jobs: at most {cap} may be queued or running at once "
            f"(max_active_jobs = {cap}); stop one or wait for one to finish",
            code="ACTIVE_JOB_LIMIT",
        )

    def start(
        self,
        actor: Principal,
        job_id: int,
        *,
        checkpoint_path: str | None = None,
        resume: bool = False,
    ) -> TrainingJob:
        """Queue a pending job and submit it. ``resume`` continues a stopped or failed
        job, the same job, from its last checkpoint (or ``checkpoint_path``), as a new
        attempt with a runner job of its own; a job that failed before it ever ran (its
        submission failed) may be started again as it was."""
        job = self.get(actor, job_id)
        fields: dict[str, Any] = {"started_at": utcnow(), "attempt": job.attempt + 1}
        if resume and job.status not in RESUMABLE_FROM:
            raise InvalidState(
                f"Only a stopped or failed job can be resumed; job {job.id} is {job.status}",
                code="INVALID_STATUS",
            )
        if (
            resume
            and not checkpoint_path
            and not self.artifacts.exists(keys.last_checkpoint(job.id))
        ):
            raise Conflict(
                f"Job {job.id} has no checkpoint to resume from: it saved none before it "
                f"{'stopped' if job.status == 'stopped' else 'failed'}; start a new job instead",
                code="NO_CHECKPOINT",
            )
        if checkpoint_path or resume:
            key = checkpoint_path or keys.last_checkpoint(job.id)
            key = self._checkpoint(actor, job, key)
            fields["advanced_config"] = {**job.advanced_config, "resume_from": key}
        restart = resume or (job.status == "failed" and job.runner_job_id is None)
        if restart and job.started_at is not None:  # the run that ended is still GPU time
            ended = job.completed_at or utcnow()
            fields["earlier_runs"] = [*job.earlier_runs, (job.started_at, ended)]
        # One conditional write: the status, the resume point and the slot, or nothing.
        if restart:
            queued = self.states.resume(job.id, acquire=self._slots(job), **fields)
        else:
            queued = self.states.advance(job.id, "queued", acquire=self._slots(job), **fields)
        if queued is None:
            raise self._refused(
                job, startable=RESUMABLE_FROM if restart else frozenset({"pending"})
            )
        return self._submit(queued)

    def _watch(self, job: TrainingJob, after_s: float, **data: Any) -> None:
        """When the reconciler looks at the job next (shared/services/reconciler.py): a
        deadline of this attempt's, dropped once the job has moved to another."""
        self.deadlines.put(
            "training", str(job.id), time.time() + after_s, attempt=job.attempt, **data
        )

    def _submit(self, job: TrainingJob, *, resubmits: int = 0) -> TrainingJob:
        """Hand a queued job (submission ``job.attempt``) to the runner. A job that cannot
        be submitted fails with the reason (and gives its slot back) rather than stay
        queued, and may be started again. A runner job that cannot be recorded (another
        submission of the job won) is terminated; one of a job asked to stop meanwhile is
        terminated once its id is known, and the job ends ``stopped`` when it ends. The
        job's deadline comes first: whatever dies from here on, the reconciler settles it."""
        self._watch(job, self.bounds.queued_deadline_s, resubmits=resubmits)
        try:
            runner_id = self.runner.submit(
                str(job.id),
                job_type="trainer",
                queue="gpu",
                attempt=job.attempt,
                owner=job.owner_id,
            )
        except Exception as exc:
            log.exception("job %s: submission %s failed", job.id, job.attempt)
            reason = (
                f"The job could not be submitted to the job runner ({type(exc).__name__}); "
                "start it again"
            )
            now = self.jobs.get(job.id)
            to = "stopped" if now is not None and now.status == "stopping" else "failed"
            current = now is not None and now.attempt == job.attempt and not now.runner_job_id
            if current and (event := self.states.settle(now, to, reason)):
                self.push.publish(event)
            raise SubmitFailed(reason) from None
        recorded = self.jobs.set_runner(job.id, job.attempt, runner_id)
        if recorded is None:  # another submission took over, or the job was settled
            self.runner.terminate(runner_id, "Superseded: another submission of the job runs")
            return self.jobs.get(job.id) or job
        if recorded.status in ("stopping", "stopped"):  # stopped while it was being submitted
            self.runner.terminate(runner_id, "Stopped by user")
        return recorded

    def stop(self, actor: Principal, job_id: int) -> TrainingJob:
        job = self.get(actor, job_id)
        stopping = self.states.advance(job.id, "stopping")
        if stopping is None:
            raise Conflict(
                f"The job is {job.status}; only queued or running jobs can be stopped",
                code="INVALID_STATUS",
            )
        if stopping.runner_job_id:  # as written with the move: a submit racing it sees it
            self.runner.terminate(stopping.runner_job_id, "Stopped by user")
        elif job.status == "pending":  # never started: nothing runs, so it is stopped now
            stopping = self.states.advance(job.id, "stopped") or stopping
        # else queued, its submission under way: the submitter terminates its runner job
        # once its id is known (the job ends stopped when that ends), and if none ever is
        # (the API died), the reconciler stops the job at its deadline.
        return stopping

    # --- the reconciler: a job whose deadline passed -------------------------------------
    def reconcile(self, due: Deadline, now: float) -> str:
        """Settle a job the reconciler found due, after asking its runner: a job queued
        without a runner job is submitted again (``max_resubmits`` times) or failed; one
        the runner says ended, or has no record of, ends with the runner's reason; one
        still going is looked at again later (and a stop is asked for again). Returns
        what was done."""
        job = self.jobs.get(int(due.ref))
        if job is None or job.status not in ("queued", "running", "stopping"):
            return "settled"
        if int(due.data.get("attempt", job.attempt)) != job.attempt:
            return "settled"  # an earlier attempt's: the current one has its own deadline
        if not job.runner_job_id:
            return self._unsubmitted(job, int(due.data.get("resubmits", 0)))
        rid = job.runner_job_id
        state = self.runner.describe([rid]).get(rid)
        if state is None:
            state = RunnerState("FAILED", f"lost: the job runner has no record of job {rid}")
        if state.status in ("SUCCEEDED", "FAILED") or (
            state.status == "RUNNING" and job.status == "queued"  # a RUNNING event lost
        ):
            event = self.states.on_batch_state(
                str(job.id), rid, state.status, state.reason, attempt=str(job.attempt)
            )
            if event is not None:
                self.push.publish(event)
            if state.status in ("SUCCEEDED", "FAILED"):
                return f"ended ({state.status.lower()})"
        if job.status == "stopping":  # asked to stop and still going: ask again
            self.runner.terminate(rid, "Stopped by user")
        self._watch(job, self.bounds.check_interval_s)
        return "checked"

    def _unsubmitted(self, job: TrainingJob, resubmits: int) -> str:
        """A job queued (or stopping) past its deadline with no runner job recorded: the
        submission died with its caller. Taking the next attempt first means a submission
        still under way cannot record its runner job (it terminates it instead)."""
        claimed = self.jobs.claim_attempt(job.id, job.attempt, job.status)
        if claimed is None:
            return "settled"  # it moved meanwhile
        limit = self.bounds.queued_deadline_s
        if job.status == "stopping":
            event = self.states.settle(claimed, "stopped", "Stopped before it was submitted")
        elif resubmits >= self.bounds.max_resubmits:
            event = self.states.settle(
                claimed,
                "failed",
                f"The job was not submitted within {limit} s, {resubmits + 1} time(s); "
                "start it again",
            )
        else:
            try:
                self._submit(claimed, resubmits=resubmits + 1)
            except SubmitFailed:
                return "failed"
            return "resubmitted"
        if event is not None:
            self.push.publish(event)
        return "settled" if event is None else str(event.data["status"])

    # --- seed 000: one ASR run at a time per user, by model and dataset name -----------
    def active_asr(self, actor: Principal) -> TrainingJob | None:
        page = self.jobs.list(owner_id=actor.user_id, skip=0, limit=10_000)
        return next(
            (j for j in page.items if j.framework == "torchaudio" and j.status in ACTIVE_STATUSES),
            None,
        )

    def asr_datasets(self, actor: Principal) -> list[Dataset]:
        return [d for d in self.datasets.list(actor, fmt="ljspeech") if d.status == "ready"]

    def start_asr(self, actor: Principal, model_name: str, dataset_name: str) -> TrainingJob:
        if model_name not in FRAMEWORKS["torchaudio"]["models"]:
            raise InvalidInput(f"Model '{model_name}' not found in config.", field="model_name")
        dataset = next((d for d in self.asr_datasets(actor) if d.name == dataset_name), None)
        if dataset is None:
            raise InvalidInput(
                f"Dataset '{dataset_name}' not found in config.", field="dataset_name"
            )
        if self.active_asr(actor):
            raise Conflict("Training is already in progress.", code="TRAINING_IN_PROGRESS")
        cfg = {
            "framework": "torchaudio",
            "model_name": model_name,
            "task_type": "speech_recognition",
            "dataset_id": dataset.id,
            **{k: v for k, v in ASR_DEFAULTS.items() if k != "optimizer"},
        }
        new = self._new(actor, cfg, {"experiment_name": f"{model_name}-{dataset_name}"})
        # Stored already queued, holding its slots, in one transaction; or not at all.
        new = new.model_copy(update={"status": "queued", "started_at": utcnow(), "attempt": 1})
        job = self.jobs.create(new, acquire=self._slots(new, one_run=True))
        if job is None:
            raise self._refused(new, one_run=True)
        return self._submit(job)

    def stop_asr(self, actor: Principal) -> TrainingJob:
        job = self.active_asr(actor)
        if job is None:
            raise NotFound("No training process is running.", code="NO_TRAINING")
        return self.stop(actor, job.id)

    def checkpoints(self, actor: Principal, job_id: int) -> list[dict[str, Any]]:
        """The job's stored checkpoints (``best``, ``last``), each with its key, size and
        version: what a resume starts from and what predictions load."""
        self.get(actor, job_id)
        out = []
        for name, key in (
            ("best", keys.best_checkpoint(job_id)),
            ("last", keys.last_checkpoint(job_id)),
        ):
            found = self.artifacts.head(key)
            if found is not None:
                out.append(
                    {"name": name, "path": key, "size_bytes": found["size"], "etag": found["etag"]}
                )
        return out

    # --- predictions from checkpoints (seed 002's /test-inference, seed 000's /inference) --
    def checkpoint_of(self, job: TrainingJob) -> Checkpoint | None:
        """The job's best checkpoint, else its last one, with the version found (one HEAD
        each, and the predictor needs no other to know whether its cached model is it).

        A completed job writes no more checkpoints (its trainer saved them before it
        reported completion; running it again changes the job first), so what was found
        for it is kept, keyed by its completion: a warm prediction makes no HEAD."""
        final = (job.id, job.completed_at) if job.status == "completed" else None
        if final and final[1] is not None and final in self._final_checkpoints:
            return self._final_checkpoints[final]
        for key in (keys.best_checkpoint(job.id), keys.last_checkpoint(job.id)):
            found = self.artifacts.head(key)
            if found is not None:
                checkpoint = Checkpoint(key, found["etag"])
                if final and final[1] is not None:
                    if len(self._final_checkpoints) >= FINAL_CHECKPOINTS_KEPT:
                        del self._final_checkpoints[next(iter(self._final_checkpoints))]
                    self._final_checkpoints[final] = checkpoint
                return checkpoint
        return None

    def _predict(
        self, checkpoint: Checkpoint, data: bytes, filename: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        import base64

        if not data:
            raise InvalidInput("The file is empty", field="file")
        if len(data) > self.max_inference_bytes:
            raise TooLarge(
                f"Files for inference must be at most {self.max_inference_bytes} bytes",
                field="file",
            )
        answer = self.predictor.predict(
            {
                "checkpoint": checkpoint.key,
                "etag": checkpoint.etag,
                "data": base64.b64encode(data).decode(),
                "filename": filename,
                "options": options,
            }
        )
        if "error" in answer:
            error = answer["error"]
            if error.get("status") == 409:  # the checkpoint itself cannot be used
                raise Conflict(error["detail"], code=error.get("code", "CHECKPOINT_UNUSABLE"))
            raise InvalidInput(error["detail"], field="file")
        return answer

    def test_inference(
        self, actor: Principal, job_id: int, data: bytes, filename: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        job = self.get(actor, job_id)
        if job.task_type not in ("image_classification", "object_detection"):
            raise InvalidInput(
                f"Job {job.id} trains {job.task_type}; test-inference takes image models",
                field="training_job_id",
            )
        checkpoint = self.checkpoint_of(job)
        if checkpoint is None:
            raise Conflict(f"Job {job.id} has no checkpoint yet", code="NO_CHECKPOINT")
        return self._predict(checkpoint, data, filename, options)

    def transcribe(self, actor: Principal, data: bytes, filename: str) -> dict[str, Any]:
        """Seed 000: with the latest checkpoint of the user's ASR jobs."""
        page = self.jobs.list(owner_id=actor.user_id, skip=0, limit=10_000)
        for job in sorted(
            (j for j in page.items if j.framework == "torchaudio"), key=lambda j: -j.id
        ):
            checkpoint = self.checkpoint_of(job)
            if checkpoint:
                return self._predict(checkpoint, data, filename, {})
        raise NotFound(
            "No trained ASR model yet: train one with POST /train/start", code="NO_MODEL"
        )

    # --- seed 002's internal callback from an external training service -----------------
    def callback(self, job_id: int, event: str, data: dict[str, Any]) -> TrainingJob:
        """Report for a job as its own trainer would; status changes stay forward-only."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound("Training job not found", code="JOB_NOT_FOUND", field="job_id")
        rep = Reporter(
            self.push, self.jobs, job, self.records, artifacts=self.artifacts, throttle_s=0
        )
        num = lambda k, d=0.0: float(data.get(k, d) or d)  # noqa: E731
        if event == "progress":
            rep.on_step(
                int(num("epoch")),
                int(num("step")),
                int(num("total_steps")),
                num("loss"),
                num("learning_rate"),
            )
        elif event == "epoch_complete":
            metrics = {k: v for k, v in data.items() if k not in ("epoch", "loss", "learning_rate")}
            rep.on_epoch_end(int(num("epoch")), num("loss"), metrics, num("learning_rate"))
        elif event == "log":
            rep.log(str(data.get("message", "")), str(data.get("level", "INFO")))
        elif event == "checkpoint_saved":
            rep.on_checkpoint(str(data.get("path", "")), int(num("epoch")), bool(data.get("best")))
        elif event in ("training_complete", "training_failed"):
            done = "completed" if event == "training_complete" else "failed"
            fields = (
                {}
                if done == "completed"
                else {"error": str(data.get("message") or "Training failed")}
            )
            moved = self.states.advance(job.id, done, **fields)
            if moved is None:
                raise InvalidState(
                    f"A {job.status} job cannot become {done}", code="INVALID_STATUS"
                )
            if done == "failed":
                rep.on_error(fields["error"])
            else:
                rep.on_status(done, OUTCOME_MESSAGES["completed"])
            return moved
        else:
            raise InvalidInput(
                "event must be progress, epoch_complete, log, checkpoint_saved, training_complete or "
                "training_failed",
                field="event",
            )
        return job

    def validation_images(
        self, actor: Principal, result_id: int, skip: int, limit: int, is_correct: bool | None
    ) -> dict[str, Any]:
        """Seed 002's per-image results of one validation (one epoch of one job)."""
        import json

        job_id, epoch = divmod(result_id, 10_000)
        self.get(actor, job_id)
        key = keys.validation_samples(job_id, epoch)
        if not epoch or not self.artifacts.exists(key):
            raise NotFound(
                "No per-image results for this validation result",
                code="VALIDATION_RESULT_NOT_FOUND",
            )
        rows = json.loads(self.artifacts.get(key))
        rows = [r for r in rows if is_correct is None or r["is_correct"] == is_correct]
        return {
            "validation_result_id": result_id,
            "images": rows[skip : skip + limit],
            "total": len(rows),
            "skip": skip,
            "limit": limit,
        }

    def validation_results(
        self, actor: Principal, job_id: int, epoch: int | None = None
    ) -> list[dict[str, Any]]:
        """Seed 002's validation results of a job, one per epoch (its metric rows), or of
        one ``epoch``. Per-class metrics and confusion matrices are read from their objects
        newest first while they fit in :data:`RESULTS_DETAILS_BYTES`; an older one that
        does not fit comes without them (``details_omitted``, and ``details_url`` to fetch
        its object directly): asking for its ``epoch`` alone returns it in full if it fits."""
        job = self.get(actor, job_id)
        rows = self.records.metrics(job_id, 10_000)
        if epoch is not None:
            rows = [r for r in rows if r["epoch"] == epoch]
        budget, details = RESULTS_DETAILS_BYTES, {}
        for r in reversed(rows):
            size = stored_details_size(r)
            if size <= budget:
                details[r["epoch"]] = read_details(self.artifacts, job_id, r)
                budget -= size
        out = _validation_results(rows, job, details)
        for result, r in zip(out, rows, strict=True):
            if result["details_omitted"] and (key := details_key(job_id, r)):
                result["details_url"] = self.artifacts.presign_get(key)
        return out

    def metrics(self, actor: Principal, job_id: int, limit: int) -> list[dict[str, Any]]:
        self.get(actor, job_id)
        return self.records.metrics(job_id, limit)

    def logs(
        self, actor: Principal, job_id: int, limit: int, log_type: str | None
    ) -> list[dict[str, Any]]:
        self.get(actor, job_id)
        rows = self.records.logs(job_id, limit)
        return [r for r in rows if log_type is None or r.get("log_type") == log_type]


def validation_result_id(job_id: int, epoch: int) -> int:
    """A validation result's id names its job and epoch (epochs stay below 10 000)."""
    return job_id * 10_000 + epoch


def _validation_results(
    rows: list[dict[str, Any]], job: TrainingJob, details: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Seed 002's validation results, one per epoch, from the trainer's metric rows and
    the ``details`` (per-class metrics, confusion matrix) read for each epoch; an epoch
    whose details were not read (too large to answer with) is ``details_omitted``."""
    out = []
    for r in rows:
        shown = details.get(r["epoch"], {})
        metric = job.primary_metric or "accuracy"
        metrics = {
            **({"accuracy": r["accuracy"]} if r.get("accuracy") is not None else {}),
            **(r.get("extra_metrics") or {}),
        }
        out.append(
            {
                "id": validation_result_id(job.id, r["epoch"]),
                "epoch": r["epoch"],
                "task_type": job.task_type,
                "primary_metric_name": metric,
                "primary_metric_value": metrics.get(metric),
                "overall_loss": r.get("val_loss"),
                "metrics": metrics,
                "per_class_metrics": shown.get("per_class", {}),
                "confusion_matrix": shown.get("confusion_matrix", []),
                "details_omitted": r["epoch"] not in details and stored_details_size(r) > 0,
                "top_confusions": r.get("top_confusions", []),
                "checkpoint_path": keys.last_checkpoint(job.id),
                "created_at": r.get("created_at"),
            }
        )
    return out
