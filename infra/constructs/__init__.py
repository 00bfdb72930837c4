"""One construct per concern; ``nag`` records why a cdk-nag finding is accepted."""

import aws_cdk as cdk
from constructs import IConstruct


def nag(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge an AwsSolutions finding on ``scope`` (and below) with its reason.
    ``rule`` is the id cdk-nag reports, e.g. ``S1`` or ``IAM5[Resource::*]``."""
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason)
    )
