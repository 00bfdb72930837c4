"""AWS Batch: a VPC, a GPU EC2 environment (trainers) and a CPU EC2 environment (the
leaderboard's evaluator), their queues, and a job definition per job type.

Each job type is data (``JOBS``); a definition appears once its folder has a
Dockerfile, so adding the next container is one entry here.

Jobs run code shaped by users (their datasets, configs, checkpoints; the evaluator runs
their submissions outright), so they have no internet: their subnets are isolated (no
NAT gateway, no internet gateway), and what they and their hosts need is reached through
VPC endpoints (``GATEWAY_ENDPOINTS``, ``INTERFACE_ENDPOINTS``, and ``TRACKING_ENDPOINTS``
where the environment has a tracking server), whose policies admit only
Crucible's buckets and table and this account's principals, so no endpoint carries data
to someone else's account. Each job type has its own role (``_job_role``), which reads no
secret. The evaluator's container is also hardened: a read-only root filesystem, writable
scratch only on a tmpfs of its own (bounded by its memory, never the instance's disk), and
a non-root user.

The evaluator runs each submission in bubblewrap, which needs unprivileged user
namespaces: Fargate offers none (``user.max_user_namespaces`` is 0 there), and on EC2
Docker's default seccomp profile refuses ``unshare(CLONE_NEWUSER)``. A Batch job
definition can set neither a seccomp profile nor capabilities; ``privileged`` is the
switch it has, so the evaluator's container is privileged on instances of its own (the CPU
environment runs nothing else). Its worker is uid 10001, so it holds no capability
itself; bubblewrap then makes the sandbox's namespaces as that user, and the submission
has no network, no environment and no platform file (containers/evaluator/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs import nag
from infra.constructs.refs import DataRefs, event_keys
from infra.packaging import IMAGE_EXCLUDE, ROOT
from shared.settings import ResourceNames


@dataclass(frozen=True)
class JobType:
    name: str
    folder: str  # the image asset's folder (its Dockerfile)
    queue: str  # "gpu" or "cpu" (both EC2)
    vcpus: float
    memory_mib: int
    gpus: int = 0
    # The container's command: the arguments after the image's ENTRYPOINT (``python -m
    # crucible_<x>``, so the job runs ``python -m crucible_<x> --job-id <id>``). Batch fills
    # in parameters (``Ref::job_id``, set by SubmitJob) only here, never in the image's CMD.
    command: tuple[str, ...] = ()
    # A leaderboard job: SubmitJob gives it its resource class's vCPU, memory and time
    # limit (shared/adapters/runners.py); the definition's own timeout is the longest class's.
    per_class: bool = False
    # Hardening for jobs that run untrusted code: a read-only root filesystem with these
    # paths writable (each a tmpfs of the job's own, ``tmpfs_mib`` large, mounted with
    # ``TMPFS_OPTIONS``), and a non-root ``uid:gid``.
    read_only_root: bool = False
    tmpfs: tuple[str, ...] = ()
    user: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    # Docker's default seccomp profile lifted, and every capability in the bounding set:
    # only for a non-root ``user`` whose own sandbox needs user namespaces (module doc).
    privileged: bool = False

    def __post_init__(self) -> None:
        if self.privileged and (self.user is None or self.user.split(":")[0] in ("0", "root")):
            raise ValueError(f"job {self.name}: a privileged container must run as a non-root user")


# The evaluator's non-root user, the image's own (containers/evaluator/Dockerfile, USER).
EVALUATOR_USER = "10001"
# Its one writable path: TMPDIR, HOME and each run's workspace (code, output). A tmpfs
# (linuxParameters), not a volume on the instance's disk: a submission could fill that
# disk in milliseconds (fallocate reserves gigabytes without writing them), and with it
# every other job on the instance. A tmpfs's pages are charged to the memory cgroup of
# whoever writes them, so what the job keeps there counts against its own memory (the
# class's MiB plus the worker's EVALUATION_WORKER_MIB), never beyond it; its size
# (``tmpfs_mib``) is only a second bound. The cost: the code and output a run keeps
# there shrink what the submission may use.
EVALUATOR_TMPFS = ("/tmp",)  # noqa: S108 - the container's own tmpfs
# How each such tmpfs is mounted (ECS's tmpfs mountOptions, as Docker's --tmpfs takes
# them): anyone may write, only a file's owner delete (1777: the worker is uid 10001 and
# the image declares no VOLUME there), no setuid or device files, and nothing executed
# from it (Docker's default for a tmpfs, said here so that the template shows it: the
# submission's code is Python read by the image's interpreter, and its /code and /out,
# bound from here, are noexec in the sandbox too, so it loads no native library of its own).
TMPFS_OPTIONS = ("rw", "nosuid", "nodev", "noexec", "mode=1777")
# Batch's own time limit backs up the evaluator's: its class's seconds plus this margin,
# as BatchJobRunner.submit sets it per job.
CLASS_TIMEOUT_MARGIN_S = 300


def tmpfs_mib(env: EnvironmentConfig, job: JobType) -> int:
    """The size of each of ``job``'s tmpfs mounts: the most memory any job of its type
    may be given (a leaderboard job's largest class), so the size gives no room beyond
    memory; the job's memory cgroup (its own class's MiB plus the worker's) bounds what a
    tmpfs holds first. No larger either: ECS may count a tmpfs's size when it places a job."""
    if job.per_class:
        return max(c.memory_mib for c in env.classes.values())
    return job.memory_mib


JOBS = (
    JobType(
        "trainer",
        "containers/gpu-trainer",
        "gpu",
        vcpus=4,
        memory_mib=15_000,
        gpus=1,
        command=("--job-id", "Ref::job_id"),  # the image's ENTRYPOINT: python -m crucible_trainer
    ),
    JobType(
        "evaluator",
        "containers/evaluator",
        "cpu",
        vcpus=1,  # the seed's small class; SubmitJob overrides both with the job's class
        memory_mib=2048,
        command=("--job-id", "Ref::job_id"),  # the ENTRYPOINT: python -m crucible_evaluator
        per_class=True,
        read_only_root=True,
        tmpfs=EVALUATOR_TMPFS,
        user=EVALUATOR_USER,
        privileged=True,  # user namespaces for bubblewrap (module doc)
        # The image names its submissions' interpreter (CRUCIBLE_SANDBOX_PYTHON) itself.
        environment=(
            ("TMPDIR", "/tmp"),  # noqa: S108 - the job's own tmpfs (EVALUATOR_TMPFS)
            ("HOME", "/tmp"),  # noqa: S108 - the root filesystem is read-only
        ),
    ),
)

# What the evaluator's MLflow client calls on the tracking server (set_experiment,
# start_run, log_params/log_metrics/set_tags, end_run): no search, delete, UI or registry.
MLFLOW_LOGGING = (
    "GetExperimentByName",
    "GetExperiment",
    "CreateExperiment",
    "CreateRun",
    "GetRun",
    "UpdateRun",
    "LogBatch",
    "LogMetric",
    "LogParam",
    "SetTag",
)

# What a job and its host reach without internet access: the table and the buckets (also
# ECR's image layers) through gateway endpoints; image pulls, logs, the ECS agent of the
# GPU instances, and MLflow (SageMaker's managed tracking server, where the environment has
# one: ``TRACKING_ENDPOINTS``) through interface ones.
GATEWAY_ENDPOINTS = {
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
    "DynamoDB": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
}
INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
}
TRACKING_ENDPOINTS = {"Mlflow": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_EXPERIMENTS}


