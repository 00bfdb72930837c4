"""The synthesized templates of every environment: resources, key properties, IAM
scoping, rules and targets — and cdk-nag's AwsSolutions checks passing."""

import fnmatch
import json
import os
import re

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
cdk = pytest.importorskip("aws_cdk")
from aws_cdk.assertions import Match, Template  # noqa: E402

from infra.app import build  # noqa: E402
from shared.adapters.dynamodb.jobs import active_key  # noqa: E402
from shared.adapters.dynamodb.table import TABLE_SCHEMA  # noqa: E402
from shared.events import TOPIC_RE  # noqa: E402
from shared.routing import ROUTES  # noqa: E402
from shared.settings import ResourceNames  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")
# The kinds of topic there are (``<kind>:<id>``).
TOPIC_KINDS = re.match(r"\^\(([a-z|]+)\)", TOPIC_RE.pattern)[1].split("|")


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
        assert rule["EventPattern"] == route.pattern(names, cloud=True)
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


# --- least privilege, role by role (README, Security model) ------------------------------


def _statements(t, role: str) -> list[dict]:
    """Every statement of the policies attached to the role whose logical id starts with
    ``role`` (e.g. ``FunctionsApiRole``)."""
    out = []
    for policy in t.find_resources("AWS::IAM::Policy").values():
        if any(r["Ref"].startswith(role) for r in policy["Properties"].get("Roles", [])):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    assert out, f"no policy for {role}"
    return out


def _actions(statements: list[dict], service: str = "") -> set[str]:
    found = set()
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        found |= {a for a in actions if a.startswith(service)}
    return found


def _table_grants(statements: list[dict]) -> dict[str, list[str] | None]:
    """DynamoDB action -> the partition-key patterns it is limited to, across statements
    (None: any item). A pattern granted on one index only, not the table, reads
    ``GSI1/CONN#*`` (for a query of an index, the index's partition key)."""
    grants: dict[str, list[str] | None] = {}
    for st in statements:
        keys = (
            st.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
        )
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        on = {re.sub(r'["\]}\s]', "", json.dumps(r)).partition("/index/")[2] for r in resources}
        prefix = f"{on.pop()}/" if len(on) == 1 and "" not in on else ""
        for action in _actions([st], "dynamodb:"):
            if action in ("dynamodb:ListStreams", "dynamodb:DescribeStream"):
                continue
            if action in ("dynamodb:GetRecords", "dynamodb:GetShardIterator"):
                continue
            if keys is None or grants.get(action, []) is None:
                grants[action] = None
                continue
            grants[action] = sorted({*grants.get(action, []), *(prefix + k for k in keys)})
    return grants


def _keys(statements: list[dict]) -> set[str]:
    """Every partition-key pattern the statements grant any DynamoDB action on (``*``:
    any item)."""
    return {
        k.rpartition("/")[2] for keys in _table_grants(statements).values() for k in keys or ["*"]
    }


def _objects(statements: list[dict], action: str) -> set[str]:
    """The object ARNs' key patterns (after ``bucket/``) an S3 action is granted on."""
    keys = set()
    for st in statements:
        if action not in _actions([st], "s3:"):
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            text = "".join(p for p in r["Fn::Join"][1] if isinstance(p, str))
            if text.count("/"):
                bucket, _, key = text.split(":::", 1)[1].partition("/")
                keys.add(f"{bucket.rsplit('-', 1)[1]}/{key}")
    return keys


def _secrets(statements: list[dict]) -> set[str]:
    """Which of the data stack's secrets the statements read: ``jwt``, ``internal``."""
    read = set()
    for st in statements:
        if "secretsmanager:GetSecretValue" in _actions([st]):
            text = json.dumps(st["Resource"])
            read |= {n for n in ("Jwt", "Internal") if f"Storage{n}Secret" in text}
    return {n.lower() for n in read}


