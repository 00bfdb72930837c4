"""Seed 001: taking recordings in. Everything about a stored recording (access, edits,
tags, analysis, results) is :mod:`shared.services.audio`.

Uploads reach S3 three ways — through the API (multipart form, small files), by a
presigned POST, or by a presigned multipart upload — and in every case S3's "Object
Created" event registers the file (if the API has not) and starts its first analysis
(functions/events/analysis.py). Where objects live is :mod:`shared.keys`.

What a client may write is only ever an arrival: a presigned POST stays usable for its
whole lifetime, so the bytes registration probed are copied to a stored copy
(:func:`shared.keys.audio_stored`, a key no client is granted) and the file's ``key``
points there; the arrival is deleted, and a later arrival for a
registered file is deleted unread. A multipart upload is sized: each part URL is signed
for its exact length, and the completed object must hold exactly the size declared
when it started (kept as its ``declared-size`` metadata) and no more than the limit,
or it is deleted and the file refused (``failed``, with the reason, and no stored
bytes). A refusal is announced through :class:`AudioService`.

Every path probes the bytes up to ``max_duration_s`` (the operator's
``max_audio_duration_s``) and no further: a recording that decodes longer is refused at
upload (a 400) or, presigned, recorded ``failed`` with the reason.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared import keys
from shared.errors import CrucibleError, InvalidInput, NotFound, TooLarge
from shared.models import AudioFile, Principal, UploadIntent
from shared.ports import AudioFileRepository, ObjectStore
from shared.services.audio import AudioService, safe_name

log = logging.getLogger(__name__)

MAX_BATCH = 10  # files per batch upload through the API
PRESIGN_EXPIRES_S = 3600
PART_SIZE = 8 * 1024 * 1024
DECLARED_SIZE = "declared-size"  # object metadata the platform sets on multipart uploads


class AudioUploadService:
    """Takes recordings in and registers what arrives; afterwards a file is
    :class:`AudioService`'s."""

    def __init__(
        self,
        files: AudioFileRepository,
        uploads: ObjectStore,
        audio: AudioService,
        *,
        max_bytes: int,
        max_duration_s: float | None = None,
    ) -> None:
        from shared.audio import MAX_SECONDS

        self.files = files
        self.uploads = uploads
        self.audio = audio  # the recordings' own service: announces a refused upload
        self.max_bytes = max_bytes
        # the longest recording taken in (probing stops there: a small file that decodes
        # to hours costs no more than one of this length)
        self.max_duration_s = max_duration_s or MAX_SECONDS

    # --- uploads through the API ------------------------------------------------------
    def upload_batch(
        self,
        actor: Principal,
        files: list[tuple[IO[bytes], str | None]],
        recording_start_times: list[datetime],
    ) -> tuple[list[AudioFile], list[tuple[str | None, CrucibleError]]]:
        """Up to MAX_BATCH files: each good one is stored, each bad one comes back with
        its error; refused as a whole only when none could be stored."""
        if len(files) > MAX_BATCH:
            raise InvalidInput(
                f"At most {MAX_BATCH} files per batch ({len(files)} sent)", field="files"
            )
        stored, errors = [], []
        for i, (data, filename) in enumerate(files):
            start = recording_start_times[i] if i < len(recording_start_times) else None
            try:
                stored.append(self.upload(actor, data, filename, start))
            except CrucibleError as exc:
                errors.append((filename, exc))
        if not stored:
            reasons = "; ".join(f"{name}: {exc.detail}" for name, exc in errors)
            raise InvalidInput(
                f"None of the {len(files)} files could be stored: {reasons}", field="files"
            )
        return stored, errors

    def upload(
        self,
        actor: Principal,
        data: IO[bytes],
        filename: str | None,
        recording_start_time: datetime | None,
    ) -> AudioFile:
        from shared.audio import probe

        size = data.seek(0, io.SEEK_END)
        data.seek(0)
        if size > self.max_bytes:
            raise TooLarge(
                f"The file is larger than {self.max_bytes // (1024 * 1024)} MB", field="file"
            )
        info = probe(data, self.max_duration_s)  # by what the bytes decode as
        data.seek(0)
        file_id = self.files.next_id()
        key = keys.audio_arrival(actor.user_id, file_id, info.extension)
        record = AudioFile(
            id=file_id,
            owner_id=actor.user_id,
            filename=PurePosixPath(key).name,
            original_filename=safe_name(filename, f"recording.{info.extension}"),
            key=key,
            file_size=size,
            sample_rate=info.sample_rate,
            duration=info.duration,
            channels=info.channels,
            format=info.format,
            content_type=info.content_type,
            recording_start_time=recording_start_time,
        )
        # The record exists before the object: the upload event always finds it.
        self.files.create(record)
        try:
            self.uploads.put(key, data.read(), content_type=info.content_type)
        except Exception:
            self.files.delete(file_id)
            raise
        return record

    # --- direct-to-S3 uploads ---------------------------------------------------------
    def _intent(
        self, actor: Principal, filename: str, size: int, start: datetime | None
    ) -> UploadIntent:
        if size < 1:
            raise InvalidInput("size must be at least 1 byte", field="size")
        if size > self.max_bytes:
            raise TooLarge(
                f"The file is larger than {self.max_bytes // (1024 * 1024)} MB", field="size"
            )
        ext = PurePosixPath(filename).suffix.lower().lstrip(".")
        if ext not in ("wav", "mp3", "flac", "m4a", "ogg"):
            ext = "bin"  # the bytes decide the format when they arrive
        file_id = self.files.next_id()
        intent = UploadIntent(
            file_id=file_id,
            owner_id=actor.user_id,
            key=keys.audio_arrival(actor.user_id, file_id, ext),
            original_filename=safe_name(filename, "recording"),
            recording_start_time=start,
        )
        self.files.put_intent(intent, PRESIGN_EXPIRES_S * 24)
        return intent

    def presign(
        self,
        actor: Principal,
        filename: str,
        size: int,
        content_type: str | None,
        start: datetime | None,
    ) -> dict[str, Any]:
        intent = self._intent(actor, filename, size, start)
        post = self.uploads.presign_post(
            intent.key, max_bytes=size, content_type=content_type, expires=PRESIGN_EXPIRES_S
        )
        return {
            "file_id": intent.file_id,
            "key": intent.key,
            "url": post["url"],
            "fields": post["fields"],
            "expires_in": PRESIGN_EXPIRES_S,
            "max_bytes": size,
        }

    def start_multipart(
        self,
        actor: Principal,
        filename: str,
        size: int,
        content_type: str | None,
        start: datetime | None,
    ) -> dict[str, Any]:
        intent = self._intent(actor, filename, size, start)
        parts = max(1, math.ceil(size / PART_SIZE))
        sizes = [PART_SIZE] * (parts - 1) + [size - PART_SIZE * (parts - 1)]
        mp = self.uploads.start_multipart(
            intent.key,
            part_sizes=sizes,
            content_type=content_type,
            expires=PRESIGN_EXPIRES_S,
            metadata={DECLARED_SIZE: str(size)},
        )
        return {
            "file_id": intent.file_id,
            "key": intent.key,
            "upload_id": mp["upload_id"],
            "part_size": PART_SIZE,
            "parts": mp["parts"],
            "expires_in": PRESIGN_EXPIRES_S,
        }

    def complete_multipart(
        self, actor: Principal, file_id: int, upload_id: str, parts: list[dict]
    ) -> dict:
        intent = self.files.intent(file_id)
        if intent is None or intent.owner_id != actor.user_id:
            raise NotFound("No multipart upload in progress for this file", code="UPLOAD_NOT_FOUND")
        self.uploads.complete_multipart(intent.key, upload_id, parts)  # S3's refusal: a 400
        refused = self._admit(intent)
        if refused is None:  # the arrival's own handler may have refused it first
            f = self.files.get(file_id)
            if f is not None and f.status == "failed" and not f.key:
                refused = InvalidInput(f.error or "The upload was refused", code="UPLOAD_REFUSED")
        if refused is not None:
            raise refused
        return {"file_id": file_id, "key": intent.key, "status": "uploaded"}

    def _admit(self, intent: UploadIntent) -> CrucibleError | None:
        """Check an arrived object's real size against the limit and, for a multipart
        upload, the size declared when it started. A misfit is deleted and its file
        recorded as refused (once, whoever sees it first); returns why, or None."""
        info = self.uploads.head(intent.key)
        if info is None:
            return None  # already registered (or refused) by whoever saw it first
        size, declared = info["size"], info["metadata"].get(DECLARED_SIZE)
        if size > self.max_bytes:
            refused: CrucibleError = TooLarge(
                f"The upload holds {size} bytes, more than the "
                f"{self.max_bytes // (1024 * 1024)} MB allowed; it was deleted",
                field="parts",
            )
        elif declared is not None and size != int(declared):
            refused = InvalidInput(
                f"The upload holds {size} bytes but {declared} were declared when it started; "
                "it was deleted. Upload every part (each exactly its 'size') and complete with "
                "all of them",
                field="parts",
                code="UPLOAD_SIZE_MISMATCH",
            )
        else:
            return None
        record = AudioFile(
            id=intent.file_id,
            owner_id=intent.owner_id,
            filename="",
            original_filename=intent.original_filename,
            key="",  # nothing of it is stored
            file_size=size,
            sample_rate=0,
            duration=0.0,
            format="unknown",
            content_type="application/octet-stream",
            recording_start_time=intent.recording_start_time,
            status="failed",
            error=refused.detail,
            message=f"Upload refused: {refused.detail}",
        )
        if self.files.create(record):
            self.audio.announce(record, "error", record.message or "")
        self.uploads.delete(intent.key)
        self.files.drop_intent(intent.file_id)
        return refused

    def register_object(self, key: str, size: int) -> AudioFile | None:
        """An object arrived under ``audio/``: the file it belongs to, registering it from
        the presigned upload's intent if the API has not (sized, probed, and the probed
        bytes kept where no client can write). An arrival nobody asked for, or a second
        one for a registered file, is deleted; None if it is not audio we know.
        (``size``, S3's word on the object, is checked against the object itself.)"""
        ids = keys.parse_audio_arrival(key)
        if ids is None:
            return None
        owner_id, file_id = ids
        existing = self.files.get(file_id)
        if existing is not None:
            if existing.key != key:  # a presigned URL used again: its bytes are never read
                log.info("file %s is registered already; deleting another arrival %s", file_id, key)
                self.uploads.delete(key)
            return existing
        intent = self.files.intent(file_id)
        if intent is None or intent.key != key or intent.owner_id != owner_id:
            log.warning("object %s belongs to no upload; deleting it", key)
            self.uploads.delete(key)
            return None
        if self._admit(intent) is not None:
            return self.files.get(file_id)
        from shared.audio import InvalidAudio, probe

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            try:
                self.uploads.download(key, str(path))
            except Exception:
                registered = self.files.get(file_id)  # by a duplicate event, which deleted it
                if registered is not None:
                    return registered
                raise
            got = path.stat().st_size
            fields: dict[str, Any]
            try:
                if got > self.max_bytes:  # it changed since it was checked
                    raise InvalidAudio(
                        f"The file is larger than {self.max_bytes // (1024 * 1024)} MB"
                    )
                info = probe(path, self.max_duration_s)
            except InvalidAudio as exc:  # arrived already: keep it, say why it can't be used
                ext = "bin"
                fields = {
                    "sample_rate": 0,
                    "duration": 0.0,
                    "format": "unknown",
                    "content_type": "application/octet-stream",
                    "status": "failed",
                    "error": exc.detail,
                    "message": exc.detail,
                }
            else:
                ext = info.extension
                fields = {
                    "sample_rate": info.sample_rate,
                    "duration": info.duration,
                    "channels": info.channels,
                    "format": info.format,
                    "content_type": info.content_type,
                }
            kept = keys.audio_stored(owner_id, file_id, ext)
            record = AudioFile(
                id=file_id,
                owner_id=owner_id,
                filename=PurePosixPath(kept).name,
                original_filename=intent.original_filename,
                key=kept,
                file_size=got,
                recording_start_time=intent.recording_start_time,
                **fields,
            )
            self.uploads.upload(record.key, str(path))  # exactly the bytes probed
        if not self.files.create(record):  # a concurrent duplicate event won: keep its copy
            self.uploads.delete(record.key)
        self.files.drop_intent(file_id)
        self.uploads.delete(key)  # the arrival is never read again
        return self.files.get(file_id)