class Batch(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env: EnvironmentConfig,
        names: ResourceNames,
        data: DataRefs,
        tracking_uri: str | None,
    ) -> None:
        """``tracking_uri``: the MLflow tracking server's ARN, or None where the environment
        has none (``tracking: false``): no endpoint, permission or variable for it, and the
        jobs log to a store of their own that ends with them."""
        super().__init__(scope, id)
        self.names = names
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="jobs", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20
                ),
            ],
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=env.retention)
        self.vpc.add_flow_log(
            "FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs)
        )
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        self.gpu_env = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuEnv",
            vpc=self.vpc,
            vpc_subnets=subnets,
            instance_classes=[ec2.InstanceClass[c.upper()] for c in env.gpu_instance_classes],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=env.gpu_max_vcpus,
            spot=env.spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if env.spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
        )
        # The evaluator's instances (its containers are privileged: module doc): EC2,
        # the ECS-optimized AL2023 AMI, IMDSv2 only, and nothing else runs on them.
        self.cpu_env = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "CpuEc2Env",
            vpc=self.vpc,
            vpc_subnets=subnets,
            instance_types=[ec2.InstanceType(t) for t in env.cpu_instance_types],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=env.cpu_max_vcpus,
            spot=env.spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if env.spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023)],
            launch_template=ec2.LaunchTemplate(
                self,
                "CpuLaunchTemplate",
                http_endpoint=True,  # the ECS agent reads the instance's identity there
                http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
                http_put_response_hop_limit=1,
            ),
        )
        interface = {**INTERFACE_ENDPOINTS, **(TRACKING_ENDPOINTS if tracking_uri else {})}
        self._endpoints(names, data, interface, [self.gpu_env, self.cpu_env])
        # Fair share, not first come first served: each user's jobs run under a share of
        # their own (BatchJobRunner.submit), and Batch starts next the job of the share
        # that used least (vCPU time, decayed over ``fair_share_decay_hours``), so one
        # user's hundred queued jobs do not hold the next user's back. Each user's jobs
        # pending or running are capped by the API (max_active_jobs, the plans' concurrent
        # workflows) before anything is submitted.
        self.fair_share = batch.FairshareSchedulingPolicy(
            self,
            "FairShare",
            scheduling_policy_name=f"crucible-{env.name}-per-user",
            share_decay=cdk.Duration.hours(env.fair_share_decay_hours),
            compute_reservation=env.fair_share_reserve,
        )
        self.queues = {
            "gpu": batch.JobQueue(
                self,
                "GpuQueue",
                job_queue_name=names.gpu_queue,
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.gpu_env, order=1)
                ],
                scheduling_policy=self.fair_share,
            ),
            "cpu": batch.JobQueue(
                self,
                "CpuQueue",
                job_queue_name=names.cpu_queue,
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.cpu_env, order=1)
                ],
                scheduling_policy=self.fair_share,
            ),
        }

        # Separate roles: the agent pulls images and writes logs (execution); the job
        # itself reads its spec and writes progress, checkpoints and metrics (one role
        # per job type, ``_job_role``).
        self.execution_role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        )
        self.job_roles: dict[str, iam.Role] = {}
        self.job_logs = logs.LogGroup(self, "JobLogs", retention=env.retention)
        self.job_logs.grant_write(self.execution_role)
        self.definitions: dict[str, batch.EcsJobDefinition] = {}
        environment = {
            "CRUCIBLE_STAGE": env.name,
            "CRUCIBLE_TABLE_NAME": names.table,
            "CRUCIBLE_UPLOADS_BUCKET": names.uploads_bucket,
            "CRUCIBLE_ARTIFACTS_BUCKET": names.artifacts_bucket,
            # Settings require one of the JWT settings; jobs get the ARN, never a grant on it.
            "CRUCIBLE_JWT_SECRET_ARN": data.jwt_secret.secret_arn,
        }
        if tracking_uri:
            environment["CRUCIBLE_MLFLOW_TRACKING_URI"] = tracking_uri
        for job in JOBS:
            if (ROOT / job.folder / "Dockerfile").exists():
                self.job_roles[job.name] = self._job_role(job, data, tracking_uri)
                job_environment = {**environment, **dict(job.environment)}
                if job.name == "trainer":  # how often "last" is saved (H2's trainer side)
                    job_environment["CRUCIBLE_CHECKPOINT_INTERVAL_S"] = str(
                        env.checkpoint_interval_s
                    )
                if job.per_class:  # the same classes as the API's and the sweeper's
                    job_environment["CRUCIBLE_RESOURCE_CLASSES"] = env.resource_classes
                self.definitions[job.name] = self._definition(env, names, job, job_environment)

        nag(
            self,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]",
            "The Batch instance role as AWS defines it for ECS container instances.",
        )
        nag(
            self,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBatchServiceRole]",
            "Batch's service-linked permissions as AWS defines them.",
        )
        if tracking_uri:
            nag(
                self,
                "IAM5[Action::sagemaker-mlflow:*]",
                "Jobs log runs, metrics and artifacts to this one tracking server.",
            )
        nag(
            self,
            "IAM5[Action::s3:GetObject*]",
            "Jobs read datasets and checkpoints through the CDK grant.",
        )
        nag(self, "IAM5[Action::s3:GetBucket*]", "Bucket-level reads through the CDK grant.")
        nag(self, "IAM5[Action::s3:List*]", "Jobs list dataset and checkpoint prefixes.")
        if tracking_uri:
            nag(self, "IAM5[Action::s3:DeleteObject*]", "MLflow deletes artifacts of its runs.")
        nag(self, "IAM5[Action::s3:Abort*]", "Multipart checkpoint uploads can be aborted.")
        nag(self, "IAM5[Resource::*]", "Instance-role and flow-log actions that take no resource.")
        for bucket, prefix in (
            (names.uploads_bucket, "datasets/*"),
            (names.artifacts_bucket, "jobs/*"),
            *([(names.artifacts_bucket, "mlflow/*")] if tracking_uri else []),
        ):
            nag(
                self,
                f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}]",
                "A job reads datasets, reads and writes jobs' checkpoints and results, and "
                "logs to MLflow's artifact store: Batch gives a job no identity of its own "
                "to scope these to its own job (README, Security model).",
            )
        for bucket, prefix in (
            (names.uploads_bucket, "submissions/*"),
            (names.artifacts_bucket, "evaluations/*"),
        ):
            nag(
                self,
                f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}]",
                "The evaluator reads submitted files by key and writes its job's log and "
                "output: Batch gives a job no identity of its own to scope these to the one "
                "submission and job it runs (README, Security model).",
            )

    def _endpoints(
        self,
        names: ResourceNames,
        data: DataRefs,
        interface: dict[str, ec2.InterfaceVpcEndpointAwsService],
        clients: list[ec2.IConnectable],
    ) -> None:
        """The VPC endpoints of ``GATEWAY_ENDPOINTS`` and ``interface``, each admitting
        only Crucible's own resources or this account's principals; the interface ones
        take HTTPS from the compute environments (``clients``) only."""
        stack = cdk.Stack.of(self)
        buckets = [names.uploads_bucket, names.artifacts_bucket]
        # ECR keeps image layers in this AWS-owned bucket (ECR's VPC endpoint guide).
        layers = f"arn:{stack.partition}:s3:::prod-{stack.region}-starport-layer-bucket/*"
        own = {
            "S3": [
                f"arn:{stack.partition}:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")
            ]
            + [layers],
            "DynamoDB": [data.table.table_arn, f"{data.table.table_arn}/index/*"],
        }
        for name, service in GATEWAY_ENDPOINTS.items():
            endpoint = self.vpc.add_gateway_endpoint(
                name,
                service=service,
                subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
            )
            endpoint.add_to_policy(
                iam.PolicyStatement(
                    principals=[iam.AnyPrincipal()],
                    actions=[f"{name.lower()}:*"],
                    resources=own[name],
                )
            )
        for name, service in interface.items():
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                open=False,
            )
            for client in clients:
                endpoint.connections.allow_default_port_from(client)
            endpoint.add_to_policy(
                iam.PolicyStatement(
                    principals=[iam.AnyPrincipal()],
                    actions=["*"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:PrincipalAccount": stack.account}},
                )
            )

    def _job_role(self, job: JobType, data: DataRefs, tracking_uri: str | None) -> iam.Role:
        """A job type's own role, granted what its code uses (``_trainer_grants``,
        ``_evaluator_grants``)."""
        role = iam.Role(
            self,
            f"{job.name.title()}JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        )
        grants = {"trainer": self._trainer_grants, "evaluator": self._evaluator_grants}
        grants[job.name](role, data, tracking_uri)
        return role

    @staticmethod
    def _trainer_grants(role: iam.Role, data: DataRefs, tracking_uri: str | None) -> None:
        """A trainer: its spec and dataset, its records and events, checkpoints, MLflow
        (where there is a tracking server).

        Batch gives a job no identity of its own (no per-job session tags), so "its own"
        is as narrow as key shapes allow: it reads ``JOB#*`` and ``DATASET#*`` items,
        updates ``JOB#*`` ones, writes its metric rows and log lines (in the job's
        partition) and events on ``job:`` topics (``EVENTS#job:*`` and the event-id
        locks); objects under ``jobs/*`` (a resumed job reads another job's checkpoint,
        which the API checked the user may read) and MLflow's prefix. No user, counter,
        upload intent, connection or secret; datasets are read-only."""
        data.grant_table(role, ("GetItem",), keys=("JOB#*", "DATASET#*"))
        data.grant_table(role, ("UpdateItem",), keys=("JOB#*",))
        data.grant_table(role, ("PutItem",), keys=("JOB#*", *event_keys("job")))
        data.uploads.grant_read(role, "datasets/*")
        data.artifacts.grant_read(role, "jobs/*")
        data.artifacts.grant_put(role, "jobs/*")
        if tracking_uri:  # the tracking server, and its artifact store
            data.artifacts.grant_read_write(role, "mlflow/*")
            data.artifacts.grant_delete(role, "mlflow/*")
            role.add_to_policy(
                iam.PolicyStatement(actions=["sagemaker-mlflow:*"], resources=[tracking_uri])
            )

    @staticmethod
    def _evaluator_grants(role: iam.Role, data: DataRefs, tracking_uri: str | None) -> None:
        """The evaluator (the trusted worker around a sandboxed submission; the submission
        itself gets no credentials): reads its job and the job's submission, moves the job
        (``EVALUATION#*``, and at its end the owner's slot in ``ACTIVE#<uid>``, one
        transaction), puts the completed job on its leaderboard (``BOARD#*``), publishes on
        the job's topic (``EVENTS#job:*`` and the event-id locks); reads submitted files
        (``submissions/*`` in the uploads bucket, by key: no listing), writes logs and
        kept output (``evaluations/*`` in the artifacts bucket, no reads or deletes), and
        logs params, metrics and tags to the tracking server (``MLFLOW_LOGGING``).

        Batch gives a job no identity of its own, so these cover every submission, job and
        leaderboard, not only this job's: the narrowest the key shapes allow. No user,
        dataset, training job, connection or secret; nothing under ``mlflow/*``, since no
        artifact is logged; submissions are read-only; nothing can be deleted."""
        data.grant_table(role, ("GetItem",), keys=("EVALUATION#*", "SUBMISSION#*"))
        data.grant_table(role, ("UpdateItem",), keys=("EVALUATION#*", "ACTIVE#*"))
        data.grant_table(role, ("PutItem",), keys=("BOARD#*", *event_keys("job")))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[data.uploads.arn_for_objects("submissions/*")]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[data.artifacts.arn_for_objects("evaluations/*")],
            )
        )
        if tracking_uri:
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=[f"sagemaker-mlflow:{a}" for a in MLFLOW_LOGGING],
                    resources=[tracking_uri],
                )
            )

    def allow_submit(self, fn: lambda_.Function) -> None:
        """Let ``fn`` submit jobs to the queues and terminate them (the API's runner)."""
        stack = cdk.Stack.of(self)
        self.allow_terminate(fn)
        names = [self.names.job_definition(job) for job in self.definitions]
        definitions = [
            stack.format_arn(service="batch", resource="job-definition", resource_name=f"{n}:*")
            for n in names
        ]
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:SubmitJob"],
                resources=[q.job_queue_arn for q in self.queues.values()] + definitions,
            )
        )
        for n in names:
            nag(
                fn.role,
                f"IAM5[Resource::arn:<AWS::Partition>:batch:{stack.region}:<AWS::AccountId>:job-definition/{n}:*]",
                "Any revision of Crucible's own job definition: SubmitJob by name runs the latest one.",
            )

    def allow_terminate(self, fn: lambda_.Function) -> None:
        """Let ``fn`` stop jobs (the API's cancel, the sweeper's deadline) through the Batch
        job runner; it can start none."""
        stack = cdk.Stack.of(self)
        fn.add_environment("CRUCIBLE_JOB_RUNNER", "batch")
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:TerminateJob"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
            )
        )
        nag(
            fn.role,
            f"IAM5[Resource::arn:<AWS::Partition>:batch:{stack.region}:<AWS::AccountId>:job/*]",
            "Batch job ids are only known after SubmitJob; TerminateJob is called with the ids "
            "Crucible's own job items recorded (the API's cancel, the sweeper's deadline).",
        )

    def allow_describe(self, fn: lambda_.Function) -> None:
        """Let ``fn`` read job states: what the reconciler asks before it settles a job
        (shared/adapters/runners.py)."""
        fn.add_to_role_policy(iam.PolicyStatement(actions=["batch:DescribeJobs"], resources=["*"]))
        nag(
            fn.role,
            "IAM5[Resource::*]",
            "batch:DescribeJobs supports no resource-level permissions; it only reads job states.",
        )

    def _definition(
        self, env: EnvironmentConfig, names: ResourceNames, job: JobType, environment: dict
    ) -> batch.EcsJobDefinition:
        image = (
            ecs.ContainerImage.from_asset(  # the repository is the context: the image needs shared/
                str(ROOT),
                file=f"{job.folder}/Dockerfile",
                exclude=IMAGE_EXCLUDE,
            )
        )
        container = batch.EcsEc2ContainerDefinition(
            self,
            f"{job.name}Container",
            image=image,
            cpu=job.vcpus,
            memory=cdk.Size.mebibytes(job.memory_mib),
            command=list(job.command) or None,
            job_role=self.job_roles[job.name],
            execution_role=self.execution_role,
            environment=environment,
            logging=ecs.LogDriver.aws_logs(stream_prefix=job.name, log_group=self.job_logs),
            readonly_root_filesystem=job.read_only_root,
            user=job.user,
            privileged=job.privileged or None,
            gpu=job.gpus or None,
            linux_parameters=self._tmpfs(env, job),
        )
        timeout = (
            cdk.Duration.seconds(
                max(c.seconds for c in env.classes.values()) + CLASS_TIMEOUT_MARGIN_S
            )
            if job.per_class
            else cdk.Duration.hours(env.job_timeout_hours)
        )
        definition = batch.EcsJobDefinition(
            self,
            f"{job.name}Definition",
            job_definition_name=names.job_definition(job.name),
            container=container,
            timeout=timeout,
            retry_attempts=3,
            retry_strategies=[
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
            parameters={"job_id": "unset"},  # SubmitJob sets it; the command passes Ref::job_id
        )
        # The L2's TmpfsMountOption names an option but cannot give it a value ("mode", not
        # "mode=1777"), so the options are set on the template itself.
        cfn = definition.node.default_child
        for i, _ in enumerate(job.tmpfs):
            cfn.add_property_override(
                f"ContainerProperties.LinuxParameters.Tmpfs.{i}.MountOptions", list(TMPFS_OPTIONS)
            )
        return definition

    def _tmpfs(self, env: EnvironmentConfig, job: JobType) -> batch.LinuxParameters | None:
        """The job's writable paths (``job.tmpfs``), each a tmpfs of ``tmpfs_mib``."""
        if not job.tmpfs:
            return None
        linux = batch.LinuxParameters(self, f"{job.name}LinuxParameters")
        size = cdk.Size.mebibytes(tmpfs_mib(env, job))
        linux.add_tmpfs(*(batch.Tmpfs(container_path=path, size=size) for path in job.tmpfs))
        return linux
