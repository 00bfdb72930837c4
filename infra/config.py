"""Per-environment settings as typed data, read from ``cdk.json`` context
(``crucible:environments``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aws_cdk import aws_logs as logs
from pydantic import BaseModel, EmailStr, Field, ValidationError, field_validator, model_validator

from shared.plans import Plan, build_plans
from shared.routing import ROUTES
from shared.settings import (
    DEFAULT_RESOURCE_CLASSES,
    EVALUATION_WORKER_MIB,
    ResourceClass,
    parse_resource_classes,
)

RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# The CPU queue's instances (``cpu_instance_types``): x86 (the evaluator's image is
# linux/amd64) 6th and 7th generation Intel or AMD types of the compute (c, 2 GiB per
# vCPU), general purpose (m, 4 GiB) or memory (r, 8 GiB) families, in the sizes each of
# them offers, so that their vCPU and memory follow from the name.
CPU_INSTANCE_TYPE = re.compile(
    r"^(?P<family>[cmr])[67][ia]\.(?P<size>large|xlarge|2xlarge|4xlarge|8xlarge|12xlarge|16xlarge|24xlarge)$"
)
SIZE_VCPUS = {
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
}
GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8}
# Of an instance's installed memory, what a job can reserve: the kernel and firmware keep
# some (an m4.large registers 7985 of its 8192 MiB), the Batch AMI reserves 32 MiB for the
# ECS agent, and AWS Batch recommends leaving a 5% buffer for both (Batch user guide,
# "Compute resource memory management" and "Reserve system memory").
USABLE_MEMORY = 0.95
# What the API adds to each job's class for the worker around the submission
# (BatchJobRunner.submit: MEMORY = the class's MiB + this).
WORKER_MIB = EVALUATION_WORKER_MIB  # shared/settings.py: the worker's share of the container
# Lambda keeps this much of an account's concurrency unreserved (Lambda developer guide,
# "Configuring reserved concurrency").
UNRESERVED_MINIMUM = 100
QUEUED = {  # handler module -> the setting that caps its queue's reader
    "functions.events.analysis": "analysis_max_concurrency",
    "functions.events.datasets": "ingest_max_concurrency",
}
# The other routes' handlers, invoked asynchronously by EventBridge (shared/routing.py),
# each capped by ``event_reserved_concurrency``.
ASYNC_EVENT_HANDLERS = tuple(
    module for module in dict.fromkeys(r.handler for r in ROUTES) if module not in QUEUED
)


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int  # installed

    @property
    def usable_mib(self) -> int:
        return int(self.memory_mib * USABLE_MEMORY)


def cpu_instance_type(name: str) -> InstanceType:
    """``c6i.2xlarge`` as its vCPU and memory; ValueError for a name outside
    ``CPU_INSTANCE_TYPE``."""
    m = CPU_INSTANCE_TYPE.match(name)
    if m is None:
        raise ValueError(
            f"'{name}' is not a CPU instance type this stack knows: use a c, m or r family of "
            "the 6th or 7th generation, Intel (i) or AMD (a), sized large to 24xlarge "
            "(e.g. c6i.xlarge, m7a.2xlarge)"
        )
    vcpus = SIZE_VCPUS[m["size"]]
    return InstanceType(name, vcpus, vcpus * GIB_PER_VCPU[m["family"]] * 1024)


def ec2_problem(c: ResourceClass, types: list[InstanceType]) -> str | None:
    """Why none of the CPU queue's instance ``types`` can run a job of resource class
    ``c`` (its vCPU, its memory and the worker's ``WORKER_MIB``), or None when one can."""
    if c.vcpu != int(c.vcpu) or c.vcpu < 1:
        return (
            f"resource class '{c.name}' asks for {c.vcpu:g} vCPU; a job on EC2 reserves whole "
            "vCPUs, at least 1"
        )
    need = c.memory_mib + WORKER_MIB
    if any(t.vcpus >= c.vcpu and t.usable_mib >= need for t in types):
        return None
    largest = max(types, key=lambda t: (t.vcpus, t.memory_mib))
    roomiest = max(types, key=lambda t: (t.memory_mib, t.vcpus))
    offer = f"{largest.name} has {largest.vcpus} vCPU and {largest.usable_mib} MiB for jobs"
    if roomiest is not largest:
        offer += f", {roomiest.name} {roomiest.vcpus} vCPU and {roomiest.usable_mib} MiB"
    return (
        f"resource class '{c.name}' asks for {c.vcpu:g} vCPU and {c.memory_mib} MiB "
        f"(+{WORKER_MIB} MiB for the worker: {need} MiB); no type of cpu_instance_types "
        f"holds that ({offer})"
    )


class EnvironmentConfig(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str = "us-east-1"
    removal_policy: Literal["destroy", "retain"] = "retain"
    log_retention_days: int = 30
    # AWS Batch
    gpu_instance_classes: list[str] = ["g5", "g6"]
    gpu_max_vcpus: int = Field(16, ge=0)
    cpu_max_vcpus: int = Field(16, ge=0)
    # The CPU queue (the evaluator): EC2, since its sandbox needs user namespaces, which
    # Fargate does not offer. Types, not classes, so each resource class can be checked
    # against the largest instance Batch may start.
    cpu_instance_types: list[str] = Field(
        default=[f"{f}.{s}" for f in ("c6i", "m6i") for s in ("large", "xlarge", "2xlarge")],
        min_length=1,
    )
    spot: bool = False  # both queues
    job_timeout_hours: int = Field(12, ge=1, le=336)
    # Fair share on both queues (each user's jobs under a share of their own,
    # BatchJobRunner.submit): how long past use still counts against a user, and what
    # is held back for users with nothing running yet (Batch's computeReservation: with
    # n users active, (r/100)**n of the queue's maximum vCPUs stay free for a newcomer).
    fair_share_decay_hours: int = Field(4, ge=0, le=168)
    fair_share_reserve: int = Field(0, ge=0, le=99)
    # A trainer's checkpoint cadence (seconds; the job definition's environment) and how
    # long a checkpoint's overwritten versions are kept in the versioned artifacts bucket.
    checkpoint_interval_s: int = Field(600, ge=60)
    checkpoint_versions_days: int = Field(3, ge=1)
    # Seed 004's leaderboard jobs (the evaluator, on the CPU queue): the classes as
    # CRUCIBLE_RESOURCE_CLASSES writes them (name=seconds:MiB:vCPU, comma-separated), given
    # to the API, the evaluator and the sweeper alike. Each must fit one of
    # cpu_instance_types with the worker's share, within cpu_max_vcpus.
    resource_classes: str = DEFAULT_RESOURCE_CLASSES
    # API
    throttle_rate: float = 50
    throttle_burst: int = 100
    # Method throttles on the routes that start work (EXPENSIVE_ROUTES in
    # infra/constructs/api.py: uploads, training jobs, inference), for all clients
    # together; each user's own windows are the app's (seed 003's plans).
    expensive_throttle_rate: float = Field(10, gt=0)
    expensive_throttle_burst: int = Field(20, ge=1)
    # Seed 003's plans' figures (shared/plans.py) as CRUCIBLE_PLAN_LIMITS changes them,
    # e.g. {"free": {"requests_per_minute": 30}}: every function gets them, and the REST
    # API's usage plans (one per plan tier, per user) are made from the same figures.
    plan_limits: dict[str, dict[str, float]] = {}
    # Lambda concurrency. The API's reservation keeps its share of the account's pool
    # whatever the background does (unset: none, as a new account's pool of 10 allows
    # no reservation at all); each function invoked asynchronously from EventBridge is
    # capped at ``event_reserved_concurrency`` (its events wait, retried, rather than
    # take the pool); analysis and dataset ingest read their queues with at most this
    # many concurrent invocations (an event source mapping's MaximumConcurrency, 2-1000).
    account_concurrency: int = Field(1000, ge=10)  # the account's regional quota
    api_reserved_concurrency: int | None = Field(None, ge=1)
    event_reserved_concurrency: int | None = Field(None, ge=1)
    analysis_max_concurrency: int = Field(10, ge=2, le=1000)
    ingest_max_concurrency: int = Field(4, ge=2, le=1000)
    # AWS WAF on the REST API: requests per client IP per 5 minutes, everywhere and on
    # the routes that take no token (sign-in, register, refresh, the training callback).
    waf_rate_limit: int = Field(1500, ge=10)
    waf_sign_in_rate_limit: int = Field(100, ge=10)
    cors_origins: list[str] = []
    domain_name: str | None = None
    certificate_arn: str | None = None
    # Monitoring
    alarm_email: EmailStr | None = None
    # MLflow: a SageMaker managed tracking server of ``mlflow_size`` (always on: ~$480 a
    # month with its VPC endpoint, README "Cost model"), or none (``tracking: false``): the
    # trainers and the evaluator then log to a store inside the job that goes with it
    # (their metrics still reach the table), and the leaderboard's results carry no links.
    tracking: bool = True
    mlflow_size: Literal["Small", "Medium", "Large"] = "Small"
    # Seed 003's chat on Amazon Bedrock: the model (or cross-region inference profile) id
    # the API may invoke, e.g. "anthropic.claude-3-5-haiku-20241022-v1:0" or
    # "us.anthropic.claude-3-5-haiku-20241022-v1:0"; unset: no Bedrock permission, and the
    # chat parses offline. One model, never a wildcard.
    bedrock_model_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,199}$"
    )

    @field_validator("log_retention_days")
    @classmethod
    def _retention_days(cls, v: int) -> int:
        if v not in RETENTION:
            raise ValueError(f"log_retention_days must be one of {sorted(RETENTION)}")
        return v

    @field_validator("plan_limits")
    @classmethod
    def _plan_limits(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        build_plans(v)  # ValueError names the plan or limit to fix
        return v

    @property
    def plans(self) -> dict[str, Plan]:
        """The plan tiers as this environment's app applies them."""
        return build_plans(self.plan_limits)

    @field_validator("cpu_instance_types")
    @classmethod
    def _cpu_instance_types(cls, v: list[str]) -> list[str]:
        for name in v:
            cpu_instance_type(name)  # ValueError says what to use
        return list(dict.fromkeys(v))

    @field_validator("resource_classes")
    @classmethod
    def _resource_classes(cls, v: str) -> str:
        classes = parse_resource_classes(v)  # ValueError says what to fix
        return ",".join(f"{c.name}={c.seconds}:{c.memory_mib}:{c.vcpu:g}" for c in classes.values())

    @model_validator(mode="after")
    def _classes_fit_the_cpu_environment(self) -> EnvironmentConfig:
        types = [cpu_instance_type(t) for t in self.cpu_instance_types]
        problems = [p for c in self.classes.values() if (p := ec2_problem(c, types))]
        if problems:
            raise ValueError("; ".join(problems))
        for c in self.classes.values():
            if c.vcpu > self.cpu_max_vcpus:
                raise ValueError(
                    f"resource class '{c.name}' asks for {c.vcpu:g} vCPU but the CPU "
                    f"environment has cpu_max_vcpus={self.cpu_max_vcpus}: its jobs would never start"
                )
        return self

    @model_validator(mode="after")
    def _reservations_fit_the_account(self) -> EnvironmentConfig:
        reserved = self.reserved_concurrency
        # Lambda keeps at least this much of the account's pool unreserved.
        if reserved and reserved > self.account_concurrency - UNRESERVED_MINIMUM:
            raise ValueError(
                f"reserved concurrency adds up to {reserved} (api_reserved_concurrency + "
                f"{len(ASYNC_EVENT_HANDLERS)} x event_reserved_concurrency) but Lambda keeps "
                f"{UNRESERVED_MINIMUM} of the account's {self.account_concurrency} unreserved: "
                "lower them, or raise the account's quota and account_concurrency"
            )
        return self

    @property
    def reserved_concurrency(self) -> int:
        """What this environment reserves of the account's Lambda pool."""
        events = (self.event_reserved_concurrency or 0) * len(ASYNC_EVENT_HANDLERS)
        return (self.api_reserved_concurrency or 0) + events

    @property
    def classes(self) -> dict[str, ResourceClass]:
        return parse_resource_classes(self.resource_classes)

    @property
    def retention(self) -> logs.RetentionDays:
        return RETENTION[self.log_retention_days]

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"


class ConfigError(ValueError):
    """An environment in ``cdk.json`` holds a value that cannot be deployed; the message
    names the environment, the setting and what to fix."""


def load(context: dict) -> dict[str, EnvironmentConfig]:
    out = {}
    for name, values in context.items():
        try:
            out[name] = EnvironmentConfig(name=name, **values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ConfigError(f"cdk.json crucible:environments.{name}: {problems}") from None
    return out
