"""The one place adapters are chosen.

``build(settings)`` returns a :class:`Container` whose members are created on first use
(``cached_property``), so a Lambda cold start pays only for what its first request
touches (no boto3 import for a health check). A service that needs a port only for
some of its calls (the training service's job runner and predictor, the push service's
notifier) gets it through :class:`_Deferred`, which builds the member on the first call.
Every runtime (API, event handlers, containers, the local stack) gets its services here.
A composition root that has something of its own to plug in (the local stack's
in-process predictor and WebSocket hub) passes it to :func:`build`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.dynamodb.table import Table
    from shared.adapters.push import LocalHub
    from shared.ports import (
        DatasetRepository,
        DeadlineRepository,
        EventBus,
        IntentParser,
        JobRecordRepository,
        JobRepository,
        JobRunner,
        Notifier,
        ObjectStore,
        Predictor,
        RateLimiter,
        UsageKeys,
        UserRepository,
    )
    from shared.services.audio import AudioService
    from shared.services.audio_uploads import AudioUploadService
    from shared.services.auth import AuthService
    from shared.services.chat import ChatService
    from shared.services.datasets import DatasetService
    from shared.services.evaluations import EvaluationService
    from shared.services.inference import InferenceService
    from shared.services.jobs import JobStates
    from shared.services.plans import PlanService
    from shared.services.projects import ProjectService, TagService
    from shared.services.push import PushService
    from shared.services.reconciler import Reconciler
    from shared.services.training import TrainingService
    from shared.services.workflows import WorkflowService

PredictorFactory = Callable[["Container"], "Predictor"]


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        hub: LocalHub | None = None,
        local_predictor: PredictorFactory | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self._local_predictor = local_predictor
        self._clients: dict[tuple, Any] = {}

    # --- AWS clients (boto3 honours AWS_ENDPOINT_URL: AWS, LocalStack or the emulator)
    def client(self, service: str, **kwargs: Any) -> Any:
        """One boto3 client per service and options; ``config`` (a botocore ``Config``)
        is merged over the defaults below."""
        key = (service, tuple(sorted(kwargs.items())))
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=5,
                read_timeout=30,
                # a connection kept for each thread that may call at once (the local
                # stack's 40 request threads and its dispatcher), not a new one past 10
                max_pool_connections=64,
            )
            if "config" in kwargs:
                config = config.merge(kwargs.pop("config"))
            self._clients[key] = boto3.session.Session().client(
                service, region_name=self.settings.aws_region, config=config, **kwargs
            )
        return self._clients[key]

    # --- adapters ------------------------------------------------------------
    @cached_property
    def table(self) -> Table:
        from shared.adapters.dynamodb.table import Table

        return Table(self.client("dynamodb"), self.settings.names.table)

    @cached_property
    def uploads(self) -> ObjectStore:
        from shared.adapters.s3 import S3ObjectStore

        return S3ObjectStore(self.client("s3"), self.settings.names.uploads_bucket)

    @cached_property
    def artifacts(self) -> ObjectStore:
        from shared.adapters.s3 import S3ObjectStore

        return S3ObjectStore(self.client("s3"), self.settings.names.artifacts_bucket)

    @cached_property
    def notifier(self) -> Notifier:
        from shared.adapters.push import (
            CLIENT_CONFIG,
            PROBE_CONFIG,
            ApiGatewayNotifier,
            LocalHubNotifier,
        )

        if endpoint := self.settings.ws_management_endpoint:
            return ApiGatewayNotifier(
                self.client("apigatewaymanagementapi", endpoint_url=endpoint, config=CLIENT_CONFIG),
                lambda: self.client(
                    "apigatewaymanagementapi", endpoint_url=endpoint, config=PROBE_CONFIG
                ),
            )
        if self.hub is None:
            raise RuntimeError(
                "no push channel: set CRUCIBLE_WS_MANAGEMENT_ENDPOINT, or run inside the local dev server"
            )
        return LocalHubNotifier(self.hub)

    @cached_property
    def bus(self) -> EventBus:
        from shared.adapters.eventbridge import EventBridgeBus

        return EventBridgeBus(self.client("events"), self.settings.names.event_bus)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from shared.adapters.dynamodb.ratelimit import DynamoRateLimiter

        return DynamoRateLimiter(self.table)

    @cached_property
    def request_counter(self) -> RateLimiter:
        """The per-user request windows: :attr:`rate_limiter`, counted here and sent in
        batches (shared/services/ratelimit.py). Sign-in limits count each one there."""
        from shared.services.ratelimit import BatchedRateLimiter

        return BatchedRateLimiter(self.rate_limiter)

    @cached_property
    def usage_keys(self) -> UsageKeys:
        """Users' keys into the REST API's usage plans (the authorizer's; AWS only): the
        plans' ids from ``CRUCIBLE_USAGE_PLANS`` (set by the CDK app), each key's value
        derived with the JWT secret (shared/adapters/apikeys.py)."""
        from shared.adapters.apikeys import ApiGatewayUsageKeys

        if not self.settings.usage_plans:
            raise RuntimeError("no usage plans: set CRUCIBLE_USAGE_PLANS (JSON, plan -> id)")
        return ApiGatewayUsageKeys(
            self.client("apigateway"),
            stage=self.settings.stage,
            usage_plans=dict(self.settings.usage_plans),
            secret=self.jwt_secret,
        )

    @cached_property
    def user_repository(self) -> UserRepository:
        """One per process: it caches users briefly, and a role change made here shows at once."""
        from shared.adapters.dynamodb.identity import DynamoUsers

        return DynamoUsers(self.table)

    @cached_property
    def job_repository(self) -> JobRepository:
        from shared.adapters.dynamodb.jobs import DynamoJobs

        return DynamoJobs(self.table)

    @cached_property
    def job_records(self) -> JobRecordRepository:
        from shared.adapters.dynamodb.jobs import DynamoJobRecords

        return DynamoJobRecords(self.table)

    @cached_property
    def dataset_repository(self) -> DatasetRepository:
        from shared.adapters.dynamodb.datasets import DynamoDatasets

        return DynamoDatasets(self.table)

    @cached_property
    def job_runner(self) -> JobRunner:
        s = self.settings
        if s.job_runner == "batch":
            from shared.adapters.runners import BatchJobRunner

            names = s.names
            return BatchJobRunner(
                self.client("batch"),
                queues=names.job_queues,
                definitions={
                    job_type: names.job_definition(job_type)
                    for job_type in ("trainer", "evaluator")
                },
            )
        import os
        import sys
        from pathlib import Path

        from shared.adapters.runners import LocalJobRunner

        paths = [str(Path(p).resolve()) for p in (s.local_trainer_path, s.local_evaluator_path)]
        return LocalJobRunner(
            self.bus,
            {
                "trainer": [sys.executable, "-m", "crucible_trainer"],
                "evaluator": [sys.executable, "-m", "crucible_evaluator"],
            },
            env={
                "PYTHONPATH": os.pathsep.join(paths),
                "CRUCIBLE_CHECKPOINT_INTERVAL_S": str(s.checkpoint_interval_s),
            },
            log_dir=Path(s.data_dir) / "jobs",
            grace_s=s.job_stop_grace_s,
            queues=s.names.job_queues,
        )

    @cached_property
    def predictor(self) -> Predictor:
        s = self.settings
        if s.predictor == "lambda":
            from shared.adapters.runners import LambdaPredictor

            return LambdaPredictor(self.client("lambda"), s.names.inference_function)
        if self._local_predictor is None:
            raise RuntimeError(
                "no predictor: set CRUCIBLE_PREDICTOR=lambda, or run inside the local dev server"
            )
        return self._local_predictor(self)

    # --- secrets ---------------------------------------------------------------
    @cached_property
    def jwt_secret(self) -> str:
        if self.settings.jwt_secret is not None:
            return self.settings.jwt_secret.get_secret_value()
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(self.settings.jwt_secret_arn, max_age=300))

    @cached_property
    def internal_secret(self) -> str | None:
        """The X-Internal-Auth secret (seed 002's training callback), if one is configured."""
        s = self.settings
        if s.internal_secret is not None:
            return s.internal_secret.get_secret_value()
        if s.internal_secret_arn:
            from aws_lambda_powertools.utilities.parameters import get_secret

            return str(get_secret(s.internal_secret_arn, max_age=300))
        return None

    # --- services --------------------------------------------------------------
    @cached_property
    def auth(self) -> AuthService:
        from shared.services.auth import AuthService

        return AuthService(self.user_repository, self.settings, self.jwt_secret)

    @cached_property
    def projects(self) -> ProjectService:
        from shared.adapters.dynamodb.projects import DynamoProjects
        from shared.services.projects import ProjectService

        return ProjectService(DynamoProjects(self.table))

    @cached_property
    def tags(self) -> TagService:
        from shared.adapters.dynamodb.projects import DynamoTags
        from shared.services.projects import TagService

        return TagService(DynamoTags(self.table))

    @cached_property
    def audio(self) -> AudioService:
        from shared.adapters.dynamodb.projects import DynamoTags
        from shared.adapters.dynamodb.recordings import DynamoAudioFiles
        from shared.services.audio import AudioService

        return AudioService(
            DynamoAudioFiles(self.table),
            DynamoTags(self.table),
            self.uploads,
            self.artifacts,
            self.bus,
            self.push,
            deadlines=self.deadlines,
            deadline_s=self.settings.analysis_deadline_s,
            max_retries=self.settings.reconcile_max_retries,
        )

    @cached_property
    def deadlines(self) -> DeadlineRepository:
        """Deadlines of analyses and training jobs in flight, for the reconciler."""
        from shared.adapters.dynamodb.deadlines import DynamoDeadlines

        return DynamoDeadlines(self.table)

    @cached_property
    def reconciler(self) -> Reconciler:
        """Settles whatever overstayed its bound (functions/events/reconciler.py, on a schedule)."""
        from shared.services.reconciler import Reconciler, batch_settler

        return Reconciler(
            self.deadlines,
            {
                "analysis": self.audio.reconcile,
                "training": self.training.reconcile,
                "batch": batch_settler(self.inference, self.job_repository, self.deadlines),
            },
            {
                "evaluation": lambda now: self.evaluations.sweep(now),
                "dataset": lambda _now: self.datasets.sweep(),
            },
            batch_size=self.settings.reconcile_batch_size,
        )

    @cached_property
    def audio_uploads(self) -> AudioUploadService:
        from shared.adapters.dynamodb.recordings import DynamoAudioFiles
        from shared.services.audio_uploads import AudioUploadService

        return AudioUploadService(
            DynamoAudioFiles(self.table),
            self.uploads,
            self.audio,
            max_bytes=self.settings.max_audio_bytes,
            max_duration_s=self.settings.max_audio_duration_s,
        )

    @cached_property
    def datasets(self) -> DatasetService:
        from shared.services.datasets import DatasetService

        s = self.settings
        return DatasetService(
            self.dataset_repository,
            self.uploads,
            max_bytes=s.max_request_bytes,
            max_direct_bytes=s.max_dataset_bytes,
            projects=self.projects,
            push=self.push,  # ready or failed, told to the owner
            upload_deadline_s=s.dataset_upload_deadline_s,
            ingest_deadline_s=s.dataset_ingest_deadline_s,
        )

    @cached_property
    def jobs(self) -> JobStates:
        from shared.services.jobs import JobStates

        return JobStates(self.job_repository)

    @cached_property
    def training(self) -> TrainingService:
        from shared.services.jobs import JobBounds
        from shared.services.plans import PlanJobLimits
        from shared.services.training import TrainingService

        return TrainingService(
            self.jobs,
            self.job_repository,
            self.job_records,
            self.datasets,
            self.artifacts,
            _Deferred(self, "job_runner"),  # reading jobs needs no runner
            self.push,
            _Deferred(self, "predictor"),  # nor a predictor
            projects=self.projects,
            limits=PlanJobLimits(self.plans),  # the user's plan: concurrency, GPU hours
            max_inference_bytes=self.settings.max_inference_bytes,
            deadlines=self.deadlines,
            bounds=JobBounds(
                queued_deadline_s=self.settings.training_queued_deadline_s,
                check_interval_s=self.settings.training_check_interval_s,
                max_resubmits=self.settings.reconcile_max_retries,
            ),
        )

    @cached_property
    def evaluations(self) -> EvaluationService:
        from shared.adapters.dynamodb.evaluations import (
            DynamoEvaluations,
            DynamoLeaderboards,
            DynamoSubmissions,
        )
        from shared.services.evaluations import EvaluationLimits, EvaluationService

        s = self.settings
        return EvaluationService(
            DynamoSubmissions(self.table),
            DynamoEvaluations(self.table),
            DynamoLeaderboards(self.table),
            self.uploads,
            self.artifacts,
            _Deferred(self, "job_runner"),  # reading jobs needs no runner
            self.push,
            limits=EvaluationLimits(
                classes=s.resource_classes,
                grace_s=s.evaluation_grace_s,
                max_active=s.max_active_evaluations,
                per_hour=s.submissions_per_hour,
                max_bytes=s.max_submission_bytes,
            ),
            mlflow_ui_url=s.mlflow_ui_url,
        )

    @cached_property
    def push(self) -> PushService:
        from shared.adapters.dynamodb.push import DynamoConnections, DynamoEventLog, DynamoOwners
        from shared.services.push import PushService

        s = self.settings
        return PushService(
            DynamoConnections(self.table, s.ws_connection_ttl_s),
            DynamoEventLog(self.table, s.event_ttl_s),
            _Deferred(self, "notifier"),  # publishing needs no push channel, only delivering
            DynamoOwners(self.table),
            self.user_repository,  # followers' current roles, re-checked on delivery
            max_connections_per_user=s.ws_max_connections_per_user,
        )

    @cached_property
    def plans(self) -> PlanService:
        """Seed 003's plans: a user's request windows and job caps, usage, profile.
        ``CRUCIBLE_RATE_LIMIT_PER_MINUTE`` and ``CRUCIBLE_MAX_ACTIVE_JOBS``, when set
        explicitly, override every plan's own figure (shared/services/plans.py)."""
        from shared.adapters.dynamodb.recordings import DynamoAudioFiles
        from shared.plans import build_plans
        from shared.services.plans import PlanService

        s = self.settings
        return PlanService(
            self.user_repository,
            self.job_repository,
            self.dataset_repository,
            DynamoAudioFiles(self.table),
            build_plans(s.plan_limits),
            request_limit=s.rate_limit_per_minute,
            active_jobs=s.max_active_jobs,
        )

    @cached_property
    def inference(self) -> InferenceService:
        """Seed 003's predictions and batches; image URLs fetched by the safe fetcher."""
        from shared.adapters.urlfetch import SafeImageFetcher
        from shared.services.inference import InferenceService

        s = self.settings
        return InferenceService(
            self.training,
            self.artifacts,
            self.uploads,
            SafeImageFetcher(
                timeout_s=s.url_fetch_timeout_s,
                allow_loopback_http=s.url_fetch_allow_loopback_http_for_testing,
            ),
            self.bus,
            _Deferred(self, "predictor"),  # reading a batch needs no predictor
            uploads_bucket=s.names.uploads_bucket,
            max_image_bytes=s.max_inference_bytes,
            max_batch_images=s.max_batch_images,
        )

    @cached_property
    def workflows(self) -> WorkflowService:
        """Seed 003's workflows: training jobs in seed 003's words."""
        from shared.services.workflows import WorkflowService

        return WorkflowService(self.training, self.user_repository)

    @cached_property
    def intent_parser(self) -> IntentParser:
        """Seed 003's chat reads messages by rules, offline (``CRUCIBLE_INTENT_PARSER=rules``),
        or with Amazon Bedrock (``bedrock``: Converse with a tool), which falls back to the
        rules on any error; its client gives up fast, so a chat turn stays short."""
        from shared.intent import RulesParser

        s = self.settings
        if s.intent_parser != "bedrock":
            return RulesParser()
        import boto3
        from botocore.config import Config

        from shared.adapters.bedrock import BedrockIntentParser

        client = boto3.session.Session().client(
            "bedrock-runtime",
            region_name=s.aws_region,
            config=Config(
                retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=8
            ),
        )
        return BedrockIntentParser(client, s.bedrock_model_id, fallback=RulesParser())

    @cached_property
    def chat(self) -> ChatService:
        """Seed 003's chat: sessions in the table, intents through the parser, workflows
        started through the workflow service."""
        from shared.adapters.dynamodb.chat import DynamoChatSessions
        from shared.services.chat import ChatService

        return ChatService(
            DynamoChatSessions(self.table),
            self.intent_parser,
            self.datasets,
            _Deferred(self, "workflows"),  # reading a chat needs no workflow service
            max_message_chars=self.settings.chat_max_message_chars,
        )


class _Deferred:
    """Stands in for one of the container's members and builds it on first use."""

    def __init__(self, container: Container, member: str) -> None:
        self._container, self._member = container, member

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._container, self._member), name)


def build(
    settings: Settings,
    *,
    hub: LocalHub | None = None,
    local_predictor: PredictorFactory | None = None,
) -> Container:
    return Container(settings, hub=hub, local_predictor=local_predictor)
