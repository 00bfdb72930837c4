"""One synthesis of the whole CDK app (every environment in cdk.json, cdk-nag included)
for every template test: synth is the slow part on a 2-core machine."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """``{"out": <cdk.out>, "t": {stack name: Template}}`` of the app as `make synth` builds it."""
    cdk = pytest.importorskip("aws_cdk")
    from aws_cdk.assertions import Template

    from infra.app import build

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    out = tmp_path_factory.mktemp("cdk.out")
    app = build(cdk.App(context=context, outdir=str(out)))
    app.synth()  # raises if cdk-nag reports any unacknowledged finding
    stacks = {s.stack_name: s for s in app.node.children if isinstance(s, cdk.Stack)}
    return {"out": out, "t": {name: Template.from_stack(stack) for name, stack in stacks.items()}}
