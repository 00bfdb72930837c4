"""The synthesized templates of every environment: resources, key properties, IAM
scoping, rules and targets — and cdk-nag's AwsSolutions checks passing."""

import json
import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
cdk = pytest.importorskip("aws_cdk")
from aws_cdk.assertions import Match, Template  # noqa: E402

from infra.app import build  # noqa: E402
from shared.adapters.dynamodb.table import TABLE_SCHEMA  # noqa: E402
from shared.routing import ROUTES  # noqa: E402
from shared.settings import ResourceNames  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    out = tmp_path_factory.mktemp("cdk.out")
    app = build(cdk.App(context=context, outdir=str(out)))
    app.synth()  # raises if cdk-nag reports any unacknowledged finding
    stacks = {s.stack_name: s for s in app.node.children if isinstance(s, cdk.Stack)}
    return {"out": out, "t": {name: Template.from_stack(stack) for name, stack in stacks.items()}}


def data(synth, env):
    return synth["t"][f"crucible-{env}-data"]


def app_(synth, env):
    return synth["t"][f"crucible-{env}-app"]


def test_cdk_nag_passes_with_every_suppression_explained(synth):
    report = json.loads((synth["out"] / "validation-report.json").read_text())
    plugins = report["pluginReports"]
    assert "AwsSolutions" in {p["pluginName"] for p in plugins}
    for plugin in plugins:
        assert plugin["conclusion"] == "success" and plugin["violations"] == []
        assert all(len(v["reason"]) > 20 for v in plugin.get("suppressedViolations", []))


@pytest.mark.parametrize("env", ENVS)
def test_table_matches_the_code(synth, env):
    t = data(synth, env)
    names = ResourceNames.for_stage(env)
    t.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "TableName": names.table,
                "KeySchema": [
                    {"AttributeName": "PK", "KeyType": "HASH"},
                    {"AttributeName": "SK", "KeyType": "RANGE"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                "TimeToLiveSpecification": {
                    "AttributeName": TABLE_SCHEMA["ttl_attribute"],
                    "Enabled": True,
                },
                "GlobalSecondaryIndexes": [
                    Match.object_like(
                        {
                            "IndexName": i,
                            "KeySchema": [
                                {"AttributeName": pk, "KeyType": "HASH"},
                                {"AttributeName": sk, "KeyType": "RANGE"},
                            ],
                        }
                    )
                    for i, (pk, sk) in TABLE_SCHEMA["indexes"].items()
                ],
            },
            "DeletionPolicy": "Delete" if env == "dev" else "Retain",
        },
    )


@pytest.mark.parametrize("env", ENVS)
def test_buckets_are_private_encrypted_and_tidy(synth, env):
    t = data(synth, env)
    names = ResourceNames.for_stage(env)
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": names.uploads_bucket,
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": Match.any_value(),
            "LoggingConfiguration": Match.any_value(),
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
                        )
                    ]
                )
            },
        },
    )
    t.has_resource_properties(
        "Custom::S3BucketNotifications",
        {"NotificationConfiguration": {"EventBridgeConfiguration": {}}},
    )
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": names.artifacts_bucket,
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Prefix": "tmp/", "ExpirationInDays": 7})]
                )
            },
        },
    )
    policies = t.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 3 and all(
        "aws:SecureTransport" in json.dumps(p) for p in policies.values()
    )
    if env == "dev":
        t.has_resource_properties(
            "AWS::S3::Bucket",
            {"BucketName": names.uploads_bucket, "CorsConfiguration": Match.any_value()},
        )
    t.resource_count_is("AWS::SecretsManager::Secret", 2)


@pytest.mark.parametrize("env", ENVS)
def test_functions_are_traced_logged_and_configured(synth, env):
    t = app_(synth, env)
    fns = t.find_resources("AWS::Lambda::Function")
    handlers = {f["Properties"].get("Handler") for f in fns.values()}
    assert {
        "functions.api.handler.handler",
        "functions.events.websocket.handler",
        "functions.events.s3_object.handler",
        "functions.events.batch_state.handler",
        "functions.events.stream_push.handler",
        "functions.events.datasets.handler",
    } <= handlers
    images = [f for f in fns.values() if f["Properties"].get("PackageType") == "Image"]
    assert sorted(i["Properties"]["Timeout"] for i in images) == [120, 900]  # inference, analysis
    api = next(
        f["Properties"]
        for f in fns.values()
        if f["Properties"].get("Handler") == "functions.api.handler.handler"
    )
    assert api["Environment"]["Variables"]["CRUCIBLE_JOB_RUNNER"] == "batch"
    assert api["Environment"]["Variables"]["CRUCIBLE_PREDICTOR"] == "lambda"
    for f in fns.values():
        p = f["Properties"]
        if "Handler" not in p and p.get("PackageType") != "Image":
            continue  # CDK's own helpers
        assert p["TracingConfig"] == {"Mode": "Active"}
        assert p["Environment"]["Variables"]["CRUCIBLE_STAGE"] == env
        assert "CRUCIBLE_JWT_SECRET_ARN" in p["Environment"]["Variables"]
        assert p["LoggingConfig"]["LogGroup"]


