"""Seed 004's leaderboard: a folder of code packed as one .zip submission (its tree kept,
unpacked at the root by the evaluator), a job to evaluate it, and the ranking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from crucible_cli.client import API, Api, CliError, Exit
from crucible_cli.live import Follow
from crucible_cli.uploads import zip_folder

BASE = f"{API}/leaderboard"
ENDED = ("completed", "failed", "cancelled")
MAX_BYTES = 100 * 1024 * 1024  # seed 004: a submission is at most 100 MB


def metadata(text: str | None, board: str | None) -> str | None:
    """``--metadata`` (a JSON object) with ``--board`` as its ``leaderboard``."""
    meta: dict[str, Any] = {}
    if text:
        try:
            meta = json.loads(text)
        except ValueError as exc:
            raise CliError(f"--metadata is not JSON: {exc}", Exit.USAGE) from None
        if not isinstance(meta, dict):
            raise CliError("--metadata must be a JSON object", Exit.USAGE)
    if board:
        meta["leaderboard"] = board
    return json.dumps(meta) if meta else None


def submit(
    api: Api, folder: Path, entrypoint: str, config_file: str, meta: str | None
) -> dict[str, Any]:
    """Pack ``folder`` (hidden files and caches left out) and send it; the API checks the
    entrypoint and config are in it."""
    if not folder.is_dir():
        raise CliError(f"{folder}: not a folder", Exit.USAGE)
    for flag, rel in (("--entrypoint", entrypoint), ("--config", config_file)):
        if not (folder / rel).is_file():
            raise CliError(f"{flag}: {rel} is not a file in {folder}", Exit.USAGE)
    with tempfile.TemporaryDirectory(prefix="crucible-") as tmp:
        archive = Path(tmp) / "submission.zip"
        zip_folder(folder, archive)
        size = archive.stat().st_size
        if size > MAX_BYTES:
            raise CliError(
                f"{folder} packs to {size / 2**20:.1f} MB; a submission may be at most 100 MB",
                Exit.USAGE,
            )
        data = {"entrypoint": entrypoint, "config_file": config_file}
        if meta:
            data["metadata"] = meta
        with archive.open("rb") as f:
            return api.post(
                f"{BASE}/submissions",
                data=data,
                files=[("files", ("submission.zip", f, "application/zip"))],
            )


def create_job(api: Api, submission_id: str, resource_class: str | None) -> dict[str, Any]:
    config = {"resource_class": resource_class} if resource_class else {}
    return api.post(f"{BASE}/jobs", json={"submission_id": submission_id, "config": config})


async def wait(api: Api, job_id: str, on_news, timeout: float) -> dict[str, Any]:
    """Follow ``job:<id>`` until the evaluation ends (its status, read from the API)."""
    deadline = time.monotonic() + timeout
    follow = Follow(api, f"job:{job_id}")
    async with contextlib.aclosing(follow.__aiter__()) as events:
        async for event in events:
            if event is not None:
                on_news(event)
                if event.get("data", {}).get("status") not in ENDED:
                    continue
            job = await asyncio.to_thread(api.get, f"{BASE}/jobs/{job_id}/status")
            if job["status"] in ENDED:
                return job
            if time.monotonic() > deadline:
                raise CliError(
                    f"evaluation {job_id} is still {job['status']} after {timeout:.0f} s",
                    Exit.UNAVAILABLE,
                )
    raise AssertionError("unreachable")  # pragma: no cover - Follow never ends by itself


def ranking(
    api: Api,
    board: str,
    metric: str | None,
    order: str,
    every_run: bool,
    limit: int,
    params: list[str],
) -> dict[str, Any]:
    query: list[tuple[str, str]] = [
        ("board", board),
        ("order", order),
        ("limit", str(limit)),
        ("every_run", "true" if every_run else "false"),
    ]
    if metric:
        query.append(("metric", metric))
    for p in params:
        name, sep, value = p.partition("=")
        if not sep or not name:
            raise CliError(f"--param takes name=value, not {p!r}", Exit.USAGE)
        query.append((f"param.{name}", value))
    return api.get(f"{API}/leaderboard", params=query)
