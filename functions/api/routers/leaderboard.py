"""Seed 004's leaderboard API: submissions, the jobs that evaluate them, and the ranking.

Mounted twice (functions/api/app.py): at the seed's own root paths (``/submissions``,
``/jobs``, ``/leaderboard``) and under ``/api/v1/leaderboard``. Seed 004's static tokens
(``API_TOKENS``) and the platform's JWTs both authenticate.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse

from functions.api.deps import CurrentUser, Services
from functions.api.routers.common import ErrorOut
from functions.api.routers.leaderboard_schemas import (
    JobCreate,
    JobCreated,
    JobListOut,
    JobStatusOut,
    LeaderboardOut,
    ResultsOut,
    SubmissionOut,
)
from shared.errors import InvalidInput

router = APIRouter(tags=["seed 004: leaderboard"])
ranking = APIRouter(tags=["seed 004: leaderboard"])
_e400 = {400: {"model": ErrorOut}, 429: {"model": ErrorOut}}
_e404 = {404: {"model": ErrorOut}}
_PARAM = re.compile(r"^param\.([A-Za-z0-9_.\-]{1,100})$")


@router.post("/submissions", response_model=SubmissionOut, responses=_e400)
def submit(
    principal: CurrentUser,
    c: Services,
    files: Annotated[list[UploadFile], File(description=".py, .yaml/.yml, .zip or .tar.gz")],
    entrypoint: Annotated[str, Form(max_length=300, description="e.g. main.py")],
    config_file: Annotated[str, Form(max_length=300, description="e.g. config.yaml")],
    metadata: Annotated[
        str | None,
        Form(
            description='JSON object, e.g. {"method":"padim"}; shown on the public leaderboard '
            'with the results ("leaderboard": "<name>" picks the board)'
        ),
    ] = None,
) -> SubmissionOut:
    """Send code to evaluate: 100 MB in all; archives unpack at the root beside the other
    files; the entrypoint and config must be among them. 10 per user in any 60 minutes."""
    sent = []
    for f in files:
        f.file.seek(0, 2)
        size = f.file.tell()
        f.file.seek(0)
        sent.append((f.filename or "", f.file, size))
    sub = c.evaluations.submit(principal, sent, entrypoint, config_file, metadata)
    return SubmissionOut(submission_id=sub.id)


@router.post("/jobs", response_model=JobCreated, responses=_e400)
def create_job(body: JobCreate, principal: CurrentUser, c: Services) -> JobCreated:
    """Evaluate a submission of yours; at most 3 of your jobs pending or running at once."""
    job = c.evaluations.create_job(principal, body.submission_id, body.config.resource_class)
    return JobCreated(job_id=job.id, status=job.status)


@router.get("/jobs", response_model=JobListOut)
def list_jobs(
    principal: CurrentUser, c: Services, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> JobListOut:
    """Your jobs, newest first."""
    return JobListOut(jobs=[JobStatusOut.of(j) for j in c.evaluations.list(principal, limit)])


@router.get("/jobs/{job_id}/status", response_model=JobStatusOut, responses=_e404)
def job_status(job_id: str, principal: CurrentUser, c: Services) -> JobStatusOut:
    return JobStatusOut.of(c.evaluations.get(principal, job_id))


@router.get(
    "/jobs/{job_id}/logs",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **_e404},
)
def job_logs(job_id: str, principal: CurrentUser, c: Services) -> PlainTextResponse:
    """One ``[YYYY-mm-dd HH:MM:SS] line`` per line the submission printed (stdout and
    stderr), so far; yours only."""
    return PlainTextResponse(c.evaluations.logs(principal, job_id))


@router.get("/jobs/{job_id}/results", response_model=ResultsOut, responses=_e404)
def job_results(job_id: str, principal: CurrentUser, c: Services) -> ResultsOut:
    """The MLflow run (links to its page and REST record) and what it logged."""
    return ResultsOut(**c.evaluations.results(principal, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobStatusOut,
    responses={**_e404, 409: {"model": ErrorOut}},
)
def cancel_job(job_id: str, principal: CurrentUser, c: Services) -> JobStatusOut:
    """Stop a pending or running job: it ends ``cancelled`` and its evaluator is stopped."""
    return JobStatusOut.of(c.evaluations.cancel(principal, job_id))


@router.post(
    "/jobs/{job_id}/rerun",
    response_model=JobCreated,
    responses={**_e404, 409: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
def rerun_job(job_id: str, principal: CurrentUser, c: Services) -> JobCreated:
    """Run an ended job's submission again, in the same resource class: a new job."""
    job = c.evaluations.rerun(principal, job_id)
    return JobCreated(job_id=job.id, status=job.status)


def leaderboard(
    request: Request,
    principal: CurrentUser,
    c: Services,
    metric: Annotated[
        str | None, Query(max_length=250, description="default: the metric most runs report")
    ] = None,
    order: Annotated[Literal["desc", "asc"], Query(description="desc: higher is better")] = "desc",
    board: Annotated[
        str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$", description="metadata.leaderboard")
    ] = "default",
    every_run: Annotated[bool, Query(description="every run, not each user's best")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> LeaderboardOut:
    """Completed jobs ranked by one metric; filter on params with ``param.<name>=<value>``
    (e.g. ``param.dataset=mvtec_ad``). Public to every signed-in user; code and logs are not."""
    filters = {}
    for key, value in request.query_params.multi_items():
        found = _PARAM.match(key)
        if found:
            filters[found.group(1)] = value
        elif key.startswith("param"):
            raise InvalidInput(f"'{key}': filter params as param.<name>=<value>", field=key)
    out = c.evaluations.leaderboard(
        board, metric=metric, order=order, filters=filters, every_run=every_run, limit=limit
    )
    return LeaderboardOut(**out)


ranking.add_api_route("/leaderboard", leaderboard, methods=["GET"], response_model=LeaderboardOut)
