"""The ``crucible`` command: its typer app and ``main()``, which turns every failure into
one line on stderr and an exit code (never a traceback)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from contextlib import closing, nullcontext
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from crucible_cli import jobs as jobs_
from crucible_cli import leaderboard as lb
from crucible_cli import uploads
from crucible_cli.client import API, Api, CliError, Exit, clean
from crucible_cli.output import Output, err, size, status, when

EXIT_CODES = """Exit codes: 0 done; 1 a job, analysis, dataset or evaluation ended failed or
stopped; 2 a usage error; 3 not signed in, or the credentials were refused; 4 the API
refused the request (its message is printed); 5 the API could not be reached, failed or
did not answer in time; 6 an error in crucible itself (CRUCIBLE_DEBUG=1 shows it); 130
interrupted."""

HELP = f"""Crucible from a terminal: sign in, upload recordings and datasets, train and
watch jobs, submit to the leaderboard.

The API is CRUCIBLE_URL (default http://127.0.0.1:8000); the session is kept in
$XDG_CONFIG_HOME/crucible/token.json (default ~/.config/crucible), readable by you only.
Every command takes --json for machine-readable output on stdout.

{EXIT_CODES}"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
datasets_app = typer.Typer(help="Upload and list datasets.", no_args_is_help=True)
jobs_app = typer.Typer(help="Create, list, watch and stop training jobs.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON) on stdout.")]
Timeout = Annotated[
    float, typer.Option(help="Give up waiting after this many seconds (exit 5).", min=1)
]
DirectMax = Annotated[
    int,
    typer.Option(
        envvar="CRUCIBLE_DIRECT_UPLOAD_MAX",
        help="Send files up to this many bytes through the API; larger ones go straight "
        "to storage with a presigned URL.",
        min=0,
    ),
]


def out(ctx: typer.Context, as_json: bool) -> Output:
    return Output(as_json or bool(ctx.obj and ctx.obj.get("json")))


def fail(code: Exit, message: str) -> None:
    raise CliError(message, code)


