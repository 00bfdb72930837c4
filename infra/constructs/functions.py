"""Crucible's Lambda functions, each with its own least-privilege role, log group,
Powertools settings (its own service name) and X-Ray tracing.

The event handlers are the modules that ``shared.routing.ROUTES`` name, so a new
route's handler gets its function without an edit here; ``EVENT_HANDLERS`` sizes
those that need more than a small zip function."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import packaging
from infra.config import ASYNC_EVENT_HANDLERS, EnvironmentConfig
from infra.constructs import nag
from infra.constructs.refs import CONNECTIONS, IDENTITY, TOPIC_OWNERS, DataRefs, event_keys
from shared import keys
from shared.adapters.dynamodb.datasets import ACTIVE as DATASETS_ACTIVE
from shared.adapters.dynamodb.evaluations import ACTIVE as EVALUATIONS_ACTIVE
from shared.routing import ROUTES
from shared.settings import ResourceNames, Settings


@dataclass(frozen=True)
class EventHandler:
    """How a handler module of ``functions/events`` runs in Lambda."""

    id: str | None = None  # construct id; by default the module's name in CamelCase
    memory: int = 512
    timeout: int = 30
    dockerfile: str | None = None  # an image function built from it, else zip + core layer
    ephemeral_mib: int | None = None  # /tmp, when Lambda's 512 MiB is not enough


EVENT_HANDLERS = {
    "functions.events.s3_object": EventHandler(id="ObjectCreated"),  # its deployed name
    # the ingest holds the archive in /tmp (the bytes inspected are the bytes kept): room
    # for the largest a presign allows (max_dataset_bytes), plus 512 MiB of scratch
    "functions.events.datasets": EventHandler(
        memory=2048,
        timeout=900,
        ephemeral_mib=Settings.model_fields["max_dataset_bytes"].default // 2**20 + 512,
    ),
    "functions.events.analysis": EventHandler(
        memory=3008, timeout=900, dockerfile="functions/events/analysis.Dockerfile"
    ),
    # seed 003's batches: each image fetched and sent to the inference function in turn
    "functions.events.batch_inference": EventHandler(timeout=900),
}


# Bedrock's cross-region inference profiles: a model id "<prefix>.<foundation model id>".
INFERENCE_PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")

# DynamoDB actions by kind (the adapters call no others: no Scan; the one batch call is
# a listing page's BatchGetItem of the items its keys-only index rows name).
READ = ("GetItem", "Query", "BatchGetItem")
WRITE = ("PutItem", "UpdateItem", "DeleteItem")
# (bucket, object key pattern) pairs granted to one handler each.
OBJECT_PREFIXES = (
    ("uploads_bucket", "audio/*"),
    ("uploads_bucket", "datasets/*"),
    ("artifacts_bucket", "analysis/*"),
    ("artifacts_bucket", "jobs/*/checkpoints/*"),
    ("artifacts_bucket", "inference/*"),
)


def _token_users(data: DataRefs, fn: lambda_.IFunction) -> None:
    """What creating an API token's service user writes (``AuthService``, on a token's
    first use): the user and its TOKEN# lock, a new user's id block and its listing's
    counts."""
    data.grant_table(fn, ("PutItem",), keys=("USER#*", "TOKEN#*"))
    data.grant_table(fn, ("UpdateItem",), keys=("COUNTER#user#*", "COUNT#*#USER#*"))


def _image(dockerfile: str, **options) -> lambda_.DockerImageCode:
    """A Lambda image built from ``dockerfile`` with the repository as its context."""
    return lambda_.DockerImageCode.from_image_asset(
        str(packaging.ROOT), file=dockerfile, exclude=packaging.IMAGE_EXCLUDE, **options
    )


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env: EnvironmentConfig,
        names: ResourceNames,
        data: DataRefs,
    ) -> None:
        super().__init__(scope, id)
        self.env, self.names, self.data = env, names, data
        self.all: list[lambda_.Function] = []
        self._code = lambda_.Code.from_asset(packaging.code())
        core = lambda_.LayerVersion(
            self,
            "CoreDeps",
            code=lambda_.Code.from_asset(packaging.layer("events")),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_11],
            description="shared/ dependencies",
        )
        api = lambda_.LayerVersion(
            self,
            "ApiDeps",
            code=lambda_.Code.from_asset(packaging.layer("api")),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_11],
            description="API dependencies",
        )

        # Its reservation is the API's own share of the account's pool: whatever the
        # background does, this much stays for requests, and no more is taken by them.
        self.api = self.add(
            "Api",
            "functions.api.handler.handler",
            layers=[api],
            memory=1024,
            timeout=29,
            reserved=env.api_reserved_concurrency,
        )
        self.websocket = self.add("WebSocket", "functions.events.websocket.handler", layers=[core])
        # The REST API's Lambda authorizer on the routes that start work (its usage plans,
        # infra/constructs/api.py). Named, so that the API's authorizer calls it by ARN: a
        # reference would close a cycle (function -> its usage plans' ids -> the stage ->
        # the methods -> their authorizer -> the function).
        self.authorizer = self.add(
            "Authorizer", "functions.api.authorizer.handler", layers=[core], timeout=10
        )
        authorizer_name = f"crucible-{env.name}-authorizer"
        self.authorizer.node.default_child.function_name = authorizer_name
        self.authorizer_arn = cdk.Stack.of(self).format_arn(
            service="lambda",
            resource="function",
            resource_name=authorizer_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        # The push fan-out: 64 posts at once (shared/services/push.py) are CPU-bound on
        # botocore, so one full vCPU (1,769 MB); a batch stops sending 3 s before the timeout.
        self.stream_push = self.add(
            "StreamPush",
            "functions.events.stream_push.handler",
            layers=[core],
            memory=1769,
            timeout=60,
        )
        # Every minute (EventBridge Scheduler, infra/constructs/events.py): the reconciler,
        # which settles whatever overstayed its bound (shared/services/reconciler.py).
        self.sweeper = self.add(
            "Sweeper", "functions.events.reconciler.handler", layers=[core], timeout=60
        )
        # Predictions from checkpoints: the trainer image, run by the Lambda runtime client.
        self.inference = self.add(
            "Inference",
            None,
            memory=4096,
            timeout=120,
            image=_image(
                "containers/gpu-trainer/Dockerfile",
                entrypoint=["python", "-m", "awslambdaric"],
                cmd=["crucible_trainer.lambda_handler.handler"],
            ),
        )
        # The routes' handler modules, each one function (routes resolve to them by module).
        self.by_module = {
            module: self._event_handler(module, core)
            for module in dict.fromkeys(route.handler for route in ROUTES)
        }
        self._grant(data)
        self.api.add_environment("CRUCIBLE_PREDICTOR", "lambda")
        self.by_module["functions.events.batch_inference"].add_environment(
            "CRUCIBLE_PREDICTOR", "lambda"
        )
        self._bedrock(env.bedrock_model_id)
        inference = cdk.Stack.of(self).get_logical_id(self.inference.node.default_child)
        nag(
            self,
            f"IAM5[Resource::<{inference}.Arn>:*]",
            "grant_invoke covers the inference function's versions and aliases.",
        )
        self.api.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="events", resource="event-bus", resource_name=names.event_bus
                    )
                ],
            )
        )
        arn = f"arn:<AWS::Partition>:dynamodb:{env.region}:<AWS::AccountId>:table/{names.table}"
        nag(
            self,
            f"IAM5[Resource::{arn}/index/*]",
            "Queries on the table's GSIs (DataRefs.grant_table).",
        )
        for bucket in (names.uploads_bucket, names.artifacts_bucket):
            nag(
                self,
                f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/*]",
                "Objects of Crucible's own bucket (the API, which serves all of them).",
            )
        for bucket, prefix in OBJECT_PREFIXES:
            nag(
                self,
                f"IAM5[Resource::arn:<AWS::Partition>:s3:::{getattr(names, bucket)}/{prefix}]",
                "The objects of one kind a handler works on (a prefix of Crucible's own bucket).",
            )
        nag(
            self,
            "IAM5[Action::s3:GetObject*]",
            "Object reads through the CDK grant (GetObject, -Version, -Tagging).",
        )
        nag(self, "IAM5[Action::s3:GetBucket*]", "Bucket-level reads through the CDK grant.")
        nag(
            self,
            "IAM5[Action::s3:List*]",
            "Listing within the two buckets (prefix deletes, exports).",
        )
        nag(
            self,
            "IAM5[Action::s3:DeleteObject*]",
            "Deleting a file removes its object and every result under its prefix.",
        )
        nag(
            self,
            "IAM5[Action::s3:Abort*]",
            "grant_read_write adds Abort*; unfinished multipart uploads also expire by lifecycle rule.",
        )
        nag(
            self,
            "IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords take no resource.",
        )
        nag(
            self,
            "L1",
            "Pinned to Python 3.11, the interpreter the code and its tests run on locally.",
        )

    def _grant(self, data: DataRefs) -> None:
        """Each function's role: only what its code uses. Only the API and ``$connect``
        verify JWTs (the JWT secret); only the API checks the training callback (the
        internal secret). Every function gets ``CRUCIBLE_*_SECRET_ARN`` (settings require
        one), but a read of a secret it has no grant for fails.

        Only the API reaches any item. Every other function reaches only the partition
        keys its code paths use (``dynamodb:LeadingKeys``, one statement per action
        group), and only the API and the WebSocket function reach users and the locks
        that name them (``IDENTITY``; the push function reads users, never writes them).
        The functions that parse what users upload (analysis: audio decoders; datasets:
        zip, YAML, JSON) reach only their own item kinds."""
        api, ws, push, inference = self.api, self.websocket, self.stream_push, self.inference
        sweeper = self.sweeper
        analysis = self.by_module["functions.events.analysis"]
        datasets = self.by_module["functions.events.datasets"]
        objects = self.by_module["functions.events.s3_object"]
        batch_state = self.by_module["functions.events.batch_state"]
        batch_inference = self.by_module["functions.events.batch_inference"]
        uploads, artifacts = data.uploads, data.artifacts

        # The API is the application: any item, both buckets, both secrets.
        data.grant_table(api, READ + WRITE + ("ConditionCheckItem",), indexes=True)
        data.jwt_secret.grant_read(api)
        data.internal_secret.grant_read(api)  # X-Internal-Auth of the training callback
        uploads.grant_read_write(api)
        uploads.grant_delete(api)
        artifacts.grant_read(api)
        artifacts.grant_put(api, f"{keys.INFERENCE}*")  # seed 003's batches, as asked
        artifacts.grant_delete(api)
        self.inference.grant_invoke(api)

        # WebSocket ($connect, $disconnect, $default): verifies the token and reads its
        # user (an API token's service user is found by its TOKEN# lock, an earlier
        # version's by its e-mail lock, and created on first use: the user, its lock, the
        # next user id); may the topic be read (its resource's owner); its connection and
        # subscriptions (found per connection on GSI1), the only other items it writes.
        data.jwt_secret.grant_read(ws)
        data.grant_table(ws, ("GetItem",), keys=(*IDENTITY, "CONN#*", *TOPIC_OWNERS))
        data.grant_table(ws, ("PutItem", "DeleteItem"), keys=CONNECTIONS)
        _token_users(data, ws)
        data.grant_table(ws, ("Query",), keys=("CONN#*",), index="GSI1")
        # The REST API's authorizer: verifies the token (the JWT secret) and reads its user,
        # for the user's plan; like $connect, it finds an API token's service user by its
        # TOKEN# lock (an earlier version's by its e-mail lock) and creates it on first use.
        # Its API keys: RestApi (infra/constructs/api.py), which knows the usage plans.
        data.jwt_secret.grant_read(self.authorizer)
        data.grant_table(self.authorizer, ("GetItem",), keys=IDENTITY)
        _token_users(data, self.authorizer)
        # Stream -> push: a topic's followers, re-checked against their user as stored
        # now and the topic's owner; drops the connections gone or no longer allowed.
        data.grant_table(push, ("GetItem",), keys=("USER#*", *TOPIC_OWNERS))
        data.grant_table(push, ("Query",), keys=("TOPIC#*",))
        data.grant_table(push, ("Query",), keys=("CONN#*",), index="GSI1")
        data.grant_table(push, ("DeleteItem",), keys=CONNECTIONS)
        # its claims on parts of an event's followers (taken, released with who was served)
        data.grant_table(push, ("UpdateItem",), keys=("SENT#*",))
        # Object created: publishes an event on the uploader's topic, nothing else.
        data.grant_table(objects, ("PutItem",), keys=event_keys("user"))
        # Batch job state: reads and moves the job (a training job, or a leaderboard
        # job whose evaluator ended without saying so), gives back its owner's active-job
        # slots (ACTIVE#<uid>, a partition of its own) and publishes on the job's topic.
        data.grant_table(batch_state, ("GetItem",), keys=("JOB#*", "EVALUATION#*"))
        data.grant_table(batch_state, ("UpdateItem",), keys=("JOB#*", "EVALUATION#*", "ACTIVE#*"))
        data.grant_table(batch_state, ("PutItem",), keys=event_keys("job"))
        # its news is stored only while the job has not ended (one transaction)
        data.grant_table(batch_state, ("ConditionCheckItem",), keys=("JOB#*",))
        # The sweeper: leaderboard jobs not ended (the sparse ACTIVE#EVALUATION partition
        # of GSI2, and nothing else of it), each past its deadline read, ended failed with
        # its owner's slot given back (one transaction) and told on the job's topic; its
        # Batch job is stopped (Batch.allow_terminate). No user, submission or object.
        data.grant_table(sweeper, ("Query",), keys=(EVALUATIONS_ACTIVE,), index="GSI2")
        data.grant_table(sweeper, ("GetItem",), keys=("EVALUATION#*",))
        data.grant_table(sweeper, ("UpdateItem",), keys=("EVALUATION#*", "ACTIVE#*"))
        data.grant_table(sweeper, ("PutItem",), keys=event_keys("job"))
        # ... and, as the reconciler (shared/services/reconciler.py), the deadlines due
        # (DUE#<shard>, queried up to now; each dropped once settled, or moved on): the
        # analysis or training job each names, read and moved with its reason told on its
        # topic; an analysis queued again ("Analysis Requested"); a training job's runner
        # asked (DescribeJobs), and a job submitted again (Batch.allow_submit).
        data.grant_table(sweeper, ("Query", "PutItem", "DeleteItem"), keys=("DUE#*",))
        data.grant_table(sweeper, ("GetItem", "UpdateItem"), keys=("FILE#*", "JOB#*"))
        data.grant_table(sweeper, ("PutItem",), keys=event_keys("file"))
        artifacts.grant_read(sweeper, f"{keys.INFERENCE}*")  # a batch past its deadline,
        artifacts.grant_put(sweeper, f"{keys.INFERENCE}*")  # ended failed in its result
        # ... and datasets in flight past their deadline (DatasetService.sweep: the sparse
        # ACTIVE#DATASET partition of GSI2), each failed with its reason told on its topic,
        # and what it left under datasets/ (an arrival, a dead ingest's copy) deleted.
        data.grant_table(sweeper, ("Query",), keys=(DATASETS_ACTIVE,), index="GSI2")
        data.grant_table(sweeper, ("UpdateItem",), keys=("DATASET#*",))
        data.grant_table(sweeper, ("PutItem",), keys=event_keys("dataset"))
        uploads.grant_read(sweeper, "datasets/*")  # did its archive arrive? (and listing)
        uploads.grant_delete(sweeper, "datasets/*")
        sweeper.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="events", resource="event-bus", resource_name=self.names.event_bus
                    )
                ],
            )
        )
        # Analysis (audio decoders on uploaded bytes): the file and its upload intent,
        # the next result id, events on the file's topic. No query, no index.
        data.grant_table(analysis, ("GetItem",), keys=("FILE#*", "UPLOAD#*"))
        data.grant_table(analysis, ("PutItem",), keys=("FILE#*", "DUE#*", *event_keys("file")))
        data.grant_table(
            analysis,
            ("UpdateItem",),
            keys=("FILE#*", "COUNTER#file#*", "COUNTER#result#*", "COUNT#*#FILE*"),
        )
        data.grant_table(analysis, ("DeleteItem",), keys=("UPLOAD#*",))
        uploads.grant_read(analysis, "audio/*")
        uploads.grant_put(analysis, "audio/*")  # the stored copy of what was inspected
        uploads.grant_delete(analysis, "audio/*")
        artifacts.grant_read_write(analysis, "analysis/*")
        artifacts.grant_delete(analysis, "analysis/*")
        # Dataset ingestion (zip, YAML, JSON from users): reads and finishes the dataset
        # item, and tells its owner (an event on dataset:<id>).
        data.grant_table(datasets, ("GetItem", "UpdateItem"), keys=("DATASET#*",))
        data.grant_table(datasets, ("PutItem",), keys=event_keys("dataset"))
        uploads.grant_read(datasets, "datasets/*")
        uploads.grant_put(datasets, "datasets/*")
        uploads.grant_delete(datasets, "datasets/*")
        # Inference reads checkpoints, and nothing else: no table, no secret.
        artifacts.grant_read(inference, "jobs/*/checkpoints/*")
        # Batch inference (seed 003): reads a batch (its record and the images it holds)
        # and writes its result, under inference/ only; sends each image to the inference
        # function (which reads the checkpoint). No table but its deadline, no secret, no
        # upload.
        artifacts.grant_read(batch_inference, f"{keys.INFERENCE}*")
        artifacts.grant_put(batch_inference, f"{keys.INFERENCE}*")
        # ... and its deadline, written as it takes a batch, for the reconciler
        data.grant_table(batch_inference, ("PutItem",), keys=("DUE#*",))
        self.inference.grant_invoke(batch_inference)

    def _bedrock(self, model_id: str | None) -> None:
        """Seed 003's chat on Amazon Bedrock (``bedrock_model_id`` in cdk.json): the API
        may invoke that model, nothing else (Converse is authorised as
        ``bedrock:InvokeModel``). A cross-region inference profile (``us.``, ``eu.``,
        ``apac.``, ``global.`` ...) is invoked as the profile, which routes to the same
        foundation model in the regions it spans. Without a model id, no permission and
        the chat's offline parser."""
        if not model_id:
            return
        stack = cdk.Stack.of(self)
        profile, _, base = model_id.partition(".")
        if profile in INFERENCE_PROFILE_PREFIXES and base:
            resources = [
                stack.format_arn(
                    service="bedrock", resource="inference-profile", resource_name=model_id
                ),
                f"arn:{stack.partition}:bedrock:*::foundation-model/{base}",
            ]
            nag(
                self,
                f"IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/{base}]",
                "A cross-region inference profile routes to this one model in any of its regions.",
            )
        else:
            resources = [
                stack.format_arn(
                    service="bedrock",
                    account="",
                    resource="foundation-model",
                    resource_name=model_id,
                )
            ]
        self.api.add_to_role_policy(
            iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=resources)
        )
        self.api.add_environment("CRUCIBLE_INTENT_PARSER", "bedrock")
        self.api.add_environment("CRUCIBLE_BEDROCK_MODEL_ID", model_id)

    def _event_handler(self, module: str, layer: lambda_.LayerVersion) -> lambda_.Function:
        """The function of a routes' handler module, sized by ``EVENT_HANDLERS``."""
        spec = EVENT_HANDLERS.get(module, EventHandler())
        id = spec.id or module.rsplit(".", 1)[1].title().replace("_", "")
        # Invoked asynchronously: capped by a reservation (events wait, retried). The
        # queued ones are capped by their queue's reader instead (infra/constructs/events.py).
        reserved = self.env.event_reserved_concurrency if module in ASYNC_EVENT_HANDLERS else None
        if spec.dockerfile:
            return self.add(
                id,
                None,
                memory=spec.memory,
                timeout=spec.timeout,
                image=_image(spec.dockerfile),
                reserved=reserved,
            )
        return self.add(
            id,
            f"{module}.handler",
            layers=[layer],
            memory=spec.memory,
            timeout=spec.timeout,
            ephemeral_mib=spec.ephemeral_mib,
            reserved=reserved,
        )

    def add(
        self,
        id: str,
        handler: str | None,
        *,
        layers: list | None = None,
        memory: int = 512,
        timeout: int = 30,
        image: lambda_.DockerImageCode | None = None,
        ephemeral_mib: int | None = None,
        reserved: int | None = None,
    ) -> lambda_.Function:
        """A function with its own role and log group: ``handler`` in the zip, or ``image``;
        ``reserved``: its reserved concurrency (its share of the pool, and its cap)."""
        env, names = self.env, self.names
        log_group = logs.LogGroup(
            self,
            f"{id}Logs",
            retention=env.retention,
            removal_policy=cdk.RemovalPolicy.RETAIN if env.retain else cdk.RemovalPolicy.DESTROY,
        )
        role = iam.Role(self, f"{id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        log_group.grant_write(role)
        environment = {
            "CRUCIBLE_STAGE": env.name,
            "CRUCIBLE_TABLE_NAME": names.table,
            "CRUCIBLE_UPLOADS_BUCKET": names.uploads_bucket,
            "CRUCIBLE_ARTIFACTS_BUCKET": names.artifacts_bucket,
            "CRUCIBLE_JWT_SECRET_ARN": self.data.jwt_secret.secret_arn,
            "CRUCIBLE_INTERNAL_SECRET_ARN": self.data.internal_secret.secret_arn,
            "CRUCIBLE_CORS_ORIGINS": ",".join(env.cors_origins),
            # The leaderboard's classes, the same for the API, the sweeper and the evaluator.
            "CRUCIBLE_RESOURCE_CLASSES": env.resource_classes,
            # the plans' figures, the same as the REST API's usage plans (RestApi)
            **({"CRUCIBLE_PLAN_LIMITS": json.dumps(env.plan_limits)} if env.plan_limits else {}),
            "POWERTOOLS_SERVICE_NAME": f"crucible-{id.lower()}",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": "Crucible",
        }
        common = dict(
            memory_size=memory,
            timeout=cdk.Duration.seconds(timeout),
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            architecture=lambda_.Architecture.X86_64,
            reserved_concurrent_executions=reserved,
        )
        if ephemeral_mib:
            common["ephemeral_storage_size"] = cdk.Size.mebibytes(ephemeral_mib)
        if image is not None:
            fn = lambda_.DockerImageFunction(self, id, code=image, **common)
        else:
            fn = lambda_.Function(
                self,
                id,
                runtime=lambda_.Runtime.PYTHON_3_11,
                handler=handler,
                code=self._code,
                layers=layers or [],
                **common,
            )
        self.all.append(fn)
        return fn
