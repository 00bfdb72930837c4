"""Seed 003's inference: predictions from a workflow's model, which is its training job's
best (else last) checkpoint, on images sent three ways:

* ``image_base64``: the bytes inline, plain base64 or a ``data:image/...;base64,`` URL;
* ``image_url`` ``https://...``: fetched by the :class:`~shared.ports.ImageFetcher`
  (public addresses only, checked after DNS; bounded in time and size);
* ``image_url`` ``s3://<uploads bucket>/<key>``: an object of the caller's own uploads
  (``<kind>/<caller's id>/...``), read through the object store, never fetched.

Every image must be an image (PNG, JPEG, GIF, BMP, WebP or TIFF by its signature) of at
most ``max_image_bytes``. One image is answered at once (:meth:`predict`). A batch
(:meth:`submit_batch`) is checked whole first (a refused batch stores nothing), stored
under the job's ``inference/`` prefix of the artifacts bucket (images sent inline or by
s3:// as the bytes checked; https URLs as URLs, fetched when the batch runs), and
announced as "Batch Inference Requested"; functions/events/batch_inference.py runs it
(:meth:`run_batch`), recording each image's predictions or its own error as it goes, and
:meth:`batch_status` reads it back. A batch is its workflow owner's: another user's is
"not found", as the workflow is.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from datetime import datetime, timedelta
from typing import Any

from shared import keys
from shared.errors import Conflict, CrucibleError, InvalidInput, NotFound, TooLarge
from shared.models import Principal, TrainingJob, utcnow
from shared.ports import EventBus, ImageFetcher, ObjectStore, Predictor
from shared.services.training import Checkpoint, TrainingService

log = logging.getLogger(__name__)

BATCH_REQUESTED = "Batch Inference Requested"  # shared/routing.py routes it by this name
IMAGE_TASKS = ("image_classification", "object_detection")
NOT_AN_IMAGE = "NOT_AN_IMAGE"
# (signature at offset 0, media type, file name for the model)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "image.png"),
    (b"\xff\xd8\xff", "image/jpeg", "image.jpg"),
    (b"GIF87a", "image/gif", "image.gif"),
    (b"GIF89a", "image/gif", "image.gif"),
    (b"II*\x00", "image/tiff", "image.tif"),
    (b"MM\x00*", "image/tiff", "image.tif"),
    (b"BM", "image/bmp", "image.bmp"),
)
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.ASCII)
_WORKFLOW_ID = re.compile(r"[1-9][0-9]{0,17}")
# What a batch's answer promises: a start, and this much per image.
BATCH_START_S, BATCH_PER_IMAGE_S = 10, 2
# A batch still processing this long after it was asked for has lost its handler (every
# retry failed, its event dead-lettered): it ends failed, with the results it has.
BATCH_DEADLINE = timedelta(hours=1)


def image_type(data: bytes) -> tuple[str, str] | None:
    """(media type, a file name) of an image by its signature, None if it is none."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "image.webp"
    return next(((t, name) for sig, t, name in _SIGNATURES if data.startswith(sig)), None)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class InferenceService:
    def __init__(
        self,
        training: TrainingService,
        artifacts: ObjectStore,
        uploads: ObjectStore,
        fetcher: ImageFetcher,
        bus: EventBus,
        predictor: Predictor,
        *,
        uploads_bucket: str,
        max_image_bytes: int,
        max_batch_images: int,
    ) -> None:
        self.training = training
        self.artifacts = artifacts
        self.uploads = uploads
        self.fetcher = fetcher
        self.bus = bus
        self.predictor = predictor
        self.uploads_bucket = uploads_bucket
        self.max_image_bytes = max_image_bytes
        self.max_batch_images = max_batch_images

    # --- the workflow and its model ---------------------------------------------------
    def workflow(self, actor: Principal, workflow_id: str) -> TrainingJob:
        """The training job a workflow id (``<n>`` or ``wf_<n>``, as /workflows takes
        them) names, if ``actor`` may read it."""
        missing = NotFound("Workflow not found", code="WORKFLOW_NOT_FOUND", field="workflow_id")
        number = workflow_id.removeprefix("wf_")
        if not _WORKFLOW_ID.fullmatch(number):
            raise missing
        try:
            return self.training.get(actor, int(number))
        except NotFound:
            raise missing from None

    def _model(self, job: TrainingJob) -> tuple[Checkpoint, str]:
        """(checkpoint, model version) of the job's model; 409 while it has none."""
        if job.task_type not in IMAGE_TASKS:
            raise InvalidInput(
                f"Workflow {job.id} trains {job.task_type}; inference takes image models "
                "(image_classification, object_detection)",
                field="workflow_id",
            )
        checkpoint = self.training.checkpoint_of(job)
        if checkpoint is None:
            raise Conflict(
                f"Workflow {job.id} has no trained model yet (no checkpoint saved): predict "
                "once it has saved one",
                code="NO_CHECKPOINT",
                field="workflow_id",
            )
        found = keys.parse_checkpoint(checkpoint.key)
        name = found[1] if found else "model"
        etag = checkpoint.etag.strip('"')[:8]
        return checkpoint, f"{job.id}_{name}_{etag}"

    # --- one image --------------------------------------------------------------------
    def predict(
        self, actor: Principal, workflow_id: str, image: dict[str, Any], options: dict[str, Any]
    ) -> dict[str, Any]:
        job = self.workflow(actor, workflow_id)
        checkpoint, version = self._model(job)
        data = self._image(actor, image, field="")
        answer = self._run(
            checkpoint.key, data, options, field=_field(image, ""), etag=checkpoint.etag
        )
        return {**answer, "model_version": version}

    def _run(
        self,
        key: str,
        data: bytes,
        options: dict[str, Any],
        *,
        field: str,
        etag: str | None = None,
    ) -> dict[str, Any]:
        """The model's answer on checked image bytes, in seed 003's shape. ``etag``: the
        checkpoint's version as just found (the predictor then needs no HEAD of its own)."""
        kind = image_type(data)
        answer = self.predictor.predict(
            {
                "checkpoint": key,
                **({"etag": etag} if etag else {}),
                "data": base64.b64encode(data).decode(),
                "filename": kind[1] if kind else "image",
                "options": options,
            }
        )
        if "error" in answer:
            error = answer["error"]
            if error.get("status") == 409:  # the checkpoint itself cannot be used
                raise Conflict(error["detail"], code=error.get("code", "CHECKPOINT_UNUSABLE"))
            raise InvalidInput(error["detail"], field=field, code=NOT_AN_IMAGE)
        predictions = []
        for p in answer.get("predictions", []):
            out = {"class": p["label"], "confidence": p["confidence"], "class_id": p["label_id"]}
            if "bbox" in p:  # x1, y1, x2, y2 in pixels
                out["bbox"] = p["bbox"]
            predictions.append(out)
        return {
            "predictions": predictions,
            "inference_time_ms": round(float(answer.get("inference_time_ms", 0))),
            "task_type": answer.get("task_type"),
            "model_name": answer.get("model_name"),
        }

    # --- images as sent ---------------------------------------------------------------
    def _image(self, actor: Principal, image: dict[str, Any], *, field: str) -> bytes:
        """The bytes of one image as sent (inline, s3:// or https), each checked."""
        if image.get("image_base64") is not None:
            return self._checked(
                self._decode(str(image["image_base64"]), _field(image, field)),
                _field(image, field),
            )
        url, where = str(image.get("image_url") or ""), _field(image, field)
        if _fetched(image):
            return self._checked(self._fetch(url, where), where)
        return self._checked(self._own_upload(actor, url, where), where)

    def _decode(self, text: str, field: str) -> bytes:
        text = text.strip()
        if text[:5].lower() == "data:":
            head = _DATA_URL.match(text)
            if head is None or ";base64" not in head["params"].lower():
                raise InvalidInput(
                    "A data URL must read data:image/<type>;base64,<data>", field=field
                )
            if head["type"] and not head["type"].lower().startswith("image/"):
                raise InvalidInput(
                    f"The data URL holds {head['type']}, not an image",
                    field=field,
                    code=NOT_AN_IMAGE,
                )
            text = text[head.end() :]
        text = "".join(text.split())  # line breaks, as some encoders write them
        if len(text) > (self.max_image_bytes + 2) // 3 * 4:
            raise self._too_large(field)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("image_base64 is not valid base64", field=field) from None
        return data

    def _own_upload(self, actor: Principal, url: str, field: str) -> bytes:
        """An object of the caller's own uploads (``<kind>/<caller's id>/...``), by
        ``s3://<uploads bucket>/<key>``; any other gets the same answer, whether or not
        it exists."""
        bucket, _, key = url[5:].partition("/")
        upload = keys.parse_upload(key)
        head = (
            self.uploads.head(key)
            if bucket == self.uploads_bucket and upload and upload.user_id == actor.user_id
            else None
        )
        if head is None:
            raise InvalidInput(
                f"No such upload of yours: s3:// URLs name your own uploads, "
                f"s3://{self.uploads_bucket}/<kind>/{actor.user_id}/...",
                field=field,
                code="IMAGE_NOT_FOUND",
            )
        if head["size"] > self.max_image_bytes:
            raise self._too_large(field)
        return self.uploads.get(key)

    def _fetch(self, url: str, field: str) -> bytes:
        try:
            return self.fetcher.fetch(url, max_bytes=self.max_image_bytes)
        except CrucibleError as exc:
            exc.field = field
            raise

    def _checked(self, data: bytes, field: str) -> bytes:
        if not data:
            raise InvalidInput("The image is empty", field=field, code=NOT_AN_IMAGE)
        if len(data) > self.max_image_bytes:
            raise self._too_large(field)
        if image_type(data) is None:
            raise InvalidInput(
                "Not an image: send a PNG, JPEG, GIF, BMP, WebP or TIFF file",
                field=field,
                code=NOT_AN_IMAGE,
            )
        return data

    def _too_large(self, field: str) -> TooLarge:
        return TooLarge(
            f"Images for inference must be at most {self.max_image_bytes} bytes", field=field
        )

    # --- batches ----------------------------------------------------------------------
    def submit_batch(
        self,
        actor: Principal,
        workflow_id: str,
        images: list[dict[str, Any]],
        options: dict[str, Any],
    ) -> dict[str, Any]:
        job = self.workflow(actor, workflow_id)
        checkpoint, version = self._model(job)
        if not images:
            raise InvalidInput("images must hold at least one image", field="images")
        if len(images) > self.max_batch_images:
            raise InvalidInput(
                f"A batch holds at most {self.max_batch_images} images, not {len(images)}",
                field="images",
                code="TOO_MANY_IMAGES",
            )
        # Everything checked before anything is stored; https URLs are fetched later.
        staged: list[tuple[dict[str, Any], bytes | None]] = []
        for i, image in enumerate(images):
            field = f"images[{i}]"
            url = image.get("image_url")
            if _fetched(image):
                try:
                    self.fetcher.check(str(url))
                except CrucibleError as exc:
                    exc.field = _field(image, field)
                    raise
                staged.append(({"image_url": url}, None))
            else:
                data = self._image(actor, image, field=field)
                staged.append(({"image_url": url} if url else {}, data))
        batch_id = keys.new_batch_id()
        now = utcnow()
        record = {
            "batch_id": batch_id,
            "workflow_id": job.id,
            "owner_id": job.owner_id,
            "requested_by": actor.user_id,
            "checkpoint": checkpoint.key,
            "model_version": version,
            "options": options,
            "created_at": _iso(now),
            "estimated_completion_time": _iso(
                now + timedelta(seconds=BATCH_START_S + BATCH_PER_IMAGE_S * len(images))
            ),
            "images": [],
        }
        try:
            for i, (entry, data) in enumerate(staged):
                if data is not None:
                    entry = {**entry, "key": keys.batch_image(job.id, batch_id, i)}
                    self.artifacts.put(entry["key"], data, content_type=image_type(data)[0])
                record["images"].append(entry)
            # the record last: a batch exists once it is whole
            self._put_json(keys.batch_request(job.id, batch_id), record)
            self.bus.put_event(BATCH_REQUESTED, {"workflow_id": job.id, "batch_id": batch_id})
        except Exception:
            self.artifacts.delete_prefix(keys.batch_prefix(job.id, batch_id))
            raise
        return {
            "job_id": batch_id,
            "workflow_id": str(job.id),
            "status": "processing",
            "total_images": len(images),
            "estimated_completion_time": record["estimated_completion_time"],
            "model_version": version,
        }

    def batch_status(self, actor: Principal, workflow_id: str, batch_id: str) -> dict[str, Any]:
        job = self.workflow(actor, workflow_id)
        record = self._record(job.id, batch_id)
        if record is None or not actor.can_read(int(record["owner_id"])):
            raise NotFound("Batch job not found", code="BATCH_NOT_FOUND", field="job_id")
        result_key = keys.batch_result(job.id, batch_id)
        result = self._read_json(result_key) or {"status": "processing", "results": []}
        created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        if result["status"] == "processing" and utcnow() - created > BATCH_DEADLINE:
            minutes = int(BATCH_DEADLINE.total_seconds() // 60)
            result.update(
                status="failed",
                completed_at=_iso(utcnow()),
                error=f"The batch did not finish within {minutes} minutes (its handler kept "
                "failing); images without a result have none",
            )
            self._put_json(result_key, result)  # settled for good: a late run finds it ended
        results = sorted(result["results"], key=lambda r: r["index"])
        out: dict[str, Any] = {
            "job_id": batch_id,
            "workflow_id": str(job.id),
            "status": result["status"],
            "total_images": len(record["images"]),
            "completed_images": len(results),
            "failed_images": sum(1 for r in results if "error" in r),
            "results": results,
            "model_version": record["model_version"],
            "created_at": record["created_at"],
            "completed_at": result.get("completed_at"),
            **({"error": result["error"]} if result.get("error") else {}),
        }
        if result["status"] == "processing":
            out["estimated_completion_time"] = record["estimated_completion_time"]
        return out

    def run_batch(self, workflow_id: int, batch_id: str) -> dict[str, Any]:
        """Predict on each image of a stored batch not yet done, recording each answer (or
        the image's own error) as it goes; a replay resumes, or finds the batch done."""
        if not keys.is_batch_id(batch_id):
            return {"status": "ignored", "batch_id": batch_id}
        record = self._record(workflow_id, batch_id)
        if record is None:
            log.warning("batch %s of workflow %s is not stored", batch_id, workflow_id)
            return {"status": "ignored", "batch_id": batch_id}
        result_key = keys.batch_result(workflow_id, batch_id)
        result = self._read_json(result_key) or {
            "status": "processing",
            "started_at": _iso(utcnow()),
            "results": [],
        }
        if result["status"] != "processing":  # completed, or settled failed past its deadline
            return {"status": "duplicate", "batch_id": batch_id}
        done = {r["index"] for r in result["results"]}
        for i, image in enumerate(record["images"]):
            if i not in done:
                result["results"].append(self._run_one(record, i, image))
                if self._settled(result_key):
                    return {"status": "settled", "batch_id": batch_id}
                self._put_json(result_key, result)
        if self._settled(result_key):
            return {"status": "settled", "batch_id": batch_id}
        result.update(status="completed", completed_at=_iso(utcnow()))
        self._put_json(result_key, result)
        failed = sum(1 for r in result["results"] if "error" in r)
        return {"status": "completed", "batch_id": batch_id, "failed_images": failed}

    def _run_one(self, record: dict[str, Any], index: int, image: dict[str, Any]) -> dict:
        """One image's predictions, or its error (``{"code", "message"}``). Storage
        failures are raised (the event is redelivered and the batch resumes)."""
        out: dict[str, Any] = {"index": index}
        if image.get("image_url"):
            out["image_url"] = image["image_url"]
        try:
            if "key" in image:
                data = self.artifacts.get(image["key"])
            else:
                data = self.fetcher.fetch(image["image_url"], max_bytes=self.max_image_bytes)
            data = self._checked(data, "")
            try:
                answer = self._run(record["checkpoint"], data, record["options"], field="")
            except CrucibleError as exc:
                wait = getattr(exc, "retry_after", None)
                if not wait:
                    raise
                # A model still warming up (or a function at its limit): the API's caller
                # is told to retry; a batch, which has minutes, retries once itself.
                time.sleep(wait)
                answer = self._run(record["checkpoint"], data, record["options"], field="")
        except CrucibleError as exc:
            return {**out, "error": {"code": exc.code, "message": exc.detail}}
        except Exception:
            log.exception("batch %s image %d: the model failed", record["batch_id"], index)
            return {
                **out,
                "error": {"code": "INFERENCE_FAILED", "message": "The model failed on this image"},
            }
        return {**out, **answer}

    # --- stored JSON ------------------------------------------------------------------
    def _record(self, job_id: int, batch_id: str) -> dict[str, Any] | None:
        if not keys.is_batch_id(batch_id):
            return None
        record = self._read_json(keys.batch_request(job_id, batch_id))
        if record is None or int(record["workflow_id"]) != job_id:
            return None
        return record

    def _read_json(self, key: str) -> dict[str, Any] | None:
        if self.artifacts.head(key) is None:
            return None
        return json.loads(self.artifacts.get(key))

    def _settled(self, result_key: str) -> bool:
        """Whether the batch was settled (failed past its deadline) while this ran: then
        its end stands, and this run writes nothing more."""
        now = self._read_json(result_key)
        return now is not None and now.get("status") == "failed"

    def _put_json(self, key: str, value: dict[str, Any]) -> None:
        self.artifacts.put(key, json.dumps(value).encode(), content_type="application/json")


def _fetched(image: dict[str, Any]) -> bool:
    """Whether an image is named by a URL to fetch (not inline, not an s3:// upload)."""
    if image.get("image_base64") is not None:
        return False
    return str(image.get("image_url") or "")[:5].lower() != "s3://"


def _field(image: dict[str, Any], prefix: str) -> str:
    """The request field an image came in (``image_url``, ``images[2].image_base64``)."""
    name = "image_base64" if image.get("image_base64") is not None else "image_url"
    return f"{prefix}.{name}" if prefix else name
