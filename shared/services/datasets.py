"""Seeds 002/003: datasets. One zip per dataset at ``datasets/<user id>/<id>/archive.zip``.

Small uploads through the API are inspected on the spot (the seed's response carries
the statistics); presigned uploads are inspected when S3's "Object Created" event
reaches functions/events/datasets.py. Either way ingestion is recorded once.
"""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared.datasets import DatasetStats, InvalidDataset, inspect, validate
from shared.errors import InvalidInput, NotFound, TooLarge
from shared.models import Dataset, Principal
from shared.ports import DatasetRepository, ObjectStore

log = logging.getLogger(__name__)
PRESIGN_EXPIRES_S = 3600
DECLARED = ("auto", "imagefolder", "yolo", "coco", "ljspeech", "dice")
# What ingestion records on the dataset from the archive's statistics (besides its format).
_STATS_FIELDS = (
    "file_count",
    "total_size_bytes",
    "num_classes",
    "class_distribution",
    "splits",
    "extra",
)


def dataset_key(owner_id: int, dataset_id: str) -> str:
    return f"datasets/{owner_id}/{dataset_id}/archive.zip"


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
    ) -> None:
        self.datasets = datasets
        self.uploads = uploads
        self.max_bytes = max_bytes  # through the API
        self.max_direct_bytes = max_direct_bytes  # presigned, straight to S3

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
            key=dataset_key(actor.user_id, dataset_id),
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
        d = self._new(actor, name, description, fmt, visibility, project_id, "processing")
        self.datasets.create(d)
        archive.seek(0)
        self.uploads.put(d.key, archive.read(), content_type="application/zip")
        return (
            self.datasets.finish(
                d.id, {"status": "ready", "archive_bytes": size, **self._fields(stats)}
            )
            or d
        )

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
        self.datasets.create(d)
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
        """Inspect an archive that arrived by S3 (once: a ready or failed dataset is left alone)."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "datasets" or parts[3] != "archive.zip":
            return None
        d = self.datasets.get(parts[2])
        if d is None or d.key != key or d.status not in ("uploading", "processing"):
            return d
        declared = None if d.format in ("auto", "dice") else d.format
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "archive.zip"
            self.uploads.download(key, str(path))
            try:
                fields = {"status": "ready", **self._fields(inspect(str(path), declared))}
            except InvalidDataset as exc:
                fields = {"status": "failed", "error": exc.detail}
        return self.datasets.finish(d.id, {**fields, "archive_bytes": size})

    @staticmethod
    def _fields(stats: DatasetStats) -> dict[str, Any]:
        s = stats.as_dict()
        return {k: s[k] for k in _STATS_FIELDS} | {"format": stats.format}

    def get(self, actor: Principal, dataset_id: str) -> Dataset:
        d = self.datasets.get(dataset_id)
        if d is None or not (d.visibility == "public" or actor.can_read(d.owner_id)):
            raise NotFound("Dataset not found", code="DATASET_NOT_FOUND")
        return d

    def list(
        self, actor: Principal, *, project_id: int | None = None, fmt: str | None = None
    ) -> list[Dataset]:
        items = self.datasets.list(owner_id=None if actor.at_least("admin") else actor.user_id)
        return [
            d
            for d in items
            if (project_id is None or d.project_id == project_id)
            and (fmt is None or d.format == fmt)
        ]

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
        stats = DatasetStats(
            d.format,
            d.file_count,
            d.total_size_bytes,
            d.num_classes,
            d.class_distribution,
            d.splits,
            d.extra,
        )
        return {"dataset_id": d.id, **validate(stats, expected_format, expected_classes)}
