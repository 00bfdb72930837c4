"""Training jobs (seed 002's routes): the create request from options or a JSON file, and
watching one live: epoch, loss, the job's metric and ETA from ``job:<id>``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from crucible_cli.client import API, Api, CliError, Exit, clean
from crucible_cli.live import Follow
from crucible_cli.output import Output

ENDED = ("completed", "failed", "stopped")


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` of ``--set``: the value as JSON when it is JSON (numbers, booleans,
    lists), else the text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CliError(f"--set takes key=value, not {text!r}", Exit.USAGE)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def request_body(
    config_file: Path | None, config: dict[str, Any], meta: dict[str, Any], settings: list[str]
) -> dict[str, Any]:
    """Seed 002's create request: the JSON file (the whole request, or only its
    ``config``), then the options given, then each ``--set`` into ``advanced_config``."""
    body: dict[str, Any] = {"config": {}}
    if config_file is not None:
        try:
            loaded = json.loads(config_file.read_text())
        except OSError as exc:
            raise CliError(f"cannot read {config_file}: {exc.strerror}", Exit.USAGE) from None
        except ValueError as exc:
            raise CliError(f"{config_file} is not JSON: {exc}", Exit.USAGE) from None
        if not isinstance(loaded, dict):
            raise CliError(f"{config_file} must hold a JSON object", Exit.USAGE)
        body = loaded if isinstance(loaded.get("config"), dict) else {"config": loaded}
        body["config"] = dict(body["config"])
    body.update({k: v for k, v in meta.items() if v not in (None, [])})
    body["config"].update({k: v for k, v in config.items() if v is not None})
    if settings:
        advanced = dict(body["config"].get("advanced_config") or {})
        advanced.update(parse_setting(s) for s in settings)
        body["config"]["advanced_config"] = advanced
    missing = [k for k in ("model_name", "dataset_id") if not body["config"].get(k)]
    if missing:
        names = {"model_name": "--model", "dataset_id": "--dataset"}
        raise CliError(
            f"say which {' and '.join(names[m] for m in missing)} (or give them in --config)",
            Exit.USAGE,
        )
    return body


def create(api: Api, body: dict[str, Any], start: bool) -> dict[str, Any]:
    job = api.post(f"{API}/training/jobs", json=body)
    if start:
        started = api.post(f"{API}/training/jobs/{job['id']}/start")
        job["status"] = started.get("status", job["status"])
    return job


def get(api: Api, job_id: int) -> dict[str, Any]:
    return api.get(f"{API}/training/jobs/{job_id}")


class Watch:
    """One job followed to its end; what was seen, for the final line."""

    def __init__(self, api: Api, job: dict[str, Any], output: Output, logs: bool) -> None:
        self.api, self.job, self.output, self.logs = api, job, output, logs
        self.metric = job.get("primary_metric") or "accuracy"
        self.last: dict[str, Any] = {}  # the latest values: epoch, loss, metric, eta
        self.epochs_shown: set[int] = set()

    async def run(self, progress: Progress, timeout: float | None) -> dict[str, Any]:
        job_id = self.job["id"]
        total = max(int(self.job.get("total_epochs") or self.job.get("epochs") or 1), 1)
        task = progress.add_task(
            f"job {job_id} {clean(self.job.get('model_name', ''))}", total=total, note=""
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        follow = Follow(self.api, f"job:{job_id}")
        async with contextlib.aclosing(follow.__aiter__()) as events:
            async for event in events:
                if event is not None:
                    self._event(event, progress, task)
                    if event.get("kind") == "validation":
                        await self._epochs(progress)
                    ended = event.get("kind") in ("status", "error") and (
                        event["data"].get("status") in ENDED
                    )
                    if not ended:
                        continue
                # quiet, or an end announced: the API's own record decides
                self.job = await asyncio.to_thread(get, self.api, job_id)
                await self._epochs(progress)
                progress.update(
                    task,
                    total=max(int(self.job.get("total_epochs") or total), 1),
                    completed=max(progress.tasks[task].completed, self.job["current_epoch"]),
                )
                if self.job["status"] in ENDED:
                    if self.job["status"] == "completed":
                        progress.update(task, completed=progress.tasks[task].total)
                    progress.update(task, note=self._note(self.job["status"]))
                    return self.job
                if not follow.live:
                    progress.update(task, note=self._note(f"{self.job['status']} (polling)"))
                if deadline is not None and loop.time() > deadline:
                    raise CliError(
                        f"job {job_id} is still {self.job['status']} after {timeout:.0f} s",
                        Exit.UNAVAILABLE,
                    )
        raise AssertionError("unreachable")  # pragma: no cover - Follow never ends by itself

    async def _epochs(self, progress: Progress) -> None:
        """One line per finished epoch, from the job's recorded metrics: those finished
        before the watch began, and each as it ends (its validation event says when)."""
        rows = await asyncio.to_thread(
            self.api.get, f"{API}/training/jobs/{self.job['id']}/metrics", params={"limit": 10_000}
        )
        for row in sorted(rows, key=lambda r: r.get("epoch") or 0):
            epoch = row.get("epoch")
            if not isinstance(epoch, int) or epoch in self.epochs_shown:
                continue
            self.epochs_shown.add(epoch)
            values = {
                "accuracy": row.get("accuracy"),
                **{k: v for k, v in (row.get("extra_metrics") or {}).items()},
            }
            if isinstance(values.get(self.metric), int | float):
                self.last["metric"] = values[self.metric]
            self._epoch_line(epoch, row.get("loss"), values)

    def _event(self, event: dict[str, Any], progress: Progress, task: TaskID) -> None:
        kind, data = event.get("kind"), event.get("data") or {}
        if self.output.json:
            self.output.emit(event)
        if kind == "progress":
            epoch, steps = data.get("epoch"), data.get("total_steps") or 0
            if isinstance(epoch, int):
                done = epoch - 1 + ((data.get("step") or 0) / steps if steps else 0)
                progress.update(
                    task, total=max(int(data.get("total_epochs") or 1), 1), completed=done
                )
            self.last.update(epoch=epoch, loss=data.get("loss"), eta=data.get("eta_minutes"))
            metric = (data.get("metrics") or {}).get(self.metric)
            if isinstance(metric, int | float):
                self.last["metric"] = metric
        elif kind == "validation":
            if isinstance(data.get(self.metric), int | float):
                self.last["metric"] = data[self.metric]
            if isinstance(data.get("epoch"), int):
                progress.update(task, completed=max(progress.tasks[task].completed, data["epoch"]))
        elif kind == "log" and self.logs and not self.output.json:
            progress.console.print(
                f"  {clean(data.get('level', ''))} {clean(data.get('message', ''))}",
                markup=False,
                highlight=False,
            )
        elif kind == "status" and data.get("status") and data["status"] not in ENDED:
            self.last["status"] = data["status"]
        progress.update(task, note=self._note())

    def _epoch_line(self, epoch: int, loss: Any, values: dict[str, Any]) -> None:
        if self.output.json:
            return
        total = self.job.get("total_epochs") or self.job.get("epochs")
        parts = [f"epoch {epoch}/{total}"]
        if isinstance(loss, int | float):
            parts.append(f"loss {loss:.4f}")
        for key in dict.fromkeys((self.metric, "val_loss")):
            if isinstance(values.get(key), int | float):
                parts.append(f"{key} {values[key]:.4f}")
        self.output.note("  ".join(parts), style=None)

    def _note(self, status: str | None = None) -> str:
        parts = []
        if status or self.last.get("status"):
            parts.append(status or self.last["status"])
        if isinstance(self.last.get("epoch"), int):
            parts.append(f"epoch {self.last['epoch']}")
        if isinstance(self.last.get("loss"), int | float):
            parts.append(f"loss {self.last['loss']:.4f}")
        if isinstance(self.last.get("metric"), int | float):
            parts.append(f"{self.metric} {self.last['metric']:.4f}")
        eta = self.last.get("eta")
        if isinstance(eta, int | float) and not (status and status in ENDED):
            parts.append(f"ETA {eta:.1f} min")
        return clean("  ".join(parts))
