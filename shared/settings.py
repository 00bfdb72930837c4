"""Runtime configuration, validated once at start.

Every runtime (API Lambda, event Lambdas, Batch containers, the local stack) reads
its configuration from environment variables through :class:`Settings`. Nothing
else in the code base reads ``os.environ`` for configuration.

AWS endpoints are *not* configured here: boto3 honours ``AWS_ENDPOINT_URL`` on its
own, so pointing the same code at real AWS, LocalStack or the embedded emulator is
a matter of that one standard variable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Role = Literal["user", "researcher", "admin"]


@dataclass(frozen=True)
class ResourceNames:
    """Names of the AWS resources of one stage.

    The CDK app and the local bootstrap both take names from here, so the code,
    the emulator and the deployed stacks agree without configuration.
    """

    table: str
    uploads_bucket: str
    artifacts_bucket: str
    events_queue: str
    events_dlq: str
    event_bus: str
    gpu_queue: str
    cpu_queue: str
    inference_function: str

    @property
    def job_queues(self) -> dict[str, str]:
        """The job runner's queues by kind: ``gpu`` (trainers) and ``cpu`` (evaluators)."""
        return {"gpu": self.gpu_queue, "cpu": self.cpu_queue}

    def job_definition(self, job_type: str) -> str:
        return self.table.removesuffix("-data") + f"-{job_type}"

    @classmethod
    def for_stage(cls, stage: str) -> ResourceNames:
        p = f"crucible-{stage}"
        return cls(
            table=f"{p}-data",
            uploads_bucket=f"{p}-uploads",
            artifacts_bucket=f"{p}-artifacts",
            events_queue=f"{p}-events",
            events_dlq=f"{p}-events-dlq",
            event_bus="default",
            gpu_queue=f"{p}-gpu",
            cpu_queue=f"{p}-cpu",
            inference_function=f"{p}-inference",
        )


_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def api_token_entry(entry: str) -> tuple[str, str]:
    """``(name, token)`` of one ``API_TOKENS`` entry, the one parsing of it.

    ``name=token`` splits at the first ``=`` (the token may contain ``=``, as base64 does);
    a bare ``token`` (seed 004's form, no ``=``) is named after a digest of itself, so its
    principal stays the same whatever the order of the list. Raises ValueError with what
    to fix.
    """
    name, sep, token = entry.partition("=")
    if not sep:
        name, token = "api-token-" + hashlib.sha256(entry.encode()).hexdigest()[:12], entry
    elif not _TOKEN_NAME.fullmatch(name):
        raise ValueError(
            "write each API token as 'token' or 'name=token', the name made of letters, "
            "digits, '_', '.' and '-' (64 at most)"
        )
    if len(token) < 8:
        raise ValueError(
            "each API token must be at least 8 characters (in 'name=token' the token is what "
            "follows the first '='; a token containing '=' needs a name in front)"
        )
    return name, token


@dataclass(frozen=True)
class ResourceClass:
    """What an evaluation job of one class may use (seed 004's ``resource_class``)."""

    name: str
    seconds: int  # wall time
    memory_mib: int
    vcpu: float


DEFAULT_RESOURCE_CLASSES = "small=1800:2048:1,medium=3600:4096:2"

# What a request body through the API can really be in AWS. API Gateway hands the API
# Lambda one JSON event of at most Lambda's synchronous payload, 6 MiB; a multipart or
# other binary body travels in it base64-encoded (4 bytes for 3), beside the headers
# (twice: headers and multiValueHeaders) and the request context. 128 KiB is kept for
# those (API Gateway caps headers at 10 KiB), so 4,620,288 bytes (4.4 MiB) of body:
# a file of about 4.4 MiB less its form fields. Larger files take the presigned routes.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
API_EVENT_ENVELOPE_BYTES = 128 * 1024
MAX_API_BODY_BYTES = (LAMBDA_PAYLOAD_BYTES - API_EVENT_ENVELOPE_BYTES) // 4 * 3

# What an evaluation's container gets on top of its class's memory: the worker's share
# (the submission's own bound is the class's MiB, in its cgroup where there is one).
EVALUATION_WORKER_MIB = 512
_CLASS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def parse_resource_classes(text: str) -> dict[str, ResourceClass]:
    """``small=1800:2048:1,medium=3600:4096:2`` (name=seconds:MiB:vCPU) as classes by name.
    Raises ValueError with what to fix."""
    classes: dict[str, ResourceClass] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, limits = entry.partition("=")
        parts = limits.split(":")
        try:
            seconds, memory, vcpu = int(parts[0]), int(parts[1]), float(parts[2])
            if len(parts) != 3 or not _CLASS_NAME.fullmatch(name):
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(
                f"'{entry}': write each class as name=seconds:MiB:vCPU, e.g. small=1800:2048:1 "
                "(the name lower-case letters, digits, '_' and '-')"
            ) from None
        if not (1 <= seconds <= 14 * 86_400 and 64 <= memory <= 1024 * 1024 and 0 < vcpu <= 192):
            raise ValueError(
                f"'{entry}': seconds must be 1 to {14 * 86_400}, MiB 64 to {1024 * 1024}, "
                "vCPU above 0 and at most 192"
            )
        classes[name] = ResourceClass(name, seconds, memory, vcpu)
    if not classes:
        raise ValueError("name at least one resource class, e.g. small=1800:2048:1")
    return classes


