"""Per-environment settings as typed data, read from ``cdk.json`` context
(``crucible:environments``)."""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_logs as logs
from pydantic import BaseModel, EmailStr, Field, ValidationError, field_validator, model_validator

from shared.settings import DEFAULT_RESOURCE_CLASSES, ResourceClass, parse_resource_classes

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

# The vCPU and memory (MiB) pairs a Fargate job may ask for (AWS Batch, Fargate
# ``resourceRequirements``; Linux, platform 1.4.0): a leaderboard job runs with its resource
# class's pair (the API's SubmitJob overrides), so each class must be one of these.
FARGATE_MEMORY_MIB: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4096 + 1, 1024)),
    1: tuple(range(2048, 8192 + 1, 1024)),
    2: tuple(range(4096, 16384 + 1, 1024)),
    4: tuple(range(8192, 30720 + 1, 1024)),
    8: tuple(range(16384, 61440 + 1, 4096)),
    16: tuple(range(32768, 122880 + 1, 8192)),
}


def fargate_problem(c: ResourceClass) -> str | None:
    """Why Fargate cannot run resource class ``c``, or None when it can."""
    memory = FARGATE_MEMORY_MIB.get(c.vcpu)
    if memory is None:
        return (
            f"resource class '{c.name}' asks for {c.vcpu:g} vCPU; Fargate offers "
            f"{', '.join(f'{v:g}' for v in FARGATE_MEMORY_MIB)} vCPU"
        )
    if c.memory_mib not in memory:
        steps = memory[1] - memory[0]
        return (
            f"resource class '{c.name}' asks for {c.vcpu:g} vCPU with {c.memory_mib} MiB; "
            f"Fargate pairs {c.vcpu:g} vCPU with "
            + (
                f"{memory[0]} to {memory[-1]} MiB in steps of {steps}"
                if len(memory) > 3
                else ", ".join(map(str, memory[:-1])) + f" or {memory[-1]} MiB"
            )
        )
    return None


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
    spot: bool = False
    job_timeout_hours: int = Field(12, ge=1, le=336)
    # Seed 004's leaderboard jobs (the evaluator, on the CPU Fargate queue): the classes as
    # CRUCIBLE_RESOURCE_CLASSES writes them (name=seconds:MiB:vCPU, comma-separated), given
    # to the API, the evaluator and the sweeper alike. Each must be a pair Fargate offers.
    resource_classes: str = DEFAULT_RESOURCE_CLASSES
    # API
    throttle_rate: float = 50
    throttle_burst: int = 100
    # AWS WAF on the REST API: requests per client IP per 5 minutes, everywhere and on
    # the routes that take no token (sign-in, register, refresh, the training callback).
    waf_rate_limit: int = Field(1500, ge=10)
    waf_sign_in_rate_limit: int = Field(100, ge=10)
    cors_origins: list[str] = []
    domain_name: str | None = None
    certificate_arn: str | None = None
    # Monitoring
    alarm_email: EmailStr | None = None
    # MLflow: SageMaker managed tracking server size
    mlflow_size: Literal["Small", "Medium", "Large"] = "Small"

    @field_validator("log_retention_days")
    @classmethod
    def _retention_days(cls, v: int) -> int:
        if v not in RETENTION:
            raise ValueError(f"log_retention_days must be one of {sorted(RETENTION)}")
        return v

    @field_validator("resource_classes")
    @classmethod
    def _resource_classes(cls, v: str) -> str:
        classes = parse_resource_classes(v)  # ValueError says what to fix
        problems = [p for c in classes.values() if (p := fargate_problem(c))]
        if problems:
            raise ValueError("; ".join(problems))
        return ",".join(f"{c.name}={c.seconds}:{c.memory_mib}:{c.vcpu:g}" for c in classes.values())

    @model_validator(mode="after")
    def _classes_fit_the_cpu_environment(self) -> EnvironmentConfig:
        for c in self.classes.values():
            if c.vcpu > self.cpu_max_vcpus:
                raise ValueError(
                    f"resource class '{c.name}' asks for {c.vcpu:g} vCPU but the CPU "
                    f"environment has cpu_max_vcpus={self.cpu_max_vcpus}: its jobs would never start"
                )
        return self

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
