"""Seed 001: stored audio files, their analysis, results, exports and visualisation data.
Taking recordings in (API uploads, presigned POST and multipart uploads, registering
what arrives) is :mod:`shared.services.audio_uploads`.

Access: owners read and change their files; researchers (and admins) read everyone's;
only owners and admins change or delete. Unknown and unreadable look the same (404).

Objects live under the file's audio prefix: a client's arrival, and the bytes the
platform keeps in a stored copy (the layout is :mod:`shared.keys`). Deleting a file
erases every version of everything under its prefix and of its analysis results.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from shared import keys
from shared.errors import Conflict, Forbidden, InvalidState, NotFound
from shared.events import ProgressEvent, event_id_for
from shared.models import AudioFile, Principal, Tag, utcnow
from shared.ports import (
    AudioFileRepository,
    CursorPage,
    Deadline,
    DeadlineRepository,
    EventBus,
    ObjectStore,
    TagRepository,
)
from shared.services.push import PushService

log = logging.getLogger(__name__)

ANALYSIS_REQUESTED = "Analysis Requested"


def safe_name(name: str | None, fallback: str) -> str:
    """A client's file name as kept: its base name, printable, without quotes, at most
    200 characters (``fallback`` if nothing is left)."""
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
        deadlines: DeadlineRepository,
        deadline_s: int,
        max_retries: int,
    ) -> None:
        self.deadlines = deadlines
        self.deadline_s = deadline_s  # an analysis's bound, and the lease of its run
        self.max_retries = max_retries
        self.files = files
        self.tags = tags
        self.uploads = uploads
        self.artifacts = artifacts
        self.bus = bus
        self.push = push

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

    def list(
        self, actor: Principal, *, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[AudioFile]:
        owner = None if actor.at_least("researcher") else actor.user_id
        return self.files.list(owner_id=owner, skip=skip, limit=limit, cursor=cursor)

    def tags_of(self, f: AudioFile) -> list[Tag]:
        return [t for t in (self.tags.get(i) for i in f.tags) if t is not None]

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
            changes["original_filename"] = safe_name(
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
        self.uploads.delete_prefix(keys.audio_prefix(f.owner_id, file_id))
        self.artifacts.delete_prefix(keys.analysis_prefix(file_id))

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
        self._watch(file_id, task_id, attempt=1)  # first: a request that dies is still settled
        queued = self.files.request(file_id, task_id, self.deadline_s, first_only=False)
        if queued is None:
            raise Conflict("An analysis of this file is already running", code="ANALYSIS_RUNNING")
        self.announce(queued, "progress", "Queued")
        self.bus.put_event(ANALYSIS_REQUESTED, {"file_id": file_id, "task_id": task_id})
        return queued

    def first_analysis(self, f: AudioFile) -> AudioFile | None:
        """Queue the first analysis of a newly arrived file; None if it has had one."""
        if f.status != "uploaded":
            return None
        task_id = uuid.uuid4().hex
        self._watch(f.id, task_id, attempt=1)
        return self.files.request(f.id, task_id, self.deadline_s, first_only=True)

    def _watch(self, file_id: int, task_id: str, *, attempt: int, at: float | None = None) -> None:
        """When the reconciler looks at this run of the analysis (shared/services/reconciler.py)."""
        at = time.time() + self.deadline_s if at is None else at
        self.deadlines.put("analysis", str(file_id), at, task_id=task_id, attempt=attempt)

    def reconcile(self, due: Deadline, now: float) -> str:
        """A run of an analysis whose deadline passed: if it is still the file's and still
        ``processing``, its worker died (or hangs): queued again as a new task (the old
        one can no longer write), ``max_retries`` times, then failed with the reason.
        Returns what was done."""
        task_id, attempt = str(due.data.get("task_id")), int(due.data.get("attempt", 1))
        f = self.files.get(int(due.ref))
        if f is None or f.status != "processing" or f.task_id != task_id:
            return "settled"
        if f.lease_until and f.lease_until > max(now, due.at + 1):  # its run started late
            self._watch(f.id, task_id, attempt=attempt, at=f.lease_until)
            return "checked"
        if attempt <= self.max_retries:
            new_task = uuid.uuid4().hex
            message = (
                f"Retrying the analysis (attempt {attempt + 1} of {self.max_retries + 1}): "
                f"the last run did not finish within {self.deadline_s} s"
            )
            self._watch(f.id, new_task, attempt=attempt + 1)
            queued = self.files.retry(f.id, task_id, new_task, self.deadline_s, message)
            if queued is None:
                return "settled"
            self.announce(queued, "status", message, task_id=new_task)
            self.bus.put_event(ANALYSIS_REQUESTED, {"file_id": f.id, "task_id": new_task})
            return "retried"
        reason = (
            f"the analysis did not finish within {self.deadline_s} s, {attempt} time(s) "
            "(its worker stopped); start it again"
        )
        done = self.files.finish(
            f.id,
            task_id,
            {"status": "failed", "error": reason, "message": f"Analysis failed: {reason}"},
        )
        if done is None:
            return "settled"
        self.announce(done, "error", f"Analysis failed: {reason}", task_id=task_id)
        return "failed"

    def run(self, file_id: int, task_id: str) -> str:
        """Run one queued analysis to its end; returns the final status (or why it didn't run)."""
        if not self.files.start_run(file_id, task_id, self.deadline_s):
            return "skipped"  # a duplicate event, or a task superseded by a newer request
        f = self.files.get(file_id)
        if f is None:
            return "skipped"

        def progress(pct: int, message: str) -> None:
            if self.files.progress(file_id, task_id, pct, message):
                self.announce(f, "progress", message, pct=pct, task_id=task_id)

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
                self.announce(done, "error", f"Analysis failed: {reason}", task_id=task_id)
            return "failed"
        prefix = keys.analysis_results(file_id, task_id)
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
            prefix + keys.ANALYSIS_RESULT, json.dumps(doc).encode(), content_type="application/json"
        )
        for name, body in viz.items():
            self.artifacts.put(
                prefix + keys.analysis_view(name),
                json.dumps(body).encode(),
                content_type="application/json",
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
        self.announce(done, "status", done.message or "completed", task_id=task_id)
        return "completed"

    def _analyse(self, f: AudioFile, progress) -> tuple[dict, dict]:
        from shared.analysis import AnalysisParams, analyze, spectrogram, waveform
        from shared.audio import decode

        params = AnalysisParams()
        progress(5, "Decoding audio")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "audio"
            self.uploads.download(f.key, str(path))
            # The upload's probe measured the recording within the configured maximum; one
            # that decodes longer now is not the file that was probed.
            samples, sr, clipped = decode(
                path,
                min(f.sample_rate, params.analysis_sample_rate),
                **({"max_seconds": f.duration + 1} if f.duration else {}),
            )
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

    def announce(self, f: AudioFile, kind: str, message: str, **extra: Any) -> None:
        """Publish a ``progress``, ``status`` or ``error`` event about ``f`` on
        ``file:<id>`` and its owner's ``user:<id>``."""
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
        self, actor: Principal, file_id: int, name: str = keys.ANALYSIS_RESULT
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
        _, key = self.result_location(actor, file_id, keys.ANALYSIS_RESULT)
        return json.loads(self.artifacts.get(key))

    def visualization(self, actor: Principal, file_id: int, name: str) -> dict[str, Any]:
        _, key = self.result_location(actor, file_id, keys.analysis_view(name))
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