class SettingsError(RuntimeError):
    """Raised with a readable message when the environment holds a bad value."""


class Settings(BaseSettings):
    """Crucible's settings; every field is read from ``CRUCIBLE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CRUCIBLE_", extra="ignore", frozen=True)

    stage: str = Field("local", description="Deployment stage: local, dev, staging or prod.")
    aws_region: str = Field(
        "us-east-1",
        validation_alias=AliasChoices("CRUCIBLE_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )

    # Resource names default to the stage's conventional names (ResourceNames).
    table_name: str | None = None
    uploads_bucket: str | None = None
    artifacts_bucket: str | None = None
    events_queue: str | None = None

    # Auth. In AWS the secret comes from Secrets Manager (jwt_secret_arn); locally
    # `make dev` generates one and keeps it in the data directory.
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl_s: int = Field(3600, ge=60, le=86_400)
    refresh_token_ttl_s: int = Field(30 * 86_400, ge=3600, le=90 * 86_400)
    # Seed 004's API_TOKENS: comma-separated "token" or "name=token" entries.
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("CRUCIBLE_API_TOKENS", "API_TOKENS")
    )
    # Roles a person may give themselves at registration. Only "user" by default: a
    # researcher reads every family's recordings, so an administrator grants it (the admin
    # CLI, or PUT /users/{id}/role); "user,researcher" restores seed 001's open behaviour.
    # Admin is never self-registered.
    self_register_roles: Annotated[list[Role], NoDecode] = Field(default_factory=lambda: ["user"])
    internal_secret: SecretStr | None = None
    internal_secret_arn: str | None = None

    # WebSocket push: the API Gateway management endpoint
    # (https://{api-id}.execute-api.{region}.amazonaws.com/{stage}). Unset means
    # the local dev server's own WebSocket hub delivers the messages.
    ws_management_endpoint: str | None = None
    ws_connection_ttl_s: int = Field(2 * 3600, ge=60)
    # Connections one user may hold open at once (a browser tab, a CLI watch, seed 003's
    # socket per workflow): what one account can make the table keep and fan-out read.
    ws_max_connections_per_user: int = Field(20, ge=1, le=1000)
    event_ttl_s: int = Field(86_400, ge=60)

    # The largest request body the API takes: at most what the API Lambda's event can
    # carry (MAX_API_BODY_BYTES, 4.4 MiB); larger files (seed 001's recordings up to
    # max_audio_bytes, datasets) go straight to S3 with presigned URLs.
    max_request_bytes: int = Field(MAX_API_BODY_BYTES, ge=1024, le=MAX_API_BODY_BYTES)
    # Seed 001's audio limit, enforced on every upload path (API, presigned, multipart).
    max_audio_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    # Dataset archives sent straight to S3 with a presigned POST: at most what the ingest
    # function holds on its ephemeral storage (infra sizes it from this; Lambda's is 10 GiB).
    max_dataset_bytes: int = Field(9 * 1024**3, ge=1024, le=9 * 1024**3)
    # How long a dataset may stay `uploading` (from its presign: the POST's hour, then the
    # transfer) or `processing` (from its ingest's start: three 15-minute Lambda attempts)
    # before the reconciler fails it, with the reason.
    dataset_upload_deadline_s: int = Field(2 * 3600, ge=60)
    dataset_ingest_deadline_s: int = Field(3600, ge=60)
    # The longest recording taken in (every upload path) and ever decoded: a short file
    # that decodes to hours (FLAC of silence, a lying header) is refused, not expanded.
    max_audio_duration_s: int = Field(15 * 60, ge=1, le=4 * 3600)
    # Requests per user a minute for everyone, replacing the plans' own minute and hour
    # limits (seed 003's plans, shared/plans.py); 0 turns request limits off; unset: the plans'.
    rate_limit_per_minute: int | None = Field(None, ge=0)
    # Requests before authentication (register, login, token, refresh, the internal
    # callback), per client address and per account named; 0 turns it off.
    auth_rate_limit_per_minute: int = Field(20, ge=0)

    # Where jobs run: AWS Batch (SubmitJob/TerminateJob) or local subprocesses that
    # report the same "Batch Job State Change" events.
    job_runner: Literal["local", "batch"] = "local"
    job_stop_grace_s: int = Field(
        30, ge=1, le=120, description="SIGTERM -> SIGKILL, as Batch's stop timeout"
    )
    # Where checkpoints predict: the inference Lambda, or in this process.
    predictor: Literal["local", "lambda"] = "local"
    # Inputs travel inside the invoke payload (Lambda's limit is 6 MB, base64 adds a third).
    max_inference_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    # Training jobs any user may have active (pending, queued, running or stopping) at once,
    # replacing the plans' concurrent workflows (shared/plans.py); unset: the plan's.
    max_active_jobs: int | None = Field(None, ge=1)
    # An operator-configured folder of weights files (timm, ultralytics) that a job may
    # start from, named by file name only; unset means models start from their config.
    weights_dir: str | None = None
    # How often a trainer saves its "last" checkpoint, unless a job's config sets its own
    # (checkpoint_interval_s): it bounds only the work lost to a host that dies without
    # warning, since the last checkpoint is also saved at the end and on SIGTERM (a stop,
    # a spot reclaim's two-minute notice). Each save is a new object version kept until
    # the bucket's expiry, so a short interval on a large model costs more than the GPU.
    checkpoint_interval_s: float = Field(600.0, ge=5, le=86_400)
    local_trainer_path: str = (
        "containers/gpu-trainer"  # where the local runner finds crucible_trainer
    )
    # The web console's build (console/, `make console`) the local stack serves at /.
    console_dir: str = "console/dist"

    # Seed 004's leaderboard. Resource classes as name=seconds:MiB:vCPU, comma-separated:
    # the wall-time, memory and CPU limits an evaluation job of that class runs under.
    resource_classes: Annotated[dict[str, ResourceClass], NoDecode] = Field(
        default_factory=lambda: parse_resource_classes(DEFAULT_RESOURCE_CLASSES)
    )
    # How long past its class's time limit an evaluation job may stay pending or running
    # before the sweeper ends it failed (queueing, starting, writing results).
    evaluation_grace_s: int = Field(600, ge=10)
    max_active_evaluations: int = Field(3, ge=1)  # pending or running, per user (seed 004)
    submissions_per_hour: int = Field(10, ge=1)  # per user, a rolling 60-minute window
    max_submission_bytes: int = Field(100 * 1024 * 1024, ge=1024)  # all files of one submission
    # Everything one evaluation may print (stdout and stderr together) before it is stopped.
    evaluation_max_log_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # The largest file a submission may write (its output directory and /tmp).
    evaluation_max_file_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # The interpreter submissions run with (its prefix is mounted read-only in the sandbox):
    # the image's own python; locally `make` builds .sandbox/ (numpy, scipy, scikit-learn,
    # pandas, PyYAML, Pillow, torch, torchvision).
    sandbox_python: str = "/usr/local/bin/python3"
    # Run submissions even where the sandbox cannot isolate them (no bubblewrap, no user
    # namespaces): for an operator's own trusted code only; logged loudly on every job.
    allow_unsandboxed: bool = False
    # Where people open MLflow (the results' links): the local UI `make dev` serves, or
    # the SageMaker managed MLflow server's URL in AWS.
    mlflow_ui_url: str | None = None
    local_evaluator_path: str = "containers/evaluator"  # where the local runner finds it

    # Everything settles (shared/services/reconciler.py, every minute in AWS, every
    # ~10 s locally): past these bounds the reconciler asks the runner, then retries what
    # is retryable up to reconcile_max_retries times and fails the rest with a reason.
    # An analysis still `processing` this long after it was queued has lost its worker
    # (longer than the analysis Lambda's 15 minutes): it is queued again, or failed.
    analysis_deadline_s: int = Field(20 * 60, ge=2)
    # A training job `queued` this long without a runner job (the API died before it
    # submitted it) is submitted again, or failed; one with a runner job is checked then.
    training_queued_deadline_s: int = Field(10 * 60, ge=2)
    # How often the runner is asked about each queued, running or stopping training job
    # (a lost "Batch Job State Change", a runner that forgot its job, a stop not taken).
    training_check_interval_s: int = Field(5 * 60, ge=2)
    reconcile_max_retries: int = Field(2, ge=0, le=10)
    reconcile_batch_size: int = Field(100, ge=1, le=1000)  # overdue items settled per run

    # Seed 003's chat (shared/services/chat.py): messages are read by rules, offline
    # ("rules"), or by Amazon Bedrock's Converse API with a tool ("bedrock", which falls back
    # to the rules on any error) using bedrock_model_id (a model or inference profile id).
    intent_parser: Literal["rules", "bedrock"] = "rules"
    bedrock_model_id: str = Field("anthropic.claude-3-haiku-20240307-v1:0", min_length=1)
    chat_max_message_chars: int = Field(4000, ge=100, le=100_000)

    # Seed 003's inference (shared/services/inference.py): an image named by URL is fetched
    # over https from a public address only (shared/adapters/urlfetch.py), within
    # url_fetch_timeout_s; a batch holds at most max_batch_images (each max_inference_bytes).
    url_fetch_timeout_s: float = Field(10.0, gt=0, le=25)
    max_batch_images: int = Field(20, ge=1, le=1000)
    # FOR TESTS ON ONE MACHINE ONLY: fetch http:// URLs and loopback addresses (127.0.0.0/8,
    # ::1) too. Private, link-local (metadata) and every other address stay refused. A
    # deployment (CRUCIBLE_PREDICTOR=lambda) refuses to start with it.
    url_fetch_allow_loopback_http_for_testing: bool = False

    @field_validator("url_fetch_allow_loopback_http_for_testing")
    @classmethod
    def _loopback_fetches_only_locally(cls, v: bool, info) -> bool:
        if v and info.data.get("predictor") == "lambda":
            raise ValueError("is for local tests only, never where predictions run in Lambda")
        return v

    # Seed 003's plans (shared/plans.py: free, pro, enterprise): changes to their limits as
    # JSON, e.g. {"free": {"requests_per_minute": 5, "gpu_hours": 0.5}}. Set explicitly,
    # rate_limit_per_minute (N a minute for everyone, no hourly window; 0: no request
    # limits) and max_active_jobs replace every plan's own figure: an operator's override.
    plan_limits: Annotated[
        dict[
            Literal["free", "pro", "enterprise"],
            dict[
                Literal[
                    "requests_per_minute",
                    "requests_per_hour",
                    "concurrent_workflows",
                    "gpu_hours",
                    "storage_gb",
                ],
                Annotated[float, Field(ge=0)],
            ],
        ],
        NoDecode,
    ] = Field(default_factory=dict)

    @field_validator("plan_limits", mode="before")
    @classmethod
    def _plan_limits_json(cls, v: object) -> object:
        import json

        return json.loads(v) if isinstance(v, str) else v  # bad JSON: a ValueError, named

    # The REST API's usage plans (AWS only; set by the CDK app): JSON, plan -> usage plan
    # id. The authorizer puts each user's API key in their plan's.
    usage_plans: Annotated[dict[Literal["free", "pro", "enterprise"], str], NoDecode] = Field(
        default_factory=dict
    )

    @field_validator("usage_plans", mode="before")
    @classmethod
    def _usage_plans_json(cls, v: object) -> object:
        import json

        return json.loads(v) if isinstance(v, str) else v

    # Local all-in-one mode.
    data_dir: str = ".crucible"
    mlflow_tracking_uri: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"

    @field_validator("resource_classes", mode="before")
    @classmethod
    def _classes(cls, v: object) -> object:
        return parse_resource_classes(v) if isinstance(v, str) else v

    @field_validator("api_tokens", "self_register_roles", "cors_origins", mode="before")
    @classmethod
    def _split_csv(cls, v: object) -> object:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("stage")
    @classmethod
    def _stage_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,20}", v):
            raise ValueError("must be lower-case letters, digits and '-', 2-21 characters")
        return v

    @field_validator("api_tokens")
    @classmethod
    def _tokens_valid(cls, v: list[str]) -> list[str]:
        names: dict[str, str] = {}
        for entry in v:
            name, token = api_token_entry(entry)  # the parsing the API authenticates with
            if names.setdefault(token, name) != name:
                raise ValueError(f"one API token is listed under two names: {names[token]}, {name}")
        return v

    @field_validator("jwt_secret")
    @classmethod
    def _secret_strength(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return v

    @model_validator(mode="after")
    def _secret_present(self) -> Settings:
        if self.jwt_secret is None and self.jwt_secret_arn is None:
            raise ValueError("set CRUCIBLE_JWT_SECRET (32+ characters) or CRUCIBLE_JWT_SECRET_ARN")
        return self

    @cached_property
    def api_token_names(self) -> dict[str, str]:
        """Each static API token (seed 004's ``API_TOKENS``) and the name of its principal."""
        return {token: name for name, token in map(api_token_entry, self.api_tokens)}

    @cached_property
    def names(self) -> ResourceNames:
        d = ResourceNames.for_stage(self.stage)
        return replace(
            d,
            table=self.table_name or d.table,
            uploads_bucket=self.uploads_bucket or d.uploads_bucket,
            artifacts_bucket=self.artifacts_bucket or d.artifacts_bucket,
            events_queue=self.events_queue or d.events_queue,
        )


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"CRUCIBLE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
