"""Where each thing lives in the uploads and artifacts buckets: the one statement of the
object-key layout. Every key is built and parsed here, nowhere else. Objects already
stored keep their keys, so changing a layout here is a data migration.

Uploads bucket (a client may write only an arrival, through a presigned URL)::

    audio/<user id>/<file id>/<token>.<ext>                        an audio arrival
    audio/<user id>/<file id>/stored/<token>.<ext>                 the bytes the platform kept
    datasets/<user id>/<dataset id>/archive.zip                    a dataset arrival
    datasets/<user id>/<dataset id>/stored/<token>/archive.zip     the bytes ingestion kept
    datasets/<user id>/<dataset id>/stored/<token>/statistics.json their full statistics

Every upload is ``<kind>/<user id>/<...>``; a stored copy, ``<kind>/<user id>/<id>/stored/...``,
is never an upload (no client is granted its key).

Artifacts bucket (only the platform writes)::

    analysis/<file id>/<task id>/result.json, <view>.json          one analysis of a file
    jobs/<job id>/checkpoints/last.pt, best.pt                     a job's checkpoints
    jobs/<job id>/validation/epoch-<epoch, 6 digits>.json          per-sample validation
    jobs/<job id>/validation/details-<epoch, 6 digits>.json        per-class + confusion matrix
"""

from __future__ import annotations

import re
import uuid
from typing import Literal, NamedTuple

AUDIO = "audio/"  # the prefix of every audio upload (arrivals and stored copies)
DATASETS = "datasets/"  # the prefix of every dataset upload (arrivals and stored copies)

_UPLOAD = re.compile(r"^(?P<kind>[a-z-]+)/(?P<user_id>\d+)/(?P<rest>.+)$")
_STORED = re.compile(r"^[a-z-]+/\d+/[^/]+/stored/")


def _token() -> str:
    return uuid.uuid4().hex


# --- any upload -------------------------------------------------------------------------
class Upload(NamedTuple):
    kind: str  # "audio", "datasets", ...
    user_id: int


def is_stored_copy(key: str) -> bool:
    """Whether ``key`` is a copy the platform keeps of what it inspected (not an upload)."""
    return _STORED.match(key) is not None


def parse_upload(key: str) -> Upload | None:
    """The kind and owner of a key under ``<kind>/<user id>/``, else None. (A stored copy
    parses too: ask :func:`is_stored_copy` first.)"""
    match = _UPLOAD.match(key)
    if match is None:
        return None
    return Upload(match["kind"], int(match["user_id"]))


# --- audio (uploads bucket) -------------------------------------------------------------
def audio_arrival(owner_id: int, file_id: int, extension: str) -> str:
    """A new key a client's audio upload arrives at."""
    return f"{audio_prefix(owner_id, file_id)}{_token()}.{extension}"


def audio_stored(owner_id: int, file_id: int, extension: str) -> str:
    """A new key for audio bytes the platform keeps: no client is granted it."""
    return f"{audio_prefix(owner_id, file_id)}stored/{_token()}.{extension}"


def audio_prefix(owner_id: int, file_id: int) -> str:
    """Everything of one audio file: its arrivals and its stored copies."""
    return f"{AUDIO}{owner_id}/{file_id}/"


def parse_audio_arrival(key: str) -> tuple[int, int] | None:
    """(owner id, file id) of an arrival, ``audio/<owner>/<file>/<name>``, else None (the
    platform's own copies, one level deeper, are not arrivals)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] + "/" == AUDIO and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


# --- analysis results (artifacts bucket) ------------------------------------------------
ANALYSIS_RESULT = "result.json"  # in a results prefix: the analysis itself


def analysis_prefix(file_id: int) -> str:
    """Every analysis result of one audio file."""
    return f"analysis/{file_id}/"


def analysis_results(file_id: int, task_id: str) -> str:
    """The prefix of one analysis (task) of one audio file."""
    return f"{analysis_prefix(file_id)}{task_id}/"


def analysis_view(name: str) -> str:
    """The name, in a results prefix, of one visualisation's data."""
    return f"{name}.json"


# --- datasets (uploads bucket) ----------------------------------------------------------
_ARCHIVE = "archive.zip"
_STATISTICS = "statistics.json"


def dataset_arrival(owner_id: int, dataset_id: str) -> str:
    """Where a presigned POST puts a dataset's zip (its arrival)."""
    return f"{DATASETS}{owner_id}/{dataset_id}/{_ARCHIVE}"


def dataset_stored_folder(owner_id: int, dataset_id: str) -> str:
    """A new folder for the bytes ingestion inspected: no client can write there."""
    return f"{DATASETS}{owner_id}/{dataset_id}/stored/{_token()}/"


def dataset_archive(folder: str) -> str:
    """The archive kept in a stored folder."""
    return folder + _ARCHIVE


