"""Per-environment settings as typed data, read from ``cdk.json`` context
(``crucible:environments``)."""

from __future__ import annotations

from typing import Literal

from aws_cdk import aws_logs as logs
from pydantic import BaseModel, EmailStr, Field, field_validator

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

    @property
    def retention(self) -> logs.RetentionDays:
        return RETENTION[self.log_retention_days]

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"


def load(context: dict) -> dict[str, EnvironmentConfig]:
    return {name: EnvironmentConfig(name=name, **values) for name, values in context.items()}
