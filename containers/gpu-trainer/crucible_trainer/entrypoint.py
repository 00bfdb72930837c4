"""``main(--job-id)``: load the job, fetch its dataset, run its framework's task."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from shared.adapters.dynamodb import DynamoJobRecords
from shared.datasets import extract
from shared.services.reporting import Reporter
from shared.settings import load_settings
from shared.wiring import build

log = logging.getLogger("crucible.trainer")


class Checkpoints:
    """Last and best checkpoints, written locally and uploaded to ``jobs/<id>/checkpoints/``
    by a background thread, so training never waits on S3 (``flush`` waits, at the end)."""

    def __init__(self, c: Any, job_id: int, work: Path, reporter: Reporter) -> None:
        self.c, self.work, self.reporter = c, work, reporter
        self.prefix = f"jobs/{job_id}/checkpoints/"
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        threading.Thread(target=self._upload, daemon=True).start()

    def save(self, state: dict, epoch: int, *, best: dict | None = None) -> str:
        """Write ``state`` as last.pt (and ``best``, the best weights so far, as best.pt)."""
        import torch

        return self._enqueue(epoch, lambda p: torch.save(state, p),
                             None if best is None else lambda p: torch.save(best, p))  # fmt: skip

    def save_file(self, path: Any, epoch: int, *, best: Any = None) -> str:
        """The same for checkpoints a framework wrote itself (copied now: it may rewrite them)."""
        import shutil

        return self._enqueue(epoch, lambda p: shutil.copyfile(path, p),
                             None if best is None else lambda p: shutil.copyfile(best, p))  # fmt: skip

    def _enqueue(self, epoch: int, write: Any, write_best: Any) -> str:
        local = self.work / f"epoch-{epoch}.pt"
        write(local)
        best_local = None
        if write_best is not None:
            best_local = self.work / f"best-{epoch}.pt"
            write_best(best_local)
        self._queue.put((local, epoch, best_local))
        return self.prefix + "last.pt"

    def _upload(self) -> None:
        while True:
            local, epoch, best = self._queue.get()
            try:
                # A newer "last" already waiting makes this one moot (a best one never is).
                if self._queue.qsize() == 0 or best:
                    self.c.artifacts.upload(self.prefix + "last.pt", str(local))
                    if best:
                        self.c.artifacts.upload(self.prefix + "best.pt", str(best))
                    self.reporter.on_checkpoint(self.prefix + "last.pt", epoch, best is not None)
            except Exception as exc:
                self._errors.append(exc)  # raised by flush(): a run whose checkpoints fail fails
            finally:
                local.unlink(missing_ok=True)
                if best:
                    best.unlink(missing_ok=True)
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()
        if self._errors:
            raise RuntimeError(f"checkpoint upload failed: {self._errors[0]}")

    def fetch(self, key: str, path: Path) -> Path:
        self.c.artifacts.download(key, str(path))
        return path

    def load(self, key: str) -> dict:
        import torch

        local = self.fetch(key, self.work / "resume.pt")
        return torch.load(local, map_location="cpu", weights_only=False)


def _mlflow(settings: Any, work: Path, job: Any):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = settings.mlflow_tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    name = f"crucible-{settings.stage}"
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        # Artifacts beside the local database, not in the working directory's ./mlruns
        # (a tracking server, such as SageMaker's, keeps its own artifact store).
        store = Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # another trainer made it
            mlflow.create_experiment(name, artifact_location=store.as_uri())
    mlflow.set_experiment(name)
    run = mlflow.start_run(run_name=f"job-{job.id}")
    mlflow.log_params({"framework": job.framework, "model_name": job.model_name, "epochs": job.total_epochs,
                       "batch_size": job.batch_size, "learning_rate": job.learning_rate, "task_type": job.task_type})  # fmt: skip
    return mlflow, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crucible_trainer")
    ap.add_argument("--job-id", required=True, type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(
        signal.SIGTERM, lambda *_: stop.set()
    )  # stop or spot reclaim: checkpoint, then exit 0

    settings = load_settings()
    c = build(settings)
    job = c.jobs.jobs.get(args.job_id)
    if job is None:
        log.error("job %s does not exist", args.job_id)
        return 2
    records = DynamoJobRecords(c.table)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mlflow, run = _mlflow(settings, work, job)
        c.jobs.jobs.update(job.id, {"mlflow_run_id": run.info.run_id})
        reporter = Reporter(c.push, c.jobs.jobs, job, records, mlflow, artifacts=c.artifacts)
        try:
            dataset = c.datasets.datasets.get(job.dataset_id) if job.dataset_id else None
            if dataset is None or dataset.status != "ready":
                raise ValueError(f"dataset {job.dataset_id} is not ready to train on")
            archive = work / "dataset.zip"
            c.uploads.download(dataset.key, str(archive))
            root = Path(extract(str(archive), str(work / "data")))
            reporter.log(
                f"Starting {job.framework} {job.model_name} on {dataset.name} ({dataset.file_count} files)"
            )
            from crucible_trainer.tasks import TASKS

            task = TASKS.get(job.framework)
            if task is None:
                raise ValueError(f"unknown framework '{job.framework}'")
            checkpoints = Checkpoints(c, job.id, work, reporter)
            outcome = task(job, root, reporter, checkpoints, stop)
            checkpoints.flush()
            reporter.log(f"Training {outcome}")
        except Exception as exc:
            log.exception("training failed")
            reporter.on_error(f"{type(exc).__name__}: {exc}")
            mlflow.end_run(status="FAILED")
            return 1
        bucket = settings.names.artifacts_bucket
        mlflow.log_dict({n: f"s3://{bucket}/{checkpoints.prefix}{n}.pt" for n in ("last", "best")},
                        "checkpoints.json")  # fmt: skip
        if reporter.last_validation:
            mlflow.log_dict(reporter.last_validation, "validation.json")
        mlflow.end_run(status="KILLED" if outcome == "stopped" else "FINISHED")
    return 0
