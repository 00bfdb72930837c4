"""Uploads with progress: recordings (through the API when small, else straight to S3 with
a presigned POST or, past a second size, a presigned multipart upload) and datasets
(through the API, else a presigned POST), then waiting for what the platform makes of
them (the analysis; the dataset's validation)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress, TaskID

from crucible_cli.client import API, Api, CliError, Exit, clean, unreachable
from crucible_cli.live import Follow

CHUNK = 256 * 1024
# Through the API up to this size (the API takes at most 4.4 MiB a request: what a Lambda
# event carries base64-encoded); larger files go straight to S3.
DIRECT_MAX = 4_000_000
# Recordings larger than this go as a multipart upload (parts of the API's part size).
MULTIPART_OVER = 32 * 1024 * 1024
DONE = ("completed", "failed")


# --- request bodies that report their progress ----------------------------------------------


def _file_chunks(path: Path, start: int, length: int, advance: Callable[[int], None]):
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise CliError(f"{path} changed while it was being sent", Exit.USAGE)
            left -= len(chunk)
            advance(len(chunk))
            yield chunk


def _disposition(name: str, filename: str | None = None) -> bytes:
    """As browsers write it (WHATWG): UTF-8, with '"', CR and LF percent-encoded."""
    text = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        for char, code in (('"', "%22"), ("\r", "%0D"), ("\n", "%0A")):
            filename = filename.replace(char, code)
        text += f'; filename="{filename}"'
    return text.encode()


def form(
    fields: list[tuple[str, str]],
    file_field: str,
    path: Path,
    advance: Callable[[int], None],
    content_type: str = "application/octet-stream",
) -> tuple[dict[str, str], Iterator[bytes]]:
    """A multipart/form-data body of ``fields`` then the file, streamed from disk (each
    chunk counted by ``advance`` as it is sent), with its exact Content-Length (S3's
    presigned POST takes no chunked body)."""
    boundary = secrets.token_hex(16)
    head = io.BytesIO()
    for name, value in fields:
        head.write(b"--" + boundary.encode() + b"\r\n" + _disposition(name) + b"\r\n\r\n")
        head.write(value.encode() + b"\r\n")
    head.write(b"--" + boundary.encode() + b"\r\n" + _disposition(file_field, path.name))
    head.write(f"\r\nContent-Type: {content_type}\r\n\r\n".encode())
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        yield head.getvalue()
        yield from _file_chunks(path, 0, size, advance)
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head.getvalue()) + size + len(tail)),
    }
    return headers, body()


def _s3() -> httpx.Client:
    """A client for presigned URLs: no Authorization header ever goes to storage."""
    return httpx.Client(
        timeout=httpx.Timeout(300, connect=10), headers={"User-Agent": "crucible-cli"}
    )


def _storage_refusal(r: httpx.Response) -> CliError:
    text = clean(r.text.strip())[:300] or r.reason_phrase
    return CliError(f"storage refused the upload: {text} (HTTP {r.status_code})", Exit.REFUSED)


def presigned_post(grant: dict[str, Any], path: Path, advance: Callable[[int], None]) -> None:
    headers, body = form(list(grant["fields"].items()), "file", path, advance)
    try:
        with _s3() as s3:
            r = s3.post(grant["url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise unreachable(grant["url"].split("?")[0], exc) from None
    if r.status_code not in (200, 201, 204):
        raise _storage_refusal(r)


# --- recordings ----------------------------------------------------------------------------


@dataclass
class Recording:
    path: Path
    task: TaskID
    file_id: int | None = None
    route: str = ""
    status: str = "uploading"
    error: str | None = None
    refused: CliError | None = None
    file: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def upload_recording(
    api: Api, rec: Recording, progress: Progress, direct_max: int, multipart_over: int
) -> None:
    """Send one recording by the route its size calls for; ``rec.file_id`` once known."""
    path, size = rec.path, rec.path.stat().st_size

    def advance(n: int) -> None:
        progress.advance(rec.task, n)

    if size <= direct_max:
        rec.route = "api"
        headers, body = form([], "file", path, advance)
        r = api.request("POST", f"{API}/audio-files/upload", content=body, headers=headers)
        rec.file = r.json()["file"]
        rec.file_id = rec.file["id"]
    elif size <= multipart_over:
        rec.route = "presigned"
        grant = api.post(f"{API}/audio-files/presign", json={"filename": path.name, "size": size})
        rec.file_id = grant["file_id"]
        presigned_post(grant, path, advance)
    else:
        rec.route = "multipart"
        grant = api.post(f"{API}/audio-files/multipart", json={"filename": path.name, "size": size})
        rec.file_id = grant["file_id"]
        parts, offset = [], 0
        with _s3() as s3:
            for part in grant["parts"]:
                length = part["size"]
                try:
                    r = s3.put(
                        part["url"],
                        content=_file_chunks(path, offset, length, advance),
                        headers={"Content-Length": str(length)},
                    )
                except httpx.HTTPError as exc:
                    raise unreachable(part["url"].split("?")[0], exc) from None
                if r.status_code != 200:
                    raise _storage_refusal(r)
                parts.append({"part_number": part["part_number"], "etag": r.headers["ETag"]})
                offset += length
        api.post(
            f"{API}/audio-files/{rec.file_id}/multipart/complete",
            json={"upload_id": grant["upload_id"], "parts": parts},
        )


async def wait_analysis(api: Api, rec: Recording, progress: Progress, timeout: float) -> None:
    """Follow ``file:<id>`` until the analysis ends (the API's status says so), showing
    its progress on the file's bar; then its summary from the result."""
    deadline = time.monotonic() + timeout
    task = progress.add_task(label(rec.path), total=100, note="waiting")
    follow = Follow(api, f"file:{rec.file_id}")
    async with contextlib.aclosing(follow.__aiter__()) as events:
        async for event in events:
            if event is None:
                r = await asyncio.to_thread(
                    api.request, "GET", f"{API}/analysis/{rec.file_id}/status", ok=(404,)
                )
                if r.status_code == 404:  # a direct upload not yet arrived and registered
                    st = {"status": "uploaded", "progress": 0, "message": "waiting for the upload"}
                else:
                    st = r.json()
            elif event.get("kind") in ("progress", "status", "error"):
                st = event["data"]
            else:
                continue
            progress.update(
                task,
                completed=int(st.get("progress") or 0),
                note=clean(st.get("message") or st.get("status") or "")[:60],
            )
            if st.get("status") in DONE:
                if event is not None:  # the API's own status decides, not one message
                    st = await asyncio.to_thread(api.get, f"{API}/analysis/{rec.file_id}/status")
                if st["status"] in DONE:
                    rec.status, rec.error = st["status"], st.get("error")
                    break
            if time.monotonic() > deadline:
                rec.status, rec.error = "timeout", f"no end within {timeout:.0f} s"
                break
    progress.update(task, note=rec.status if not rec.error else clean(rec.error)[:60])
    if rec.status == "completed":
        progress.update(task, completed=100)
        result = await asyncio.to_thread(api.get, f"{API}/analysis/{rec.file_id}/result")
        rec.summary = summarise(result.get("result_data") or {})
        rec.file = await asyncio.to_thread(api.get, f"{API}/audio-files/{rec.file_id}")


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """Episodes, cry time, cry units, the median of the episodes' median F0, and cryCE
    over the recording (voiced cry-unit time / all cry-unit time)."""
    episodes = data.get("cry_episodes") or []
    units = [u for ep in (data.get("cry_units") or {}).values() for u in ep.get("units") or []]
    f0 = [
        s["f0"]["median"]
        for s in (data.get("statistics") or {}).values()
        if isinstance(s.get("f0"), dict) and s["f0"].get("median") is not None
    ]
    unit_time = sum(u.get("duration") or 0 for u in units)
    voiced = sum(u.get("duration") or 0 for u in units if u.get("is_voiced"))
    return {
        "episodes": len(episodes),
        "cry_seconds": round(sum(e.get("duration") or 0 for e in episodes), 3),
        "cry_units": len(units),
        "f0_median_hz": round(statistics.median(f0), 1) if f0 else None,
        "cryCE": round(voiced / unit_time, 3) if unit_time else None,
    }


def label(path: Path) -> str:
    """A file's name, short enough for a progress bar."""
    name = clean(path.name)
    return name if len(name) <= 28 else name[:25] + "..."


# --- datasets ------------------------------------------------------------------------------


@contextlib.contextmanager
def archive_of(path: Path) -> Iterator[Path]:
    """The dataset as one zip: the file itself, or a folder zipped to a temporary file."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise CliError(f"{path}: no such file or folder", Exit.USAGE)
    with tempfile.TemporaryDirectory(prefix="crucible-") as tmp:
        target = Path(tmp) / f"{path.name or 'dataset'}.zip"
        zip_folder(path, target, prefix=f"{path.name}/")
        yield target


def zip_folder(folder: Path, target: Path, prefix: str = "") -> None:
    """Every regular file under ``folder`` (hidden files, caches and links left out)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for name in sorted(files):
                p = Path(root) / name
                if name.startswith(".") or name.endswith(".pyc") or p.is_symlink():
                    continue
                if not p.is_file():  # a FIFO or a device would block or never end
                    continue
                z.write(p, prefix + p.relative_to(folder).as_posix())


def upload_dataset(
    api: Api,
    archive: Path,
    progress: Progress,
    task: TaskID,
    meta: dict[str, str],
    direct_max: int,
) -> dict[str, Any]:
    """Send the zip; the dataset as the API answers (``ready`` when it went through the
    API, ``uploading`` when it went to S3, to be inspected on arrival)."""
    size = archive.stat().st_size

    def advance(n: int) -> None:
        progress.advance(task, n)

    if size <= direct_max:
        fields = [(k, v) for k, v in meta.items() if v is not None]
        headers, body = form(fields, "files", archive, advance, "application/zip")
        return api.request("POST", f"{API}/datasets", content=body, headers=headers).json()
    grant = api.post(f"{API}/datasets/presign", json={**meta, "size": size})
    presigned_post(grant, archive, advance)
    return api.get(f"{API}/datasets/{grant['dataset_id']}")


async def wait_dataset(
    api: Api, dataset_id: str, progress: Progress, task: TaskID, timeout: float
) -> dict[str, Any]:
    """Follow ``dataset:<id>`` until the dataset is ``ready`` or ``failed`` (the API's)."""
    deadline = time.monotonic() + timeout
    progress.update(task, note="validating")
    follow = Follow(api, f"dataset:{dataset_id}")
    async with contextlib.aclosing(follow.__aiter__()) as events:
        async for event in events:
            if event is not None and event.get("data", {}).get("status") not in ("ready", "failed"):
                continue
            d = await asyncio.to_thread(api.get, f"{API}/datasets/{dataset_id}")
            if d["status"] in ("ready", "failed"):
                return d
            if time.monotonic() > deadline:
                raise CliError(
                    f"dataset {dataset_id} is still {d['status']} after {timeout:.0f} s",
                    Exit.UNAVAILABLE,
                )
    raise AssertionError("unreachable")  # pragma: no cover - Follow never ends by itself
