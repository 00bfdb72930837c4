"""Seeds 002/003: datasets, one zip each.

Small uploads through the API are inspected on the spot (the seed's response carries
the statistics); presigned uploads are inspected when S3's "Object Created" event
reaches functions/events/datasets.py. Either way ingestion is recorded once, and on
any failure the dataset ends ``failed`` with a reason (never left ``uploading``).

Keys (their layout is :mod:`shared.keys`): a presigned POST may write the dataset's
arrival for its whole lifetime, so that object is never what the platform uses.
Ingestion keeps the exact bytes it inspected in a stored folder, a key no client is
ever granted, beside their full statistics; the dataset's ``key`` points there, and the
arrival is deleted. A later arrival at the same presigned key
finds the dataset ingested and is deleted unread.

The dataset item holds a bounded summary (at most :data:`SUMMARY_CLASSES` classes of the
distribution): a dataset of 1,000 long class names would not fit DynamoDB's 400 KB item.

Everything settles: a dataset in flight is due by a deadline (``uploading``: the
operator's ``dataset_upload_deadline_s`` from its presign; ``processing``:
``dataset_ingest_deadline_s`` from its ingest's start), and the reconciler's
:meth:`DatasetService.sweep` fails each that overstayed with what happened. Every
settling (ready or failed, whoever settles it) is pushed to the owner on
``dataset:<id>`` and ``user:<id>``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from shared import keys
from shared.archives import mib
from shared.datasets import DatasetStats, InvalidDataset, inspect, validate
from shared.errors import InvalidInput, NotFound, TooLarge
from shared.events import ProgressEvent, event_id_for
from shared.models import Dataset, Principal
from shared.ports import CursorPage, DatasetRepository, ObjectStore

if TYPE_CHECKING:
    from shared.services.projects import ProjectService
    from shared.services.push import PushService

log = logging.getLogger(__name__)
PRESIGN_EXPIRES_S = 3600
DECLARED = ("auto", "imagefolder", "yolo", "coco", "ljspeech", "dice")
MAX_DESCRIPTION = 2000
SUMMARY_CLASSES = 100  # classes of the distribution kept on the dataset item
INTERNAL_FAILURE = (
    "The archive could not be inspected because of an internal error; upload it again"
)
SWEEP_BATCH = 100  # datasets settled per sweep at most; the rest wait for the next


def _bundle(files: list[tuple[str | None, IO[bytes]]]) -> IO[bytes]:
    """One zip as it is, or loose files (named by their relative paths) zipped together."""
    if len(files) == 1 and zipfile.is_zipfile(files[0][1]):
        files[0][1].seek(0)
        return files[0][1]
    out = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115 - returned open
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            rel = PurePosixPath((name or "").replace("\\", "/"))
            if not name or rel.is_absolute() or ".." in rel.parts:
                raise InvalidDataset(
                    f"Unusable file name '{name}': send relative paths like 'cat/1.jpg' or one zip"
                )
            data.seek(0)
            z.writestr(str(rel), data.read())
    out.seek(0)
    return out


class DatasetService:
    def __init__(
        self,
        datasets: DatasetRepository,
        uploads: ObjectStore,
        *,
        max_bytes: int,
        max_direct_bytes: int,
        projects: ProjectService,
        push: PushService | None = None,
        upload_deadline_s: int = 2 * 3600,
        ingest_deadline_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.datasets = datasets
        self.uploads = uploads
        self.max_bytes = max_bytes  # through the API
        self.max_direct_bytes = max_direct_bytes  # presigned, straight to S3
        self.projects = projects
        self.push = push  # where settling is told to the owner (None: nobody is told)
        self.upload_deadline_s = upload_deadline_s
        self.ingest_deadline_s = ingest_deadline_s
        self.clock = clock

    def _new(
        self,
        actor: Principal,
        name: str,
        description: str | None,
        fmt: str,
        visibility: str,
        project_id: int | None,
        status: str,
    ) -> Dataset:
        if fmt not in DECLARED:
            raise InvalidInput(f"format must be one of {', '.join(DECLARED)}", field="format")
        if not name.strip():
            raise InvalidInput("name must not be empty", field="name")
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidInput(
                f"description must be at most {MAX_DESCRIPTION} characters", field="description"
            )
        if project_id is not None:  # a dataset may name only a project its creator can read
            self.projects.get(actor, project_id, field="project_id")
        dataset_id = str(uuid.uuid4())
        return Dataset(
            id=dataset_id,
            owner_id=actor.user_id,
            name=name.strip()[:200],
            description=description,
            format=fmt,
            visibility=visibility,
            project_id=project_id,
            status=status,
            key=keys.dataset_arrival(actor.user_id, dataset_id),
        )

    def upload(
        self,
        actor: Principal,
        files: list[tuple[str | None, IO[bytes]]],
        *,
        name: str,
        description: str | None = None,
        fmt: str = "auto",
        visibility: str = "private",
        project_id: int | None = None,
    ) -> Dataset:
        if not files:
            raise InvalidInput("Send the dataset as one zip (or its files)", field="files")
        d = self._new(actor, name, description, fmt, visibility, project_id, "processing")
        archive = _bundle(files)
        size = archive.seek(0, io.SEEK_END)
        archive.seek(0)
        if size > self.max_bytes:
            raise TooLarge(
                f"The dataset is larger than {self.max_bytes // 2**20} MB; use POST /datasets/presign",
                field="files",
            )
        # "dice" (seed 002's example) means: detect it
        declared = None if fmt in ("auto", "dice") else fmt
        # a malformed dataset is refused before anything is stored
        stats = inspect(archive, declared)
        folder = keys.dataset_stored_folder(d.owner_id, d.id)
        self.datasets.create(
            d.model_copy(update={"key": keys.dataset_archive(folder)}),
            deadline=self.clock() + self.ingest_deadline_s,  # should this process die
        )
        try:
            archive.seek(0)
            self.uploads.put(
                keys.dataset_archive(folder), archive.read(), content_type="application/zip"
            )
            done = self.datasets.finish(d.id, self._ready(folder, stats, size))
        except Exception:
            log.exception("storing dataset %s failed", d.id)
            self._fail(d.id, INTERNAL_FAILURE, folder)
            raise
        self._announce(done)
        return done or d

    def presign(
        self,
        actor: Principal,
        *,
        name: str,
        size: int,
        description: str | None = None,
        fmt: str = "auto",
        visibility: str = "private",
        project_id: int | None = None,
    ) -> dict:
        if size > self.max_direct_bytes:
            raise TooLarge(
                f"Datasets are limited to {self.max_direct_bytes // 2**30} GiB", field="size"
            )
        d = self._new(actor, name, description, fmt, visibility, project_id, "uploading")
        self.datasets.create(d, deadline=self.clock() + self.upload_deadline_s)
        post = self.uploads.presign_post(
            d.key, max_bytes=size, content_type=None, expires=PRESIGN_EXPIRES_S
        )
        return {
            "dataset_id": d.id,
            "key": d.key,
            "url": post["url"],
            "fields": post["fields"],
            "expires_in": PRESIGN_EXPIRES_S,
            "max_bytes": size,
        }

    def ingest(self, key: str, size: int) -> Dataset | None:
        """Inspect an archive that arrived by S3, once: the bytes inspected are the bytes
        kept. An arrival for a dataset already ready or failed changes nothing (and is
        deleted); one nobody asked for is deleted."""
        dataset_id = keys.parse_dataset_arrival(key)
        if dataset_id is None:
            return None  # not an arrival (the platform's own copies live deeper)
        d = self.datasets.get(dataset_id)
        if d is None or keys.dataset_arrival(d.owner_id, d.id) != key:
            log.warning("object %s belongs to no dataset; deleting it", key)
            self.uploads.delete(key)
            return None
        if d.status not in ("uploading", "processing"):
            log.info("dataset %s is %s already; dropping another arrival", d.id, d.status)
            self.uploads.delete(key)
            return d
        if size > self.max_direct_bytes:  # S3 held it to the presigned size; never more
            done = self._fail(
                d.id,
                f"The archive is {mib(size)}; datasets are limited to {mib(self.max_direct_bytes)}",
                None,
            )
            self.uploads.delete(key)
            return done or self.datasets.get(d.id)
        declared = None if d.format in ("auto", "dice") else d.format
        folder = keys.dataset_stored_folder(d.owner_id, d.id)
        # processing, due by the ingest deadline (a retried ingest keeps the first one)
        self.datasets.start(d.id, self.clock() + self.ingest_deadline_s)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "archive.zip"
                self.uploads.download(key, str(path))
                try:
                    stats = inspect(str(path), declared)
                except InvalidDataset as exc:
                    fields: dict[str, Any] = {"status": "failed", "error": exc.detail}
                else:  # exactly these bytes: a later arrival cannot replace them
                    self.uploads.upload(keys.dataset_archive(folder), str(path))
                    fields = self._ready(folder, stats, path.stat().st_size)
            done = self.datasets.finish(d.id, {"archive_bytes": size, **fields})
            self._announce(done)
        except Exception:
            log.exception("ingesting %s failed", key)
            done = self._fail(d.id, INTERNAL_FAILURE, None)
        if done is None or done.key != keys.dataset_archive(folder):
            self.uploads.delete_prefix(folder)  # failed, or another arrival's ingestion won
        self.uploads.delete(key)  # the arrival is never read again
        return done or self.datasets.get(d.id)

    def _ready(self, folder: str, stats: DatasetStats, size: int) -> dict[str, Any]:
        """The fields of a ready dataset, its full statistics stored beside its archive."""
        self.uploads.put(
            keys.dataset_statistics(folder),
            json.dumps(stats.as_dict(), ensure_ascii=False).encode(),
            content_type="application/json",
        )
        summary = dict(itertools.islice(stats.class_distribution.items(), SUMMARY_CLASSES))
        return {
            "status": "ready",
            "key": keys.dataset_archive(folder),
            "archive_bytes": size,
            "format": stats.format,
            "file_count": stats.file_count,
            "total_size_bytes": stats.total_size_bytes,
            "num_classes": stats.num_classes,
            "class_distribution": summary,
            "splits": stats.splits,
            "extra": stats.extra,
        }

    def _fail(
        self,
        dataset_id: str,
        reason: str,
        folder: str | None,
        only_from: tuple[str, ...] = ("uploading", "processing"),
    ) -> Dataset | None:
        """Record a failure and tell the owner (best effort: this runs when something
        already went wrong); None if the dataset was not in a status of ``only_from``."""
        try:
            if folder:
                self.uploads.delete_prefix(folder)
            done = self.datasets.finish(
                dataset_id, {"status": "failed", "error": reason}, only_from=only_from
            )
        except Exception:
            log.exception("could not record the failure of dataset %s", dataset_id)
            return None
        self._announce(done)
        return done

    def _announce(self, d: Dataset | None) -> None:
        """Tell the owner a dataset settled (ready or failed), on ``dataset:<id>`` and
        ``user:<id>``. Once per settling (the event id is the settling's); a push that
        cannot be stored is logged, never turned into the dataset's failure."""
        if d is None or self.push is None or d.status not in ("ready", "failed"):
            return
        if d.status == "ready":
            kind, message = "status", f"Dataset ready: {d.file_count} files ({d.format})"
        else:
            kind, message = "error", f"Dataset failed: {d.error}"
        try:
            self.push.publish(
                ProgressEvent(
                    topic=f"dataset:{d.id}",
                    kind=kind,
                    event_id=event_id_for("dataset", d.id, d.status),
                    data={
                        "dataset_id": d.id,
                        "status": d.status,
                        "message": message,
                        **({"error": d.error} if d.error else {}),
                    },
                    also=[f"user:{d.owner_id}"],
                )
            )
        except Exception:
            log.exception("could not push that dataset %s is %s", d.id, d.status)

    def sweep(self, limit: int = SWEEP_BATCH) -> list[str]:
        """Fail every dataset that overstayed ``uploading`` or ``processing`` (at most
        ``limit`` a call, oldest deadline first), saying what happened, and clear what it
        left in storage; returns their ids. Reads only the datasets in flight that are
        due (a query of the repository's active partition, by deadline), and settles
        each with a conditional write from the status it was read in: idempotent, and an
        ingest that starts or ends meanwhile wins."""
        failed = []
        for d in self.datasets.overdue(self.clock(), limit=limit):
            try:
                if d.status == "uploading":
                    arrived = self.uploads.head(d.key) is not None  # its S3 event was lost
                    reason = (
                        f"The archive arrived but was not ingested within "
                        f"{self.upload_deadline_s} s of the presign; upload it again"
                        if arrived
                        else f"The upload was never completed within {self.upload_deadline_s} s "
                        "of the presign; upload it again"
                    )
                else:
                    reason = (
                        f"Ingest did not finish within {self.ingest_deadline_s} s (it was "
                        "stopped or crashed); upload the dataset again"
                    )
                done = self._fail(d.id, reason, None, only_from=(d.status,))
                if done is None:
                    continue  # settled meanwhile, or moved on to processing
                # all it left (a copy a dead ingest stored, an arrival never to be read): a
                # failed dataset keeps no bytes
                arrival = keys.dataset_arrival(d.owner_id, d.id)
                self.uploads.delete_prefix(str(PurePosixPath(arrival).parent) + "/")
                failed.append(d.id)
                log.warning("dataset %s failed by the sweep: %s", d.id, reason)
            except Exception:  # the next sweep tries it again; the others go on
                log.exception("sweeping dataset %s failed", d.id)
        return failed

    def statistics(self, d: Dataset) -> DatasetStats:
        """The dataset's full statistics (the item holds a summary when there are many classes)."""
        stats = DatasetStats(
            d.format,
            d.file_count,
            d.total_size_bytes,
            d.num_classes,
            d.class_distribution,
            d.splits,
            d.extra,
        )
        if d.status == "ready" and len(d.class_distribution) < d.num_classes:
            try:
                full = json.loads(self.uploads.get(keys.dataset_statistics_of(d.key)))
                stats.class_distribution = full["class_distribution"]
            except Exception:  # stored before statistics were kept apart: the item is whole
                log.warning("no stored statistics for dataset %s", d.id, exc_info=True)
        return stats

    def get(self, actor: Principal, dataset_id: str) -> Dataset:
        d = self.datasets.get(dataset_id)
        if d is None or not (d.visibility == "public" or actor.can_read(d.owner_id)):
            raise NotFound("Dataset not found", code="DATASET_NOT_FOUND")
        return d

    def detail(self, actor: Principal, dataset_id: str) -> Dataset:
        """A dataset with its whole class distribution."""
        d = self.get(actor, dataset_id)
        stats = self.statistics(d)
        return d.model_copy(update={"class_distribution": stats.class_distribution})

    def list(self, actor: Principal, *, fmt: str | None = None) -> list[Dataset]:
        """The caller's own datasets (of format ``fmt``), newest first: what the chat and
        seed 000 offer to train on."""
        return [
            d for d in self.datasets.list(owner_id=actor.user_id) if fmt is None or d.format == fmt
        ]

    def page(
        self,
        actor: Principal,
        *,
        skip: int,
        limit: int,
        cursor: str | None = None,
        project_id: int | None = None,
        fmt: str | None = None,
    ) -> CursorPage[Dataset]:
        """A page of the caller's datasets (an admin's: everyone's), newest first."""
        return self.datasets.page(
            owner_id=None if actor.at_least("admin") else actor.user_id,
            skip=skip,
            limit=limit,
            cursor=cursor,
            project_id=project_id,
            fmt=fmt,
        )

    def validate(
        self,
        actor: Principal,
        dataset_id: str,
        expected_format: str | None,
        expected_classes: int | None,
    ) -> dict[str, Any]:
        d = self.get(actor, dataset_id)
        if d.status != "ready":
            return {
                "dataset_id": d.id,
                "valid": False,
                "recommendations": [],
                "issues": [
                    {
                        "severity": "error",
                        "message": d.error or f"The dataset is {d.status}",
                        "details": {},
                    }
                ],
            }
        stats = self.statistics(d)
        return {"dataset_id": d.id, **validate(stats, expected_format, expected_classes)}
