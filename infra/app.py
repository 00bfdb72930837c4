"""``cdk synth`` entry point: every environment in cdk.json, or just ``-c env=<name>``,
each checked by cdk-nag's AwsSolutions rules (synth fails on any unacknowledged finding)."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import load
from infra.stacks import environment_stacks


def build(app: cdk.App) -> cdk.App:
    environments = load(app.node.try_get_context("crucible:environments") or {})
    only = app.node.try_get_context("env")
    if only and only not in environments:
        raise SystemExit(
            f"unknown environment '{only}'; cdk.json defines: {', '.join(environments)}"
        )
    for name, config in environments.items():
        if only in (None, name):
            environment_stacks(app, config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build(cdk.App()).synth()