def test_only_the_api_and_connect_read_the_jwt_secret(synth):
    readers: dict[str, set[str]] = {}
    for policy in app_(synth, "dev").find_resources("AWS::IAM::Policy").values():
        read = _secrets(policy["Properties"]["PolicyDocument"]["Statement"])
        for role in policy["Properties"].get("Roles", []):
            if read:
                readers.setdefault(role["Ref"][:-8], set()).update(read)  # id less its hash
    assert readers == {"FunctionsApiRole": {"jwt", "internal"}, "FunctionsWebSocketRole": {"jwt"}}


def test_api_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsApiRole")
    grants = _table_grants(st)
    assert set(grants) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    }
    assert all(keys is None for keys in grants.values())  # the application: any item
    assert _objects(st, "s3:PutObject") == {"uploads/*"}
    assert _objects(st, "s3:GetObject*") == {"uploads/*", "artifacts/*"}
    assert {"batch:SubmitJob", "batch:TerminateJob", "lambda:InvokeFunction"} <= _actions(st)
    assert "events:PutEvents" in _actions(st)


# Where a topic's owner is read (DynamoOwners): the item of every kind but ``user``,
# and a file's upload intent.
TOPIC_OWNERS = sorted(
    [f"{kind.upper()}#*" for kind in TOPIC_KINDS if kind != "user"] + ["UPLOAD#*"]
)


def test_websocket_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsWebSocketRole")
    assert _table_grants(st) == {
        # the token's user (an API token's by its lock, an earlier one's by its e-mail),
        # its connection, and the owner of the topic it asks to follow
        "dynamodb:GetItem": sorted(["CONN#*", "EMAIL#*", "TOKEN#*", "USER#*", *TOPIC_OWNERS]),
        # its connection and subscriptions; an API token's service user, created on first use
        "dynamodb:PutItem": ["CONN#*", "TOKEN#*", "TOPIC#*", "USER#*"],
        "dynamodb:UpdateItem": ["COUNTER"],  # that user's id
        "dynamodb:DeleteItem": ["CONN#*", "TOPIC#*"],
        "dynamodb:Query": ["GSI1/CONN#*"],  # a connection's subscriptions
    }
    assert _actions(st, "s3:") == set() and _secrets(st) == {"jwt"}


def test_stream_push_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsStreamPushRole")
    assert _table_grants(st) == {
        # followers re-checked against their user as stored now and the topic's owner
        "dynamodb:GetItem": sorted(["USER#*", *TOPIC_OWNERS]),
        "dynamodb:Query": ["GSI1/CONN#*", "TOPIC#*"],
        "dynamodb:DeleteItem": ["CONN#*", "TOPIC#*"],
    }
    assert "execute-api:ManageConnections" in _actions(st)
    assert _actions(st, "s3:") == set() and _secrets(st) == set()


def test_object_created_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsObjectCreatedRole")
    assert _table_grants(st) == {"dynamodb:PutItem": ["EVENT#*", "EVENTS#user:*"]}
    assert _actions(st, "s3:") == set() and _secrets(st) == set()


def test_batch_state_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsBatchStateRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["JOB#*"],
        "dynamodb:UpdateItem": ["ACTIVE#*", "JOB#*"],  # the job, its owner's slots
        "dynamodb:PutItem": ["EVENT#*", "EVENTS#job:*"],
    }
    # The active-job counters live outside the user's partition.
    (counters, _) = active_key(7)
    assert fnmatch.fnmatchcase(counters, "ACTIVE#*") and not counters.startswith("USER#")
    assert _actions(st, "s3:") == set() and _secrets(st) == set()


def test_analysis_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsAnalysisRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["FILE#*", "UPLOAD#*"],
        "dynamodb:PutItem": ["EVENT#*", "EVENTS#file:*", "FILE#*"],
        "dynamodb:UpdateItem": ["COUNTER", "FILE#*"],  # the file's state, result ids
        "dynamodb:DeleteItem": ["UPLOAD#*"],
    }
    writes = {"uploads/audio/*", "artifacts/analysis/*"}
    assert _objects(st, "s3:PutObject") == writes
    assert _objects(st, "s3:DeleteObject*") == writes
    assert _objects(st, "s3:GetObject*") == writes
    assert _secrets(st) == set()


