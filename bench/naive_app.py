"""The baseline for bench/cold_start.py: Crucible's own routes wired the naive way —
every dependency imported eagerly and every AWS client and service created at import
time, as many Lambda handlers are written. Not used by Crucible itself."""

import argon2  # noqa: F401 - eager, as the naive style goes
import boto3  # noqa: F401
import jwt  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from mangum import Mangum

from functions.api.app import create_app
from shared.settings import load_settings
from shared.wiring import build

logger = Logger(service="naive")
metrics = Metrics(namespace="naive", service="naive")

settings = load_settings()
container = build(settings)
for member in (
    "table",
    "uploads",
    "artifacts",
    "bus",
    "rate_limiter",
    "auth",
    "projects",
    "tags",
    "push",
    "audio",
    "datasets",
    "jobs",
    "training",
    "job_runner",
):
    getattr(container, member)  # every client and service up front

app = create_app(settings, container)
_mangum = Mangum(app, lifespan="off")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    return _mangum(event, context)
