"""Seed 001: audio files, analysis, export and visualisation, at the seed's paths."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import RedirectResponse, StreamingResponse

from functions.api.deps import CurrentUser, Services
from functions.api.routers.audio_schemas import (
    AnalysisStartOut,
    AnalysisStatusOut,
    AudioFileListOut,
    AudioFileOut,
    AudioFilePatch,
    BatchUploadOut,
    DirectUploadIn,
    FileTagsIn,
    MultipartCompleteIn,
    MultipartOut,
    PresignedPostOut,
    UploadError,
    UploadOut,
)
from functions.api.routers.common import Cursor, ErrorOut, Limit, Skip
from functions.api.routers.tags_schemas import TagOut
from shared import keys
from shared.audio import content_disposition
from shared.models import AudioFile, Principal
from shared.services.audio_uploads import MAX_BATCH
from shared.wiring import Container

files = APIRouter(prefix="/audio-files", tags=["audio files"])
analysis = APIRouter(prefix="/analysis", tags=["analysis"])
export = APIRouter(prefix="/export", tags=["export"])
visualization = APIRouter(prefix="/visualization", tags=["visualization"])
file_tags = APIRouter(prefix="/tags", tags=["tags"])

# Lambda responses are capped at 6 MB: anything bigger is fetched straight from S3.
INLINE_LIMIT = 5 * 1024 * 1024
_errors = {404: {"model": ErrorOut}, 400: {"model": ErrorOut}, 413: {"model": ErrorOut}}


def out(c: Container, f: AudioFile) -> AudioFileOut:
    return AudioFileOut.of(f, c.audio.tags_of(f))


# --- files -------------------------------------------------------------------------------


@files.post("/upload", status_code=201, response_model=UploadOut, responses=_errors)
def upload(
    principal: CurrentUser,
    c: Services,
    file: Annotated[UploadFile, File(description="wav, mp3, flac, m4a or ogg; up to 100 MB")],
    recording_start_time: Annotated[datetime | None, Form(description="ISO 8601")] = None,
) -> UploadOut:
    f = c.audio_uploads.upload(principal, file.file, file.filename, recording_start_time)
    return UploadOut(message="File uploaded successfully", file=out(c, f))


@files.post("/upload/batch", status_code=201, response_model=BatchUploadOut, responses=_errors)
def upload_batch(
    principal: CurrentUser,
    c: Services,
    files_: Annotated[
        list[UploadFile], File(alias="files", description=f"up to {MAX_BATCH} files")
    ],
    recording_start_times: Annotated[list[datetime] | None, Form()] = None,
) -> BatchUploadOut:
    """Each good file is kept; each bad one is reported in ``errors``."""
    stored, failed = c.audio_uploads.upload_batch(
        principal, [(up.file, up.filename) for up in files_], recording_start_times or []
    )
    done = [out(c, f) for f in stored]
    errors = [UploadError(filename=name, detail=exc.detail, code=exc.code) for name, exc in failed]
    return BatchUploadOut(
        message=f"Successfully uploaded {len(done)} files", files=done, errors=errors or None
    )


@files.post("/presign", status_code=201, response_model=PresignedPostOut, responses=_errors)
def presign(body: DirectUploadIn, principal: CurrentUser, c: Services) -> PresignedPostOut:
    """A presigned S3 POST for one file: send ``fields`` plus the file to ``url`` as a
    multipart form. Its arrival registers and analyses the file with no further call."""
    return PresignedPostOut(
        **c.audio_uploads.presign(
            principal, body.filename, body.size, body.content_type, body.recording_start_time
        )
    )


@files.post("/multipart", status_code=201, response_model=MultipartOut, responses=_errors)
def multipart(body: DirectUploadIn, principal: CurrentUser, c: Services) -> MultipartOut:
    """A presigned multipart upload for large files: PUT each part (exactly its ``size``
    bytes: ``part_size`` each, the rest in the last) to its URL, then complete it with
    the parts' ETags. ``size`` is the file's exact size: a completed upload of any other
    size is deleted and the file refused."""
    return MultipartOut(
        **c.audio_uploads.start_multipart(
            principal, body.filename, body.size, body.content_type, body.recording_start_time
        )
    )


@files.post("/{file_id}/multipart/complete", responses=_errors)
def multipart_complete(
    file_id: int, body: MultipartCompleteIn, principal: CurrentUser, c: Services
) -> dict:
    """400 (or 413) when the completed object is not the size declared: it is deleted
    and the file ends ``failed`` with the reason."""
    return c.audio_uploads.complete_multipart(
        principal, file_id, body.upload_id, [p.model_dump() for p in body.parts]
    )


@files.get("/", response_model=AudioFileListOut, responses={400: {"model": ErrorOut}})
def list_files(
    principal: CurrentUser, c: Services, skip: Skip = 0, limit: Limit = 100, cursor: Cursor = None
) -> AudioFileListOut:
    """Your files; researchers see everyone's."""
    page = c.audio.list(principal, skip=skip, limit=limit, cursor=cursor)
    files = [out(c, f) for f in page.items]
    return AudioFileListOut(total=page.total, files=files, next_cursor=page.next_cursor)


@files.get("/{file_id}", response_model=AudioFileOut, responses=_errors)
def get_file(file_id: int, principal: CurrentUser, c: Services) -> AudioFileOut:
    return out(c, c.audio.get(principal, file_id))


@files.patch("/{file_id}", response_model=AudioFileOut, responses=_errors)
def patch_file(
    file_id: int, body: AudioFilePatch, principal: CurrentUser, c: Services
) -> AudioFileOut:
    return out(c, c.audio.patch(principal, file_id, body.model_dump(exclude_unset=True)))