def test_datasets_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsDatasetsRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["DATASET#*"],
        "dynamodb:UpdateItem": ["DATASET#*"],
    }
    assert _objects(st, "s3:PutObject") == {"uploads/datasets/*"}
    assert _objects(st, "s3:DeleteObject*") == {"uploads/datasets/*"}
    assert _objects(st, "s3:GetObject*") == {"uploads/datasets/*"}
    assert _secrets(st) == set()


def test_only_the_api_and_websocket_reach_users(synth):
    """Users and the locks that name them: the API and the WebSocket function (API
    tokens' service users); the push function reads users (followers' current roles)
    and writes none. Every role but the API's is bound to partition keys."""
    t = app_(synth, "dev")
    identity = {"USER#*", "EMAIL#*", "TOKEN#*"}
    reach: dict[str, set[str]] = {}
    for policy in t.find_resources("AWS::IAM::Policy").values():
        st = policy["Properties"]["PolicyDocument"]["Statement"]
        for role in policy["Properties"].get("Roles", []):
            keys = _keys(st) if _table_grants(st) else set()
            reach.setdefault(role["Ref"][:-8], set()).update(keys)
    unbound = {role for role, keys in reach.items() if "*" in keys}
    assert unbound == {"FunctionsApiRole"}
    users = {role: keys & identity for role, keys in reach.items() if keys & identity}
    assert users == {"FunctionsWebSocketRole": identity, "FunctionsStreamPushRole": {"USER#*"}}
    push = _table_grants(_statements(t, "FunctionsStreamPushRole"))
    assert [a for a, keys in push.items() if "USER#*" in (keys or [])] == ["dynamodb:GetItem"]


def test_inference_role_reads_checkpoints_only(synth):
    st = _statements(app_(synth, "dev"), "FunctionsInferenceRole")
    assert _table_grants(st) == {} and _secrets(st) == set()
    assert _objects(st, "s3:GetObject*") == {"artifacts/jobs/*/checkpoints/*"}
    assert not _actions(st, "s3:Put") and not _actions(st, "s3:Delete")


