"""Audio files, the analysis state kept on them, and presigned uploads not yet arrived."""

from __future__ import annotations

import time
from typing import Any

from shared.adapters.dynamodb.table import OwnedRepository
from shared.models import AudioFile, UploadIntent
from shared.ports import CursorPage

# Built once: pydantic rebuilds a generic model's class when no one keeps it.
_AudioFilePage = CursorPage[AudioFile]


class DynamoAudioFiles(OwnedRepository):
    """Audio files and their analysis state machine:
    uploaded -> processing -> completed | failed, and completed | failed -> processing
    on a re-run. Each transition is one conditional update; a run may only write while
    it holds the file's current ``task_id``. The analysis results themselves live in the
    artifacts bucket; the item points at the latest completed one.
    """

    entity = "file"

    def next_id(self) -> int:
        return self.t.next_id("file")

    def next_result_id(self) -> int:
        return self.t.next_id("result")

    def create(self, f: AudioFile) -> bool:
        return self._create(f.id, f.owner_id, f.model_dump(mode="json"))

    def get(self, file_id: int) -> AudioFile | None:
        item = self._get(file_id)
        return AudioFile.model_validate(item) if item else None

    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[AudioFile]:
        total, rows, nxt = self._page(owner_id, skip, limit, cursor)
        items = [AudioFile.model_validate(r) for r in rows]
        return _AudioFilePage(total=total, items=items, next_cursor=nxt)

    def update(self, file_id: int, fields: dict[str, Any]) -> AudioFile | None:
        item = self.t.update(*self._key(file_id), fields)
        return AudioFile.model_validate(item) if item else None

    def delete(self, file_id: int) -> None:
        self._delete(file_id)

    # --- analysis state ---------------------------------------------------------
    def request(
        self, file_id: int, task_id: str, lease_s: int, *, first_only: bool
    ) -> AudioFile | None:
        """Queue an analysis; None when one is already running (or, with ``first_only``,
        when the file was ever analysed: a replayed upload event starts nothing)."""
        now = time.time()
        if first_only:
            cond = "attribute_exists(PK) AND #st = :uploaded AND attribute_not_exists(task_id)"
            values: dict[str, Any] = {":uploaded": "uploaded"}
        else:
            cond = "attribute_exists(PK) AND (#st <> :processing OR lease_until < :now)"
            values = {":processing": "processing", ":now": now}
        item = self.t.update(
            *self._key(file_id),
            {
                "status": "processing",
                "task_id": task_id,
                "progress": 0,
                "message": "Queued",
                "lease_until": now + lease_s,
            },
            condition=cond,
            names={"#st": "status"},
            values=values,
            remove=("error", "run_started"),
        )
        return AudioFile.model_validate(item) if item else None

    def start_run(self, file_id: int, task_id: str, lease_s: int) -> bool:
        """Claim the run of ``task_id``; False when another worker already has it."""
        now = time.time()
        item = self.t.update(
            *self._key(file_id),
            {"run_started": now, "lease_until": now + lease_s},
            condition="task_id = :t AND #st = :processing AND attribute_not_exists(run_started)",
            names={"#st": "status"},
            values={":t": task_id, ":processing": "processing"},
        )
        return item is not None

    def retry(
        self, file_id: int, task_id: str, new_task_id: str, lease_s: int, message: str
    ) -> AudioFile | None:
        """Queue ``new_task_id`` in place of a run of ``task_id`` that never finished
        (its worker died: ``run_started`` stays set and would skip every redelivery);
        None when that run is no longer the file's (finished, superseded or deleted)."""
        item = self.t.update(
            *self._key(file_id),
            {
                "task_id": new_task_id,
                "progress": 0,
                "message": message,
                "lease_until": time.time() + lease_s,
            },
            condition="task_id = :t AND #st = :processing",
            names={"#st": "status"},
            values={":t": task_id, ":processing": "processing"},
            remove=("run_started",),
        )
        return AudioFile.model_validate(item) if item else None

    def progress(self, file_id: int, task_id: str, pct: int, message: str) -> bool:
        item = self.t.update(
            *self._key(file_id),
            {"progress": pct, "message": message},
            condition="task_id = :t AND #st = :processing AND progress <= :p",
            names={"#st": "status"},
            values={":t": task_id, ":processing": "processing", ":p": pct},
        )
        return item is not None

    def finish(self, file_id: int, task_id: str, fields: dict[str, Any]) -> AudioFile | None:
        """Move a running task to ``completed`` or ``failed`` (``fields`` holds the status)."""
        item = self.t.update(
            *self._key(file_id),
            fields,
            condition="task_id = :t AND #st = :processing",
            names={"#st": "status"},
            values={":t": task_id, ":processing": "processing"},
            remove=("lease_until", "run_started"),
        )
        return AudioFile.model_validate(item) if item else None

    # --- presigned upload intents -------------------------------------------------
    def put_intent(self, intent: UploadIntent, ttl_s: int) -> None:
        self.t.put(
            {
                "PK": f"UPLOAD#{intent.file_id}",
                "SK": "UPLOAD",
                "type": "upload_intent",
                **intent.model_dump(mode="json"),
                "expires_at": int(time.time()) + ttl_s,
            }
        )

    def intent(self, file_id: int) -> UploadIntent | None:
        item = self.t.get(f"UPLOAD#{file_id}", "UPLOAD")
        return UploadIntent.model_validate(item) if item else None

    def drop_intent(self, file_id: int) -> None:
        self.t.delete(f"UPLOAD#{file_id}", "UPLOAD")