@files.delete("/{file_id}", status_code=204, responses=_errors)
def delete_file(file_id: int, principal: CurrentUser, c: Services) -> Response:
    """Deletes the recording and every analysis result of it."""
    c.audio.delete(principal, file_id)
    return Response(status_code=204)


@files.get(
    "/{file_id}/stream", responses={**_errors, 307: {"description": "large file: fetch from S3"}}
)
def stream(file_id: int, principal: CurrentUser, c: Services):
    """The recording as it was uploaded, named as it was (RFC 5987 ``filename*`` for
    names beyond ASCII)."""
    f = c.audio.media(principal, file_id)
    name = f.original_filename
    if f.file_size > INLINE_LIMIT:
        return RedirectResponse(c.uploads.presign_get(f.key, filename=name), status_code=307)
    return StreamingResponse(
        c.uploads.stream(f.key),
        media_type=f.content_type,
        headers={
            "Content-Disposition": content_disposition(name),
            "Content-Length": str(f.file_size),
        },
    )


# --- analysis ----------------------------------------------------------------------------


@analysis.post(
    "/{file_id}/start",
    response_model=AnalysisStartOut,
    responses={**_errors, 409: {"model": ErrorOut}},
)
def start(file_id: int, principal: CurrentUser, c: Services) -> AnalysisStartOut:
    """Run the analysis again (uploads start one by themselves); 409 while one is running."""
    f = c.audio.request_analysis(principal, file_id)
    return AnalysisStartOut(message="Analysis started", task_id=f.task_id or "", file_id=f.id)


@analysis.get("/{file_id}/status", response_model=AnalysisStatusOut, responses=_errors)
def status(file_id: int, principal: CurrentUser, c: Services) -> AnalysisStatusOut:
    f = c.audio.get(principal, file_id)
    return AnalysisStatusOut(
        file_id=f.id,
        status=f.status,
        message=f.message,
        progress=f.progress,
        task_id=f.task_id,
        error=f.error,
    )


def _result_doc(c: Container, principal: Principal, file_id: int):
    _, key = c.audio.result_location(principal, file_id, keys.ANALYSIS_RESULT)
    if c.artifacts.size(key) > INLINE_LIMIT:
        return None, RedirectResponse(c.artifacts.presign_get(key), status_code=307)
    return c.artifacts.get(key), None


@analysis.get("/{file_id}/result", responses=_errors)
def result(file_id: int, principal: CurrentUser, c: Services) -> Response:
    """``{id, audio_file_id, result_data, analyzed_at}``; ``result_data.parameters`` holds
    every parameter used. ``cryCE`` = voiced cry-unit time / total cry-unit (expiratory)
    time in the episode; ``unvoicedCE`` = 1 - ``cryCE``."""
    body, redirect = _result_doc(c, principal, file_id)
    return redirect or Response(body, media_type="application/json")


# --- export ------------------------------------------------------------------------------


@export.get("/{file_id}/csv", responses=_errors)
def export_csv(file_id: int, principal: CurrentUser, c: Services) -> Response:
    return Response(
        c.audio.export_csv(principal, file_id),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="analysis_results_{file_id}.csv"'},
    )


@export.get("/{file_id}/json", responses=_errors)
def export_json(file_id: int, principal: CurrentUser, c: Services) -> Response:
    body, redirect = _result_doc(c, principal, file_id)
    if redirect:
        return redirect
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="analysis_results_{file_id}.json"'},
    )


# --- visualisation -------------------------------------------------------------------------


@visualization.get("/{file_id}/waveform", responses=_errors)
def waveform(
    file_id: int,
    principal: CurrentUser,
    c: Services,
    points: Annotated[int, Query(ge=10, le=2000, description="envelope buckets")] = 2000,
) -> dict:
    """A min/max envelope of at most ``points`` buckets (``amplitudes``: each bucket's
    extreme sample), whatever the recording's length."""
    return c.audio.waveform(principal, file_id, points)


@visualization.get("/{file_id}/spectrogram", responses=_errors)
def spectrogram(file_id: int, principal: CurrentUser, c: Services) -> dict:
    """Power in dB relative to the loudest cell: ``spectrogram[frequency][time]`` with
    ``frequencies`` (Hz) and ``times`` (s); at most 400 time columns."""
    return c.audio.visualization(principal, file_id, "spectrogram")


# --- seed 001's per-file tag routes ----------------------------------------------------------


@file_tags.put("/{file_id}/tags", response_model=list[TagOut], responses=_errors)
def set_file_tags(
    file_id: int, body: FileTagsIn, principal: CurrentUser, c: Services
) -> list[TagOut]:
    return [TagOut.of(t) for t in c.audio.set_tags(principal, file_id, body.tag_ids)]


@file_tags.post("/{file_id}/tags/{tag_id}", response_model=list[TagOut], responses=_errors)
def add_file_tag(file_id: int, tag_id: int, principal: CurrentUser, c: Services) -> list[TagOut]:
    return [TagOut.of(t) for t in c.audio.add_tag(principal, file_id, tag_id)]


@file_tags.delete("/{file_id}/tags/{tag_id}", response_model=list[TagOut], responses=_errors)
def remove_file_tag(file_id: int, tag_id: int, principal: CurrentUser, c: Services) -> list[TagOut]:
    return [TagOut.of(t) for t in c.audio.remove_tag(principal, file_id, tag_id)]


routers = (files, analysis, export, visualization, file_tags)