def test_trainer_job_role(synth):
    st = _statements(app_(synth, "dev"), "BatchTrainerJobRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["DATASET#*", "JOB#*"],
        "dynamodb:UpdateItem": ["JOB#*"],
        # its metric rows and log lines (the job's partition), events on job: topics
        "dynamodb:PutItem": ["EVENT#*", "EVENTS#job:*", "JOB#*"],
    }
    assert _secrets(st) == set() and not _actions(st, "secretsmanager:")
    assert _objects(st, "s3:GetObject*") == {
        "uploads/datasets/*",
        "artifacts/jobs/*",
        "artifacts/mlflow/*",
    }
    assert _objects(st, "s3:PutObject") == {"artifacts/jobs/*", "artifacts/mlflow/*"}
    assert _objects(st, "s3:DeleteObject*") == {"artifacts/mlflow/*"}
    definition = app_(synth, "dev").find_resources("AWS::Batch::JobDefinition")
    (job,) = definition.values()
    role = job["Properties"]["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0]
    assert role.startswith("BatchTrainerJobRole")


@pytest.mark.parametrize("env", ENVS)
def test_batch_jobs_have_no_internet(synth, env):
    t = app_(synth, env)
    for kind in ("NatGateway", "InternetGateway", "EIP", "EgressOnlyInternetGateway"):
        t.resource_count_is(f"AWS::EC2::{kind}", 0)
    for route in t.find_resources("AWS::EC2::Route").values():
        assert "DestinationCidrBlock" not in route["Properties"], route
    subnets = t.find_resources("AWS::EC2::Subnet")
    assert subnets and not any(s["Properties"].get("MapPublicIpOnLaunch") for s in subnets.values())
    for ce in t.find_resources("AWS::Batch::ComputeEnvironment").values():
        assert {s["Ref"] for s in ce["Properties"]["ComputeResources"]["Subnets"]} <= set(subnets)
    endpoints = t.find_resources("AWS::EC2::VPCEndpoint")
    services = {
        json.dumps(e["Properties"]["ServiceName"]).split(".")[-1].strip('"]}'): e["Properties"]
        for e in endpoints.values()
    }
    assert set(services) == {
        "s3",
        "dynamodb",
        "api",  # ecr.api
        "dkr",  # ecr.dkr
        "logs",
        "ecs",
        "ecs-agent",
        "ecs-telemetry",
        "experiments",  # SageMaker managed MLflow
    }
    names = ResourceNames.for_stage(env)
    s3_policy = json.dumps(services["s3"]["PolicyDocument"])
    assert names.uploads_bucket in s3_policy and names.artifacts_bucket in s3_policy
    assert '"Resource": "*"' not in s3_policy
    assert names.table in json.dumps(services["dynamodb"]["PolicyDocument"])
    for name in ("logs", "ecs", "experiments"):
        assert "aws:PrincipalAccount" in json.dumps(services[name]["PolicyDocument"])


@pytest.mark.parametrize("env", ENVS)
def test_waf_limits_the_rest_api_and_the_websocket_stage_is_throttled(synth, env):
    t = app_(synth, env)
    (acl_id, acl), *_ = t.find_resources("AWS::WAFv2::WebACL").items()
    assert acl["Properties"]["Scope"] == "REGIONAL"
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert set(rules) == {"SignInPerClient", "PerClient"}
    for rule in rules.values():
        rate = rule["Statement"]["RateBasedStatement"]
        assert rate["AggregateKeyType"] == "IP" and rule["Action"] == {"Block": {}}
    scoped = json.dumps(rules["SignInPerClient"]["Statement"])
    assert "/api/v1/auth/" in scoped and "/api/v1/internal/" in scoped
    # The path as the API sees it: percent-decoded (``/api/v1/%61uth/login``) and
    # normalised before it is lower-cased and compared.
    down = rules["SignInPerClient"]["Statement"]["RateBasedStatement"]["ScopeDownStatement"]
    matches = [m["ByteMatchStatement"] for m in down["OrStatement"]["Statements"]]
    assert {m["SearchString"] for m in matches} == {"/api/v1/auth/", "/api/v1/internal/"}
    for m in matches:
        assert m["FieldToMatch"] == {"UriPath": {}}
        steps = sorted(m["TextTransformations"], key=lambda x: x["Priority"])
        assert [x["Type"] for x in steps] == ["URL_DECODE", "NORMALIZE_PATH", "LOWERCASE"]
    (assoc,) = t.find_resources("AWS::WAFv2::WebACLAssociation").values()
    assert assoc["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    stage_arn = json.dumps(assoc["Properties"]["ResourceArn"])
    assert "/restapis/" in stage_arn and "/stages/" in stage_arn
    # AWS WAF does not attach to WebSocket APIs: the stage's own throttling bounds it.
    t.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "DefaultRouteSettings": Match.object_like(
                {
                    "ThrottlingRateLimit": Match.any_value(),
                    "ThrottlingBurstLimit": Match.any_value(),
                }
            )
        },
    )


@pytest.mark.parametrize("env", ENVS)
def test_the_cloud_batch_rule_takes_aws_batch_only(synth, env):
    rules = app_(synth, env).find_resources("AWS::Events::Rule")
    (rule,) = [
        r["Properties"]
        for r in rules.values()
        if r["Properties"]["Name"] == f"crucible-{env}-batch-job-state-change"
    ]
    assert rule["EventPattern"]["source"] == ["aws.batch"]
    # The local stack keeps its job runner's source (it has no forgers to fear).
    (route,) = [r for r in ROUTES if r.name == "batch-job-state-change"]
    local = route.pattern(ResourceNames.for_stage("local"), cloud=False)
    assert local["source"] == ["aws.batch", "crucible.local-batch"]