@app.callback()
def root(
    ctx: typer.Context,
    as_json: Json = False,
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if show_version:
        try:
            typer.echo(f"crucible {version('crucible')}")
        except PackageNotFoundError:
            typer.echo("crucible (not installed)")
        raise typer.Exit()
    ctx.obj = {"json": as_json}


# --- the session ---------------------------------------------------------------------------


@app.command()
def login(
    ctx: typer.Context,
    email: Annotated[str | None, typer.Option(help="Your e-mail (asked for if not given).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CRUCIBLE_TOKEN",
            help="A static API token (seed 004's API_TOKENS) instead of a password "
            "(on the command line it shows in `ps`: prefer CRUCIBLE_TOKEN or --token-stdin).",
        ),
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read a static API token from stdin.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Sign in (e-mail and password, or a static API token) and keep the session."""
    o = out(ctx, as_json)
    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            fail(Exit.USAGE, "no token on stdin")
    with closing(Api()) as api:
        if token:
            if email or password_stdin:
                fail(Exit.USAGE, "a token is used alone, without --email or --password-stdin")
            r = api.request("GET", f"{API}/auth/me", auth=False, headers=_bearer(token))
            user = r.json()
            session = {"access_token": token, "kind": "api_token"}
        else:
            if not email:
                email = typer.prompt("E-mail")
            if password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            else:
                password = typer.prompt("Password", hide_input=True)
            if not password:
                fail(Exit.USAGE, "no password given")
            body = api.post(
                f"{API}/auth/login", auth=False, json={"email": email, "password": password}
            )
            user = body["user"]
            session = {
                "access_token": body["access_token"],
                "refresh_token": body["refresh_token"],
                "expires_at": time.time() + int(body["expires_in"]),
                "kind": "password",
            }
        api.sign_in({**session, "email": user.get("email"), "user_id": user.get("id")})
        if o.json:
            o.emit({"url": api.url, "user": user, "token_file": str(api.store.path)})
        else:
            o.say(f"Signed in to {api.url} as {user.get('email')} ({user.get('role')})")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@app.command()
def logout(ctx: typer.Context, as_json: Json = False) -> None:
    """Forget the session with CRUCIBLE_URL."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        had = api.sign_out()
        if o.json:
            o.emit({"url": api.url, "signed_out": had})
        else:
            o.say(f"Signed out of {api.url}" if had else f"Not signed in to {api.url}")


@app.command()
def whoami(ctx: typer.Context, as_json: Json = False) -> None:
    """Who the session is (from the API)."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        user = api.get(f"{API}/auth/me")
        if o.json:
            o.emit(user)
            return
        o.pairs(
            [
                ("email", user.get("email")),
                ("id", user.get("id")),
                ("role", user.get("role")),
                ("name", user.get("full_name")),
                ("api", api.url),
            ]
        )


# --- recordings ------------------------------------------------------------------------------


@app.command()
def upload(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(help="Recordings: wav, mp3, flac, m4a or ogg.", exists=True, dir_okay=False),
    ],
    wait: Annotated[bool, typer.Option(help="Wait for each analysis and summarise it.")] = True,
    timeout: Timeout = 900,
    direct_max: DirectMax = uploads.DIRECT_MAX,
    multipart_over: Annotated[
        int,
        typer.Option(
            envvar="CRUCIBLE_MULTIPART_OVER",
            help="Send files larger than this many bytes as a multipart upload.",
            min=0,
        ),
    ] = uploads.MULTIPART_OVER,
    as_json: Json = False,
) -> None:
    """Upload recordings (one progress bar each), then wait for their analyses and print
    a summary. Small files go through the API, larger ones straight to storage."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        api.token()  # signed in? say so before any bar is drawn
        progress = o.progress(transfer=True)
        recs = []
        with progress:
            for path in files:
                task = progress.add_task(uploads.label(path), total=path.stat().st_size, note="")
                rec = uploads.Recording(path, task)
                recs.append(rec)
                try:
                    uploads.upload_recording(api, rec, progress, direct_max, multipart_over)
                    progress.update(task, note=f"sent ({rec.route})")
                except CliError as exc:
                    if exc.code in (Exit.AUTH, Exit.UNAVAILABLE):
                        raise
                    rec.status, rec.error, rec.refused = "refused", exc.message, exc
                    progress.update(task, note="refused")
                    o.note(f"{path.name}: {exc.message}", style="red")
        sent = [r for r in recs if r.file_id is not None and r.refused is None]
        if wait and sent:
            progress = o.progress(transfer=False)
            with progress:
                asyncio.run(_analyses(api, sent, progress, timeout))
        rows = [_recording_row(r) for r in recs]
        if o.json:
            o.emit({"files": rows})
        else:
            o.table(
                "Recordings",
                RECORDING_COLUMNS,
                [
                    [
                        r["name"],
                        r["file_id"],
                        r["route"],
                        r["duration"],
                        status(r["status"]),
                        *(r["summary"].get(k) for k in ("episodes", "cry_seconds", "cry_units")),
                        r["summary"].get("f0_median_hz"),
                        r["summary"].get("cryCE"),
                        r["error"],
                    ]
                    for r in rows
                ],
            )
    if any(r.refused for r in recs):
        raise typer.Exit(Exit.REFUSED)
    if any(r.status == "timeout" for r in recs):
        raise typer.Exit(Exit.UNAVAILABLE)
    if wait and any(r.status == "failed" for r in recs):
        raise typer.Exit(Exit.FAILED)


RECORDING_COLUMNS = [
    "file", "id", "route", "seconds", "status", "episodes", "cry s", "units", "F0 median Hz",
    "cryCE", "note",
]  # fmt: skip


async def _analyses(api: Api, recs: list[uploads.Recording], progress, timeout: float) -> None:
    gate = asyncio.Semaphore(8)  # sockets open at once

    async def one(rec: uploads.Recording) -> None:
        async with gate:
            await uploads.wait_analysis(api, rec, progress, timeout)

    await asyncio.gather(*(one(r) for r in recs))


def _recording_row(r: uploads.Recording) -> dict[str, Any]:
    return {
        "file": str(r.path),
        "name": r.path.name,
        "file_id": r.file_id,
        "route": r.route or None,
        "status": r.status if r.status != "uploading" else "uploaded",
        "error": r.error,
        "duration": r.file.get("duration"),
        "summary": r.summary,
    }


# --- datasets --------------------------------------------------------------------------------


class Format(StrEnum):
    auto = "auto"
    imagefolder = "imagefolder"
    yolo = "yolo"
    coco = "coco"
    ljspeech = "ljspeech"


@datasets_app.command("upload")
def datasets_upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A dataset zip, or a folder to zip.", exists=True)],
    name: Annotated[str | None, typer.Option(help="Default: the file's name.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="The dataset's layout.")] = Format.auto,
    description: Annotated[str | None, typer.Option()] = None,
    timeout: Timeout = 900,
    direct_max: DirectMax = uploads.DIRECT_MAX,
    as_json: Json = False,
) -> None:
    """Upload a dataset with a progress bar, wait for its validation and print its classes."""
    o = out(ctx, as_json)
    meta = {
        "name": name or path.name.removesuffix(".zip") or "dataset",
        "format": fmt.value,
        "description": description,
    }
    with closing(Api()) as api, uploads.archive_of(path) as archive:
        api.token()
        progress = o.progress(transfer=True)
        with progress:
            task = progress.add_task(uploads.label(path), total=archive.stat().st_size, note="")
            d = uploads.upload_dataset(api, archive, progress, task, meta, direct_max)
            progress.update(task, note=d["status"])
            if d["status"] not in ("ready", "failed"):
                d = asyncio.run(uploads.wait_dataset(api, d["id"], progress, task, timeout))
            progress.update(task, note=d["status"])
        if o.json:
            o.emit(d)
        else:
            o.say(
                f"Dataset {d['id']} {d['name']}: {d['status']}, {d['format']}, "
                f"{d['file_count']} files, {d['num_classes']} classes"
            )
            if d["status"] == "ready" and d.get("class_distribution"):
                o.table(
                    "Classes",
                    ["class", "count"],
                    [[k, v] for k, v in sorted(d["class_distribution"].items())],
                )
            if d["status"] == "failed":
                o.note(f"why: {d.get('error')}", style="red")
    if d["status"] == "failed":
        raise typer.Exit(Exit.FAILED)


@datasets_app.command("list")
def datasets_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """Your datasets."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        page = api.get(f"{API}/datasets", params={"limit": limit})
    if o.json:
        o.emit(page)
        return
    o.table(
        f"Datasets ({page['total']})",
        ["id", "name", "format", "status", "files", "classes", "size", "created"],
        [
            [
                d["id"],
                d["name"],
                d["format"],
                status(d["status"]),
                d["file_count"],
                d["num_classes"],
                size(d.get("total_size_bytes")),
                when(d.get("created_at")),
            ]
            for d in page["datasets"]
        ],
    )


# --- training jobs ---------------------------------------------------------------------------


@jobs_app.command("create")
def jobs_create(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="The dataset's id.")] = None,
    model: Annotated[str | None, typer.Option(help="e.g. resnet10t, yolov8n.")] = None,
    framework: Annotated[
        str | None, typer.Option(help="timm, ultralytics, torchaudio... (default timm)")
    ] = None,
    task_type: Annotated[str | None, typer.Option(help="e.g. image_classification.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="An advanced setting, key=value (JSON values), e.g. image_size=32."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The experiment's name.")] = None,
    project: Annotated[int | None, typer.Option(help="A project of yours.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
    notes: Annotated[str | None, typer.Option()] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Seed 002's create request as JSON (or only its config); options override it.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    start: Annotated[bool, typer.Option(help="Start it at once.")] = True,
    watch: Annotated[bool, typer.Option(help="Then watch it to its end.")] = False,
    as_json: Json = False,
) -> None:
    """Create a training job (and start it)."""
    o = out(ctx, as_json)
    body = jobs_.request_body(
        config,
        {
            "dataset_id": dataset,
            "model_name": model,
            "framework": framework,
            "task_type": task_type,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": lr,
        },
        {"experiment_name": name, "project_id": project, "tags": tag or [], "notes": notes},
        setting or [],
    )
    body["config"].setdefault("framework", "timm")
    with closing(Api()) as api:
        job = jobs_.create(api, body, start)
        if o.json and not watch:
            o.emit(job)
        elif not o.json:
            o.say(
                f"Job {job['id']} {'started' if start else 'created'}: {job['framework']} "
                f"{job['model_name']} on {job['dataset_id']}, {job['epochs']} epochs ({job['status']})"
            )
        if watch:
            _watch(api, o, job["id"], logs=False, timeout=None)


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    status_: Annotated[
        str | None,
        typer.Option("--status", help="pending, training, completed, failed or cancelled."),
    ] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    sort: Annotated[
        str, typer.Option(help="created_at, started_at or name; '-' first for descending.")
    ] = "-created_at",
    as_json: Json = False,
) -> None:
    """Your training jobs, newest first."""
    o = out(ctx, as_json)
    params: dict[str, Any] = {"page": page, "limit": limit, "sort": sort}
    if status_:
        params["status"] = status_
    with closing(Api()) as api:
        listed = api.get(f"{API}/workflows", params=params)
    if o.json:
        o.emit(listed)
        return
    o.table(
        f"Jobs ({listed['total']}, page {listed['page']})",
        ["id", "name", "status", "progress", "created", "started", "ended"],
        [
            [
                w["workflow_id"],
                w["name"],
                status(w["status"]),
                f"{w['progress']}%",
                when(w.get("created_at")),
                when(w.get("started_at")),
                when(w.get("completed_at")),
            ]
            for w in listed["workflows"]
        ],
    )
    if listed.get("has_next"):
        o.note(f"more: --page {listed['page'] + 1}")


@jobs_app.command("watch")
def jobs_watch(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    logs: Annotated[bool, typer.Option(help="Print its log lines as they come.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 5).", min=1)
    ] = None,
    as_json: Json = False,
) -> None:
    """Follow a job live (epoch, loss, metric, ETA) until it ends: exit 0 when it
    completed, 1 when it failed or was stopped. --json prints each event, then the job."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        _watch(api, o, job_id, logs=logs, timeout=timeout)


def _watch(api: Api, o: Output, job_id: int, *, logs: bool, timeout: float | None) -> None:
    job = jobs_.get(api, job_id)
    w = jobs_.Watch(api, job, o, logs)
    progress = o.progress(transfer=False)
    with progress:
        job = asyncio.run(w.run(progress, timeout))
    if o.json:
        o.emit(job)
    else:
        line = (
            f"Job {job['id']} {job['status']} at epoch {job['current_epoch']}/{job['total_epochs']}"
        )
        metric = w.metric
        if isinstance(w.last.get("metric"), int | float):
            line += f"; {metric} {w.last['metric']:.4f}"
        o.say(line, style="green" if job["status"] == "completed" else "red")
        if job.get("error"):
            o.note(f"why: {job['error']}", style="red")
    if job["status"] != "completed":
        raise typer.Exit(Exit.FAILED)


@jobs_app.command("stop")
def jobs_stop(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    wait: Annotated[bool, typer.Option(help="Wait until it has stopped.")] = False,
    timeout: Timeout = 300,
    as_json: Json = False,
) -> None:
    """Stop a queued or running job (it saves a checkpoint first)."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        answer = api.post(f"{API}/training/stop/{job_id}")
        if wait and answer["status"] not in jobs_.ENDED:
            deadline = time.monotonic() + timeout
            while True:
                job = jobs_.get(api, job_id)
                if job["status"] in jobs_.ENDED:
                    answer = {**answer, "status": job["status"], "message": "It has ended."}
                    break
                if time.monotonic() > deadline:
                    fail(
                        Exit.UNAVAILABLE,
                        f"job {job_id} is still {job['status']} after {timeout:.0f} s",
                    )
                time.sleep(1)
    if o.json:
        o.emit(answer)
    else:
        o.say(f"Job {answer['job_id']}: {answer['status']}. {answer['message']}")


# --- the leaderboard (seed 004) --------------------------------------------------------------


@app.command()
def submit(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="The code: a folder with the entrypoint and config.")
    ],
    entrypoint: Annotated[
        str, typer.Option(help="Run as: python ENTRYPOINT --config ...")
    ] = "main.py",
    config_file: Annotated[
        str, typer.Option("--config", help="Its config (.yaml).")
    ] = "config.yaml",
    metadata: Annotated[
        str | None,
        typer.Option(help='A JSON object shown with the results, e.g. {"method":"padim"}.'),
    ] = None,
    board: Annotated[
        str | None, typer.Option(help="The leaderboard (metadata.leaderboard).")
    ] = None,
    resource_class: Annotated[str | None, typer.Option(help="small or medium.")] = None,
    run: Annotated[bool, typer.Option(help="Create a job to evaluate it.")] = True,
    wait: Annotated[
        bool, typer.Option(help="Wait for the evaluation and print its results.")
    ] = True,
    timeout: Timeout = 3600,
    as_json: Json = False,
) -> None:
    """Submit code to the leaderboard (the folder packed as one .zip), evaluate it and
    wait for its results: exit 1 when the evaluation failed or was cancelled."""
    o = out(ctx, as_json)
    meta = lb.metadata(metadata, board)
    with closing(Api()) as api:
        sub = lb.submit(api, folder, entrypoint, config_file, meta)
        result: dict[str, Any] = {"submission_id": sub["submission_id"]}
        o.say(f"Submission {sub['submission_id']}")
        if run:
            job = lb.create_job(api, sub["submission_id"], resource_class)
            result["job"] = job
            o.say(f"Evaluation job {job['job_id']}: {job['status']}")
            if wait:

                def news(event: dict[str, Any]) -> None:
                    data = event.get("data") or {}
                    if event.get("kind") in ("status", "error") and data.get("status"):
                        o.note(f"  {data['status']}: {clean(data.get('message', ''))}")

                with err.status("evaluating...") if not o.json else nullcontext():
                    job = asyncio.run(lb.wait(api, job["job_id"], news, timeout))
                result["job"] = job
                if job["status"] == "completed":
                    result["results"] = api.get(f"{lb.BASE}/jobs/{job['job_id']}/results")
                else:
                    logs = api.request("GET", f"{lb.BASE}/jobs/{job['job_id']}/logs").text
                    result["log_tail"] = logs.splitlines()[-20:]
    if o.json:
        o.emit(result)
    elif "results" in result:
        res = result["results"]
        o.say(f"Evaluation {res['job_id']} completed", style="green")
        o.table(
            None,
            ["metric", "value"],
            [[k, v] for k, v in sorted(res["metrics"].items())]
            + [[f"param {k}", v] for k, v in sorted(res["params"].items())],
        )
        if res.get("mlflow_ui_link"):
            o.say(f"MLflow run: {res['mlflow_ui_link']}")
    elif run and wait:
        job = result["job"]
        o.say(f"Evaluation {job['job_id']} {job['status']}", style="red")
        if job.get("error"):
            o.note(f"why: {job['error']}", style="red")
        for line in result.get("log_tail", []):
            o.note(f"  {line}")
    if run and wait and result["job"]["status"] != "completed":
        raise typer.Exit(Exit.FAILED)


class Order(StrEnum):
    desc = "desc"
    asc = "asc"


@app.command()
def leaderboard(
    ctx: typer.Context,
    board: Annotated[str, typer.Option(help="Which leaderboard.")] = "default",
    metric: Annotated[
        str | None, typer.Option(help="Rank by (default: the most reported).")
    ] = None,
    order: Annotated[Order, typer.Option(help="desc: higher is better.")] = Order.desc,
    every_run: Annotated[bool, typer.Option(help="Every run, not each user's best.")] = False,
    param: Annotated[
        list[str] | None, typer.Option(help="Only runs with this param, name=value (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: Json = False,
) -> None:
    """The ranking of a leaderboard."""
    o = out(ctx, as_json)
    with closing(Api()) as api:
        ranked = lb.ranking(api, board, metric, order.value, every_run, limit, param or [])
    if o.json:
        o.emit(ranked)
        return
    o.table(
        f"Leaderboard {ranked['leaderboard']}: {ranked['metric'] or '-'} ({ranked['order']}), "
        f"{ranked['total']} ranked",
        ["rank", "score", "user", "job", "method", "finished"],
        [
            [
                e["rank"],
                e["score"],
                e["user_id"],
                e["job_id"],
                (e.get("metadata") or {}).get("method"),
                when(e.get("finished_at")),
            ]
            for e in ranked["entries"]
        ],
    )


# --- the entry point -------------------------------------------------------------------------


def main() -> None:
    """Run the command; every failure ends as one line on stderr and its exit code."""
    try:
        code = app(prog_name="crucible", standalone_mode=False)
    except CliError as exc:
        err.print(Text(f"crucible: {exc.message}", style="red"))
        sys.exit(int(exc.code))
    except typer.Abort:  # end of input where some was asked for (Ctrl-C is exit 130)
        err.print(Text("crucible: no input where some was needed", style="red"))
        sys.exit(int(Exit.USAGE))
    except KeyboardInterrupt:
        err.print(Text("crucible: interrupted", style="yellow"))
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors: shown as click shows them
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(Text(f"crucible: {clean(exc)}", style="red"))
        sys.exit(getattr(exc, "exit_code", Exit.USAGE))
    except Exception as exc:  # a bug of ours: one line, the traceback on request
        if os.environ.get("CRUCIBLE_DEBUG"):
            traceback.print_exc()
        err.print(
            Text(f"crucible: internal error: {type(exc).__name__}: {clean(exc)}", style="red")
        )
        sys.exit(int(Exit.BUG))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
