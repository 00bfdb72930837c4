"""An environment without an always-on MLflow tracking server (``tracking: false``):
no SageMaker server, no VPC endpoint that serves only it, no tracking variable on the job
definitions or the functions, no grant or output for it, and the leaderboard's results
without links; with it on (every environment of cdk.json), all of those as today.

The shared synthesis (tests/infra/conftest.py) has tracking on; the setting off is one
more synthesis, of dev alone, for the whole module."""

from __future__ import annotations

import copy
import json

import pytest

cdk = pytest.importorskip("aws_cdk")
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import build  # noqa: E402
from infra.config import ConfigError, load  # noqa: E402
from shared.services.evaluations import EvaluationService  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
ENVIRONMENTS = CONTEXT["crucible:environments"]
TRACKED = [name for name, c in load(ENVIRONMENTS).items() if c.tracking]
TRACKING_VARIABLES = ("CRUCIBLE_MLFLOW_TRACKING_URI", "CRUCIBLE_MLFLOW_UI_URL")


@pytest.fixture(scope="module")
def untracked(tmp_path_factory) -> dict:
    """dev's app stack synthesized with ``tracking: false`` (cdk-nag included), as JSON."""
    context = copy.deepcopy(CONTEXT)
    context["crucible:environments"]["dev"]["tracking"] = False
    context["env"] = "dev"
    out = tmp_path_factory.mktemp("cdk.out.untracked")
    app = build(cdk.App(context=context, outdir=str(out)))
    app.synth()  # raises if cdk-nag reports an unacknowledged finding
    (stack,) = [
        s for s in app.node.children if isinstance(s, cdk.Stack) and s.stack_name.endswith("-app")
    ]
    return Template.from_stack(stack).to_json()


def tracked(synth, env: str) -> dict:
    return synth["t"][f"crucible-{env}-app"].to_json()


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def endpoint_services(template: dict) -> set[str]:
    """Each VPC endpoint's service, by the last part of its name (``experiments``)."""
    return {
        json.dumps(e["Properties"]["ServiceName"]).split(".")[-1].strip('"]}')
        for e in resources(template, "AWS::EC2::VPCEndpoint").values()
    }


def job_variables(template: dict) -> dict[str, dict[str, object]]:
    """Each job definition's container environment, by definition name."""
    return {
        d["Properties"]["JobDefinitionName"]: {
            v["Name"]: v["Value"] for v in d["Properties"]["ContainerProperties"]["Environment"]
        }
        for d in resources(template, "AWS::Batch::JobDefinition").values()
    }


def function_variables(template: dict) -> dict[str, dict[str, object]]:
    return {
        n: f["Properties"].get("Environment", {}).get("Variables", {})
        for n, f in resources(template, "AWS::Lambda::Function").items()
    }


def statements(template: dict) -> list[dict]:
    return [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_setting_is_read_per_environment_and_on_by_default():
    assert load({"x1": {}})["x1"].tracking is True
    assert load({"x1": {"tracking": False}})["x1"].tracking is False
    with pytest.raises(ConfigError, match=r"crucible:environments\.x1: tracking: "):
        load({"x1": {"tracking": "sometimes"}})
    assert TRACKED, "cdk.json should keep the tracking server in some environment"


def test_without_tracking_there_is_no_server_endpoint_grant_or_output(untracked):
    assert not [
        r for r in untracked["Resources"].values() if r["Type"].startswith("AWS::SageMaker")
    ]
    # nor the custom resource that reads its URL
    lookups = resources(untracked, "Custom::AWS").values()
    assert not [r for r in lookups if "Mlflow" in json.dumps(r["Properties"])]
    assert "experiments" not in endpoint_services(untracked)
    for s in statements(untracked):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not [a for a in actions if a.startswith("sagemaker-mlflow:") or "Mlflow" in a], s
        assert "/mlflow/" not in json.dumps(s.get("Resource")), s  # no artifact-store grant
    assert not [o for o in untracked.get("Outputs", {}) if "Mlflow" in o]


def test_without_tracking_no_job_or_function_is_given_a_tracking_variable(untracked):
    jobs = job_variables(untracked)
    assert set(jobs) == {"crucible-dev-trainer", "crucible-dev-evaluator"}
    for name, variables in {**jobs, **function_variables(untracked)}.items():
        assert not set(TRACKING_VARIABLES) & set(variables), name
    # the rest of the jobs' environment is unchanged
    assert all(v["CRUCIBLE_STAGE"] == "dev" for v in jobs.values())


@pytest.mark.parametrize("env", TRACKED)
def test_with_tracking_the_server_reaches_jobs_and_links(synth, untracked, env):
    t = tracked(synth, env)
    (server,) = resources(t, "AWS::SageMaker::MlflowTrackingServer").values()
    assert server["Properties"]["TrackingServerName"] == f"crucible-{env}"
    # the same endpoints as without tracking, and the one that serves only it
    assert endpoint_services(t) == endpoint_services(untracked) | {"experiments"}
    for name, variables in job_variables(t).items():
        uri = json.dumps(variables["CRUCIBLE_MLFLOW_TRACKING_URI"])
        assert "TrackingServerArn" in uri, name
    ui = [v for v in function_variables(t).values() if "CRUCIBLE_MLFLOW_UI_URL" in v]
    assert len(ui) == 1  # the API's: the leaderboard's results link to runs
    assert "MlflowTrackingUri" in t["Outputs"]
    mlflow_actions = {
        a
        for s in statements(t)
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        if a.startswith("sagemaker-mlflow:")
    }
    assert "sagemaker-mlflow:CreateRun" in mlflow_actions or "sagemaker-mlflow:*" in mlflow_actions


def test_results_carry_no_mlflow_links_without_a_server_url():
    """What the API does where its function has no CRUCIBLE_MLFLOW_UI_URL: the run's id
    stays (the job logged to a store of its own), the links are absent, never broken."""
    ports = dict.fromkeys(
        ("submissions_repo", "jobs", "boards", "uploads", "artifacts", "runner", "push")
    )
    without = EvaluationService(**ports, limits=None, mlflow_ui_url=None)
    assert without.links("3", "run1") == {"mlflow_ui_link": None, "mlflow_rest_link": None}
    with_url = EvaluationService(**ports, limits=None, mlflow_ui_url="https://t.example/")
    assert with_url.links("3", "run1")["mlflow_ui_link"] == (
        "https://t.example/#/experiments/3/runs/run1"
    )