@pytest.mark.parametrize("env", ENVS)
def test_iam_is_scoped(synth, env):
    t = app_(synth, env)
    policies = t.find_resources("AWS::IAM::Policy")
    text = json.dumps(policies)
    assert '"dynamodb:*"' not in text and '"s3:*"' not in text and '"Action": "*"' not in text
    for name, pol in policies.items():
        for st in pol["Properties"]["PolicyDocument"]["Statement"]:
            if st.get("Resource") == "*":  # only actions that take no resource
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                assert all(
                    a.startswith(
                        (
                            "xray:",
                            "dynamodb:ListStreams",
                            "logs:",
                            "ec2:",
                            "ecr:GetAuthorizationToken",
                        )
                    )
                    for a in actions
                ), (name, actions)
    push = [p for n, p in policies.items() if n.startswith("FunctionsStreamPushRole")]
    assert "execute-api:ManageConnections" in json.dumps(push)
    api = [p for n, p in policies.items() if n.startswith("FunctionsApiRole")]
    assert "events:PutEvents" in json.dumps(
        api
    ) and "execute-api:ManageConnections" not in json.dumps(api)
    ours = [
        f["Properties"]
        for n, f in t.find_resources("AWS::Lambda::Function").items()
        if n.startswith("Functions")
    ]
    roles = [p["Role"]["Fn::GetAtt"][0] for p in ours]
    # API, WebSocket, stream push, inference, and one per routed handler module
    assert len(ours) == 4 + len({route.handler for route in ROUTES}) == 8
    assert len(set(roles)) == len(ours)  # one role per function
    api_text = json.dumps(api)
    assert "batch:SubmitJob" in api_text and "batch:TerminateJob" in api_text
    assert "lambda:InvokeFunction" in api_text


@pytest.mark.parametrize("env", ENVS)
def test_apis(synth, env):
    t = app_(synth, env)
    t.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {"BinaryMediaTypes": Match.array_with(["multipart/form-data", "audio/*"])},
    )
    t.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": env,
            "TracingEnabled": True,
            "AccessLogSetting": Match.any_value(),
            "MethodSettings": Match.array_with(
                [Match.object_like({"ThrottlingRateLimit": Match.any_value()})]
            ),
        },
    )
    t.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "WEBSOCKET"})
    routes = {
        r["Properties"]["RouteKey"] for r in t.find_resources("AWS::ApiGatewayV2::Route").values()
    }
    assert routes == {"$connect", "$disconnect", "$default"}
    t.has_resource_properties(
        "AWS::ApiGatewayV2::Stage", {"StageName": env, "AccessLogSettings": Match.any_value()}
    )
    push = [
        f
        for n, f in t.find_resources("AWS::Lambda::Function").items()
        if n.startswith("FunctionsStreamPush")
    ]
    assert "CRUCIBLE_WS_MANAGEMENT_ENDPOINT" in push[0]["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("env", ENVS)
def test_event_routes_and_stream(synth, env):
    t = app_(synth, env)
    names = ResourceNames.for_stage(env)
    rules = t.find_resources("AWS::Events::Rule")
    by_name = {r["Properties"]["Name"]: r["Properties"] for r in rules.values()}
    for route in ROUTES:
        rule = by_name[f"crucible-{env}-{route.name}"]
        assert rule["EventPattern"] == route.pattern(names)
        (target,) = rule["Targets"]
        assert target["DeadLetterConfig"] and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
        fn = target["Arn"]["Fn::GetAtt"][0]
        module = route.handler.rsplit(".", 1)[1]
        function_id = {"s3_object": "objectcreated"}.get(module, module.replace("_", ""))
        assert fn.lower().startswith("functions" + function_id)
    t.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "StartingPosition": "LATEST",
            "DestinationConfig": {"OnFailure": Match.any_value()},
            "FilterCriteria": {"Filters": [{"Pattern": Match.string_like_regexp('"event"')}]},
        },
    )


@pytest.mark.parametrize(("env", "spot"), [("dev", True), ("staging", True), ("prod", False)])
def test_batch(synth, env, spot):
    t = app_(synth, env)
    envs = t.find_resources("AWS::Batch::ComputeEnvironment")
    ec2 = [
        e["Properties"]["ComputeResources"]
        for e in envs.values()
        if e["Properties"]["ComputeResources"]["Type"] in ("EC2", "SPOT")
    ]
    (gpu,) = ec2
    assert gpu["Type"] == ("SPOT" if spot else "EC2")
    assert gpu["AllocationStrategy"] == (
        "SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE"
    )
    assert set(gpu["InstanceTypes"]) >= {"g5", "g6"} and gpu["MinvCpus"] == 0
    assert gpu["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    fargate = [
        e
        for e in envs.values()
        if e["Properties"]["ComputeResources"]["Type"].startswith("FARGATE")
    ]
    assert len(fargate) == 1
    queues = {
        q["Properties"]["JobQueueName"] for q in t.find_resources("AWS::Batch::JobQueue").values()
    }
    assert queues == {f"crucible-{env}-gpu", f"crucible-{env}-cpu"}
    t.resource_count_is("AWS::EC2::FlowLog", 1)
    t.has_resource_properties(
        "AWS::SageMaker::MlflowTrackingServer", {"TrackingServerName": f"crucible-{env}"}
    )


def test_alarms_reach_the_topic(synth):
    t = app_(synth, "prod")
    t.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    alarms = t.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 8  # every function, the dead letters, the API's 5xx
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    app_(synth, "dev").resource_count_is("AWS::SNS::Subscription", 0)


@pytest.mark.parametrize("env", ENVS)
def test_trainer_job_definition(synth, env):
    t = app_(synth, env)
    t.has_resource_properties(
        "AWS::Batch::JobDefinition",
        {
            "JobDefinitionName": f"crucible-{env}-trainer",
            "Parameters": {"job_id": "unset"},
            "RetryStrategy": {
                "Attempts": 3,
                "EvaluateOnExit": [
                    {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
                    {"Action": "EXIT", "OnReason": "*"},
                ],
            },
            "Timeout": Match.any_value(),
            "ContainerProperties": Match.object_like(
                {
                    "ResourceRequirements": Match.array_with([{"Type": "GPU", "Value": "1"}]),
                    "JobRoleArn": Match.any_value(),
                    "ExecutionRoleArn": Match.any_value(),
                }
            ),
        },
    )