def dataset_statistics(folder: str) -> str:
    """The full statistics kept in a stored folder, beside its archive."""
    return folder + _STATISTICS


def dataset_statistics_of(archive_key: str) -> str:
    """The statistics kept beside a stored archive."""
    return dataset_statistics(archive_key.rsplit("/", 1)[0] + "/")


def parse_dataset_arrival(key: str) -> str | None:
    """The dataset id of an arrival, ``datasets/<owner>/<id>/archive.zip``, else None (the
    platform's own copies live deeper). The caller checks the owner against the dataset."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != DATASETS or parts[3] != _ARCHIVE:
        return None
    return parts[2]


# --- jobs (artifacts bucket) ------------------------------------------------------------
CheckpointName = Literal["last", "best"]
_CHECKPOINT = re.compile(r"jobs/([1-9][0-9]{0,17})/checkpoints/(last|best)\.pt")
# What a client names to resume from, in words (for messages).
CHECKPOINT_FORM = "jobs/<job id>/checkpoints/last.pt (or best.pt)"


def checkpoints_prefix(job_id: int) -> str:
    """Every checkpoint of one job."""
    return f"jobs/{job_id}/checkpoints/"


def checkpoint(job_id: int, name: CheckpointName) -> str:
    return f"{checkpoints_prefix(job_id)}{name}.pt"


def last_checkpoint(job_id: int) -> str:
    """The job's latest checkpoint."""
    return checkpoint(job_id, "last")


def best_checkpoint(job_id: int) -> str:
    """The job's best weights so far (by its validation metric)."""
    return checkpoint(job_id, "best")


def parse_checkpoint(key: str) -> tuple[int, CheckpointName] | None:
    """(job id, "last" or "best") of exactly a checkpoint key, else None."""
    found = _CHECKPOINT.fullmatch(key)
    if found is None:
        return None
    name: CheckpointName = "last" if found.group(2) == "last" else "best"
    return int(found.group(1)), name


def validation_samples(job_id: int, epoch: int) -> str:
    """One epoch's per-sample validation predictions."""
    return f"jobs/{job_id}/validation/epoch-{epoch:06d}.json"


def validation_details(job_id: int, epoch: int) -> str:
    """One epoch's per-class metrics and confusion matrix (their size grows with the
    square of the class count, so they live here and the metric row points at them)."""
    return f"jobs/{job_id}/validation/details-{epoch:06d}.json"


# --- leaderboard submissions (uploads bucket) and evaluations (artifacts bucket) ---------
SUBMISSIONS = "submissions/"


def submission_file(owner_id: int, submission_id: str, index: int, name: str) -> str:
    """Where one file of a submission is kept: a stored copy (the API writes it, never a
    client), so no upload handler takes it for an arrival. ``name`` is already checked
    to be a plain file name."""
    return f"{SUBMISSIONS}{owner_id}/{submission_id}/stored/{index:03d}-{name}"


def submission_prefix(owner_id: int, submission_id: str) -> str:
    return f"{SUBMISSIONS}{owner_id}/{submission_id}/"


def evaluation_logs(job_id: str) -> str:
    """One evaluation's log: a timestamped line per line the submission printed."""
    return f"evaluations/{job_id}/logs.txt"


def evaluation_output(job_id: str, name: str) -> str:
    """A file the evaluator keeps from a job's output directory (its metrics.json)."""
    return f"evaluations/{job_id}/output/{name}"


# --- seed 003's batch inference (artifacts bucket: only the platform writes) ------------
#   inference/<job id>/batches/<batch id>/request.json   the batch as asked (its record)
#   inference/<job id>/batches/<batch id>/images/<n>     an image sent inline or by s3://, as checked
#   inference/<job id>/batches/<batch id>/result.json    per-image predictions or errors
INFERENCE = "inference/"  # the prefix of every batch's objects
_BATCH_ID = re.compile(r"batch_[0-9a-f]{32}")


def new_batch_id() -> str:
    return f"batch_{_token()}"


def is_batch_id(text: str) -> bool:
    """Whether ``text`` has a batch id's form (so it can be put in a key)."""
    return _BATCH_ID.fullmatch(text) is not None


def batch_prefix(job_id: int, batch_id: str) -> str:
    """Everything of one batch of one job (a workflow's model)."""
    if not is_batch_id(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return f"{INFERENCE}{job_id}/batches/{batch_id}/"


def batch_request(job_id: int, batch_id: str) -> str:
    return batch_prefix(job_id, batch_id) + "request.json"


def batch_image(job_id: int, batch_id: str, index: int) -> str:
    return f"{batch_prefix(job_id, batch_id)}images/{index:04d}"


def batch_result(job_id: int, batch_id: str) -> str:
    return batch_prefix(job_id, batch_id) + "result.json"
