"""Seed 001: audio files, their analysis, results, exports and visualisation data.

Access: owners read and change their files; researchers (and admins) read everyone's;
only owners and admins change or delete. Unknown and unreadable look the same (404).

Uploads reach S3 three ways — through the API (multipart form, small files), by a
presigned POST, or by a presigned multipart upload — and in every case S3's "Object
Created" event registers the file (if the API has not) and starts its first analysis
(functions/events/analysis.py). Objects live under ``audio/<user id>/<file id>/``.

What a client may write is only ever an arrival: a presigned POST stays usable for its
whole lifetime, so the bytes registration probed are copied to
``audio/<user>/<file>/stored/<token>.<ext>`` (a key no client is granted) and the
file's ``key`` points there; the arrival is deleted, and a later arrival for a
registered file is deleted unread. A multipart upload is sized: each part URL is signed
for its exact length, and the completed object must hold exactly the size declared
when it started (kept as its ``declared-size`` metadata) and no more than the limit,
or it is deleted and the file refused (``failed``, with the reason, and no stored
bytes). Deleting a file erases every version of everything under its prefix and of its
analysis results.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import tempfile
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared.errors import (
    Conflict,
    CrucibleError,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
    TooLarge,
)
from shared.events import ProgressEvent, event_id_for
from shared.models import AudioFile, Page, Principal, Tag, UploadIntent, utcnow
from shared.ports import AudioFileRepository, EventBus, ObjectStore, TagRepository
from shared.services.push import PushService

log = logging.getLogger(__name__)

ANALYSIS_REQUESTED = "Analysis Requested"
MAX_BATCH = 10
LEASE_S = 20 * 60  # longer than the analysis Lambda's 15-minute limit
PRESIGN_EXPIRES_S = 3600
PART_SIZE = 8 * 1024 * 1024
DECLARED_SIZE = "declared-size"  # object metadata the platform sets on multipart uploads


def audio_key(owner_id: int, file_id: int, extension: str) -> str:
    return f"audio/{owner_id}/{file_id}/{uuid.uuid4().hex}.{extension}"


def stored_key(owner_id: int, file_id: int, extension: str) -> str:
    """A new key for bytes the platform keeps: no client is granted it."""
    return f"audio/{owner_id}/{file_id}/stored/{uuid.uuid4().hex}.{extension}"


def file_prefix(owner_id: int, file_id: int) -> str:
    return f"audio/{owner_id}/{file_id}/"


def parse_audio_key(key: str) -> tuple[int, int] | None:
    """(owner id, file id) of an arrival, ``audio/<owner>/<file>/<name>``, else None (the
    platform's own copies, one level deeper, are not arrivals)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "audio" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def _safe_name(name: str | None, fallback: str) -> str:
    base = PurePosixPath((name or "").replace("\\", "/")).name.strip()
    return "".join(ch for ch in base if ch.isprintable() and ch not in '"')[:200] or fallback


class AudioService:
    def __init__(
        self,
        files: AudioFileRepository,
        tags: TagRepository,
        uploads: ObjectStore,
        artifacts: ObjectStore,
        bus: EventBus,
        push: PushService,
        *,
        max_bytes: int,
    ) -> None:
        self.files = files
        self.tags = tags
        self.uploads = uploads
        self.artifacts = artifacts
        self.bus = bus
        self.push = push
        self.max_bytes = max_bytes

    # --- access ---------------------------------------------------------------------
    def get(self, actor: Principal, file_id: int) -> AudioFile:
        f = self.files.get(file_id)
        if f is None or not actor.can_read(f.owner_id, privileged="researcher"):
            raise NotFound("Audio file not found", code="FILE_NOT_FOUND")
        return f

    def _writable(self, actor: Principal, file_id: int) -> AudioFile:
        f = self.get(actor, file_id)
        if not actor.can_read(f.owner_id):  # researchers read, only owners/admins change
            raise Forbidden("Only the owner can change this file")
        return f

    def list(self, actor: Principal, *, skip: int, limit: int) -> Page[AudioFile]:
        owner = None if actor.at_least("researcher") else actor.user_id
        return self.files.list(owner_id=owner, skip=skip, limit=limit)

    def tags_of(self, f: AudioFile) -> list[Tag]:
        return [t for t in (self.tags.get(i) for i in f.tags) if t is not None]

    # --- uploads through the API ------------------------------------------------------
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
        info = probe(data)  # by what the bytes decode as, never the extension
        data.seek(0)
        file_id = self.files.next_id()
        key = audio_key(actor.user_id, file_id, info.extension)
        record = AudioFile(
            id=file_id,
            owner_id=actor.user_id,
            filename=PurePosixPath(key).name,
            original_filename=_safe_name(filename, f"recording.{info.extension}"),
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
            key=audio_key(actor.user_id, file_id, ext),
            original_filename=_safe_name(filename, "recording"),
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
            self._announce(record, "error", record.message or "")
        self.uploads.delete(intent.key)
        self.files.drop_intent(intent.file_id)
        return refused

    def register_object(self, key: str, size: int) -> AudioFile | None:
        """An object arrived under ``audio/``: the file it belongs to, registering it from
        the presigned upload's intent if the API has not (sized, probed, and the probed
        bytes kept where no client can write). An arrival nobody asked for, or a second
        one for a registered file, is deleted; None if it is not audio we know.
        (``size``, S3's word on the object, is checked against the object itself.)"""
        ids = parse_audio_key(key)
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
                info = probe(path)
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
            kept = stored_key(owner_id, file_id, ext)
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

    # --- edits --------------------------------------------------------------------------
    def patch(self, actor: Principal, file_id: int, changes: dict[str, Any]) -> AudioFile:
        f = self._writable(actor, file_id)
        status = changes.pop("status", None)
        if status is not None and status != f.status:
            raise InvalidState(
                "status follows the analysis and cannot be set; start one with POST /analysis/{id}/start",
                field="status",
            )
        if "original_filename" in changes:
            changes["original_filename"] = _safe_name(
                changes["original_filename"], f.original_filename
            )
        if not changes:
            return f
        updated = self.files.update(file_id, changes)
        if updated is None:
            raise NotFound("Audio file not found", code="FILE_NOT_FOUND")
        return updated

    def delete(self, actor: Principal, file_id: int) -> None:
        f = self._writable(actor, file_id)
        self.files.delete(file_id)  # first: a running analysis can no longer write to it
        # every version of the recording (arrival, stored copy) and of its results
        self.uploads.delete_prefix(file_prefix(f.owner_id, file_id))
        self.artifacts.delete_prefix(f"analysis/{file_id}/")

    def media(self, actor: Principal, file_id: int) -> AudioFile:
        """A file whose recording can be fetched (a refused upload has none)."""
        f = self.get(actor, file_id)
        if not f.key:
            raise NotFound(
                f"This upload was refused and nothing of it is stored: {f.error}",
                code="FILE_NOT_STORED",
            )
        return f

    def set_tags(self, actor: Principal, file_id: int, tag_ids: list[int]) -> list[Tag]:
        f = self._writable(actor, file_id)
        tags = []
        for tid in dict.fromkeys(tag_ids):
            tag = self.tags.get(tid)
            if tag is None or not actor.can_read(tag.owner_id):
                raise NotFound(f"Tag {tid} not found", field="tag_ids", code="TAG_NOT_FOUND")
            tags.append(tag)
        self.files.update(f.id, {"tags": [t.id for t in tags]})
        return tags

    def add_tag(self, actor: Principal, file_id: int, tag_id: int) -> list[Tag]:
        f = self._writable(actor, file_id)
        return self.set_tags(actor, file_id, [*f.tags, tag_id])

    def remove_tag(self, actor: Principal, file_id: int, tag_id: int) -> list[Tag]:
        f = self._writable(actor, file_id)
        if tag_id not in f.tags:
            raise NotFound("The file does not carry this tag", code="TAG_NOT_FOUND")
        return self.set_tags(actor, file_id, [t for t in f.tags if t != tag_id])

    # --- analysis ---------------------------------------------------------------------
    def request_analysis(self, actor: Principal, file_id: int) -> AudioFile:
        f = self._writable(actor, file_id)
        if not f.sample_rate:
            raise InvalidState(f"This file cannot be analysed: {f.error}", code="INVALID_AUDIO")
        task_id = uuid.uuid4().hex
        queued = self.files.request(file_id, task_id, LEASE_S, first_only=False)
        if queued is None:
            raise Conflict("An analysis of this file is already running", code="ANALYSIS_RUNNING")
        self._announce(queued, "progress", "Queued")
        self.bus.put_event(ANALYSIS_REQUESTED, {"file_id": file_id, "task_id": task_id})
        return queued

    def first_analysis(self, f: AudioFile) -> AudioFile | None:
        """Queue the first analysis of a newly arrived file; None if it has had one."""
        if f.status != "uploaded":
            return None
        return self.files.request(f.id, uuid.uuid4().hex, LEASE_S, first_only=True)

    def run(self, file_id: int, task_id: str) -> str:
        """Run one queued analysis to its end; returns the final status (or why it didn't run)."""
        if not self.files.start_run(file_id, task_id, LEASE_S):
            return "skipped"  # a duplicate event, or a task superseded by a newer request
        f = self.files.get(file_id)
        if f is None:
            return "skipped"

        def progress(pct: int, message: str) -> None:
            if self.files.progress(file_id, task_id, pct, message):
                self._announce(f, "progress", message, pct=pct, task_id=task_id)

        try:
            result, viz = self._analyse(f, progress)
        except Exception as exc:  # the reason is the user's to read; nothing earlier is lost
            from shared.audio import InvalidAudio

            if isinstance(exc, InvalidAudio):
                reason = exc.detail
            elif isinstance(exc, ValueError):  # the analysis's own word on the recording
                reason = str(exc)
            else:  # the detail is for the log, not the user
                log.exception("analysis of file %s (task %s) failed", file_id, task_id)
                reason = f"an internal error stopped the analysis (task {task_id}); try again"
            done = self.files.finish(
                file_id,
                task_id,
                {"status": "failed", "error": reason, "message": f"Analysis failed: {reason}"},
            )
            if done:
                self._announce(done, "error", f"Analysis failed: {reason}", task_id=task_id)
            return "failed"
        prefix = f"analysis/{file_id}/{task_id}/"
        result_id = self.files.next_result_id()
        analyzed_at = utcnow()
        doc = {
            "id": result_id,
            "audio_file_id": file_id,
            "task_id": task_id,
            "result_data": result,
            "analyzed_at": analyzed_at.isoformat(),
        }
        self.artifacts.put(
            prefix + "result.json", json.dumps(doc).encode(), content_type="application/json"
        )
        for name, body in viz.items():
            self.artifacts.put(
                prefix + f"{name}.json", json.dumps(body).encode(), content_type="application/json"
            )
        n = len(result["cry_episodes"])
        done = self.files.finish(
            file_id,
            task_id,
            {
                "status": "completed",
                "progress": 100,
                "message": f"Analysis completed: {n} cry episode(s)",
                "result_id": result_id,
                "result_prefix": prefix,
                "analyzed_at": analyzed_at,
            },
        )
        if done is None:  # deleted or superseded meanwhile: its artefacts go too
            self.artifacts.delete_prefix(prefix)
            return "superseded"
        old = f.result_prefix
        if old and old != prefix:
            self.artifacts.delete_prefix(old)
        self._announce(done, "status", done.message or "completed", task_id=task_id)
        return "completed"

    def _analyse(self, f: AudioFile, progress) -> tuple[dict, dict]:
        from shared.analysis import AnalysisParams, analyze, spectrogram, waveform
        from shared.audio import decode

        params = AnalysisParams()
        progress(5, "Decoding audio")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "audio"
            self.uploads.download(f.key, str(path))
            samples, sr, clipped = decode(path, min(f.sample_rate, params.analysis_sample_rate))
        progress(15, "Measuring pitch and intensity")
        result = analyze(samples, sr, params, progress)
        result["quality"] = {
            "clipped_fraction": round(clipped, 6),
            "analysed_sample_rate": sr,
            "original_sample_rate": f.sample_rate,
            "channels": f.channels,
        }
        progress(92, "Preparing waveform and spectrogram")
        return result, {"waveform": waveform(samples, sr), "spectrogram": spectrogram(samples, sr)}

    def _announce(self, f: AudioFile, kind: str, message: str, **extra: Any) -> None:
        data = {
            "file_id": f.id,
            "status": f.status if kind != "error" else "failed",
            "message": message,
            "progress": extra.pop("pct", f.progress),
            **extra,
        }
        key = (f.id, data.get("task_id"), kind, data["progress"], message)
        self.push.publish(
            ProgressEvent(
                topic=f"file:{f.id}",
                kind=kind,
                event_id=event_id_for(*key),
                data=data,
                also=[f"user:{f.owner_id}"],
            )
        )

    # --- results -------------------------------------------------------------------------
    def result_location(
        self, actor: Principal, file_id: int, name: str = "result.json"
    ) -> tuple[AudioFile, str]:
        f = self.get(actor, file_id)
        if not f.result_prefix:
            raise NotFound(
                "No analysis result yet"
                + (f" (status: {f.status})" if f.status != "completed" else ""),
                code="RESULT_NOT_FOUND",
            )
        return f, f.result_prefix + name

    def result(self, actor: Principal, file_id: int) -> dict[str, Any]:
        _, key = self.result_location(actor, file_id, "result.json")
        return json.loads(self.artifacts.get(key))

    def visualization(self, actor: Principal, file_id: int, name: str) -> dict[str, Any]:
        _, key = self.result_location(actor, file_id, f"{name}.json")
        return json.loads(self.artifacts.get(key))

    def waveform(self, actor: Principal, file_id: int, points: int) -> dict[str, Any]:
        """The stored envelope, its buckets merged down to at most ``points``."""
        data = self.visualization(actor, file_id, "waveform")
        n = len(data["times"])
        if points >= n:
            return data
        step = -(-n // points)
        spans = [slice(i, i + step) for i in range(0, n, step)]
        lo = [min(data["min"][s]) for s in spans]
        hi = [max(data["max"][s]) for s in spans]
        times = [sum(data["times"][s]) / len(data["times"][s]) for s in spans]
        extreme = [b if abs(b) >= abs(a) else a for a, b in zip(lo, hi, strict=True)]
        return {
            **data,
            "times": times,
            "min": lo,
            "max": hi,
            "amplitudes": extreme,
            "points": len(lo),
        }

    def export_csv(self, actor: Principal, file_id: int) -> str:
        """One row per analysed frame, with its episode; the parameters in a header comment."""
        doc = self.result(actor, file_id)
        data = doc["result_data"]
        out = io.StringIO()
        out.write(f"# audio_file_id={file_id} analyzed_at={doc['analyzed_at']}\n")
        out.write("# parameters=" + json.dumps(data.get("parameters", {}), sort_keys=True) + "\n")
        features = ("time", "f0", "f1", "f2", "f3", "hnr", "jitter", "shimmer", "intensity")
        w = csv.writer(out)
        w.writerow(["episode", "episode_start", "episode_end", *features])
        for k, ep in enumerate(data["cry_episodes"]):
            for row in data["acoustic_features"].get(f"episode_{k}", []):
                w.writerow(
                    [k, ep["start_time"], ep["end_time"]]
                    + ["" if row[c] is None else row[c] for c in features]
                )
        return out.getvalue()
