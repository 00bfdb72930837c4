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
from infra.config import QUEUED, ConfigError, load  # noqa: E402
from infra.constructs.batch import EVALUATOR_USER, JOBS, JobType, tmpfs_mib  # noqa: E402
from shared.adapters.dynamodb.evaluations import ACTIVE as EVALUATIONS_ACTIVE  # noqa: E402
from shared.adapters.dynamodb.jobs import active_key  # noqa: E402
from shared.adapters.dynamodb.table import TABLE_SCHEMA  # noqa: E402
from shared.events import TOPIC_RE  # noqa: E402
from shared.routing import ROUTES  # noqa: E402
from shared.settings import (  # noqa: E402
    DEFAULT_RESOURCE_CLASSES,
    EVALUATION_WORKER_MIB,
    ResourceNames,
    parse_resource_classes,
)
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")
# The kinds of topic there are (``<kind>:<id>``).
TOPIC_KINDS = re.match(r"\^\(([a-z|]+)\)", TOPIC_RE.pattern)[1].split("|")
RESOURCE_CLASSES = DEFAULT_RESOURCE_CLASSES  # cdk.json sets none: the seed's small and medium


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
        "functions.events.reconciler.handler",
        "functions.events.batch_inference.handler",
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
    for name, f in fns.items():
        p = f["Properties"]
        if not name.startswith("Functions"):
            continue  # CDK's own helpers (a custom resource's function)
        assert p["TracingConfig"] == {"Mode": "Active"}
        assert p["Environment"]["Variables"]["CRUCIBLE_STAGE"] == env
        assert "CRUCIBLE_JWT_SECRET_ARN" in p["Environment"]["Variables"]
        # the leaderboard's classes: one value for the API, the sweeper and the evaluator
        assert p["Environment"]["Variables"]["CRUCIBLE_RESOURCE_CLASSES"] == RESOURCE_CLASSES
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
                if actions == ["batch:DescribeJobs"]:  # reads job states; the reconciler's only
                    assert name.startswith("FunctionsSweeperRole"), name
                    continue
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
    # API, its authorizer, WebSocket, stream push, inference, sweeper, and one per routed
    # handler module
    assert len(ours) == 6 + len({route.handler for route in ROUTES}) == 11
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
        # analysis and ingest take their events through a queue (tests/infra/test_admission.py)
        queued = route.handler in QUEUED
        expected = f"events{function_id}queue" if queued else f"functions{function_id}"
        assert fn.lower().startswith(expected)
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
    # both on EC2 (the evaluator's sandbox needs user namespaces, which Fargate lacks)
    assert all(
        e["Properties"]["ComputeResources"]["Type"] in ("EC2", "SPOT") for e in envs.values()
    )
    by_image = {
        e["Properties"]["ComputeResources"]["Ec2Configuration"][0]["ImageType"]: e["Properties"][
            "ComputeResources"
        ]
        for e in envs.values()
    }
    assert set(by_image) == {"ECS_AL2023_NVIDIA", "ECS_AL2023"}
    gpu, cpu = by_image["ECS_AL2023_NVIDIA"], by_image["ECS_AL2023"]
    for ce in (gpu, cpu):
        assert ce["Type"] == ("SPOT" if spot else "EC2") and ce["MinvCpus"] == 0
        assert ce["AllocationStrategy"] == (
            "SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE"
        )
    assert set(gpu["InstanceTypes"]) >= {"g5", "g6"}
    config = load(json.loads((ROOT / "cdk.json").read_text())["context"]["crucible:environments"])
    assert cpu["InstanceTypes"] == config[env].cpu_instance_types
    assert cpu["MaxvCpus"] == config[env].cpu_max_vcpus
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
                    # Batch fills in parameters only in the definition's command (after the
                    # image's ENTRYPOINT, python -m crucible_trainer), never in the image's CMD
                    "Command": ["--job-id", "Ref::job_id"],
                    "JobRoleArn": Match.any_value(),
                    "ExecutionRoleArn": Match.any_value(),
                }
            ),
        },
    )
    assert "Privileged" not in _definition(t, f"crucible-{env}-trainer")["ContainerProperties"]


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


def test_only_the_api_connect_and_the_authorizer_read_the_jwt_secret(synth):
    readers: dict[str, set[str]] = {}
    for policy in app_(synth, "dev").find_resources("AWS::IAM::Policy").values():
        read = _secrets(policy["Properties"]["PolicyDocument"]["Statement"])
        for role in policy["Properties"].get("Roles", []):
            if read:
                readers.setdefault(role["Ref"][:-8], set()).update(read)  # id less its hash
    assert readers == {
        "FunctionsApiRole": {"jwt", "internal"},
        "FunctionsWebSocketRole": {"jwt"},
        "FunctionsAuthorizerRole": {"jwt"},
    }


def test_api_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsApiRole")
    grants = _table_grants(st)
    assert set(grants) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    }
    assert all(keys is None for keys in grants.values())  # the application: any item
    # the artifacts it writes: seed 003's batches as asked (inference/)
    assert _objects(st, "s3:PutObject") == {"uploads/*", "artifacts/inference/*"}
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
        # that user's id block and the count of its listing
        "dynamodb:UpdateItem": ["COUNT#*#USER#*", "COUNTER#user#*"],
        "dynamodb:DeleteItem": ["CONN#*", "TOPIC#*"],
        # a connection's subscriptions, a user's connections
        "dynamodb:Query": ["GSI1/CONN#*"],
    }
    assert _actions(st, "s3:") == set() and _secrets(st) == {"jwt"}
    # at a user's connection cap, whether the older ones are still open: GET only
    (ask,) = [s for s in st if "execute-api:ManageConnections" in json.dumps(s["Action"])]
    assert "/dev/GET/@connections/*" in json.dumps(ask["Resource"])


def test_stream_push_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsStreamPushRole")
    assert _table_grants(st) == {
        # followers re-checked against their user as stored now and the topic's owner
        "dynamodb:GetItem": sorted(["USER#*", *TOPIC_OWNERS]),
        "dynamodb:Query": ["GSI1/CONN#*", "TOPIC#*"],
        "dynamodb:DeleteItem": ["CONN#*", "TOPIC#*"],
        "dynamodb:UpdateItem": ["SENT#*"],  # its claims on parts of an event's followers
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
        # a training job, or a leaderboard job whose evaluator died without ending it
        "dynamodb:GetItem": ["EVALUATION#*", "JOB#*"],
        "dynamodb:UpdateItem": ["ACTIVE#*", "EVALUATION#*", "JOB#*"],  # the job, its owner's slots
        "dynamodb:PutItem": ["EVENT#*", "EVENTS#job:*"],
        # its news is stored only while the job has not ended (shared/adapters/dynamodb/push.py)
        "dynamodb:ConditionCheckItem": ["JOB#*"],
    }
    # The active-job counters live outside the user's partition.
    (counters, _) = active_key(7)
    assert fnmatch.fnmatchcase(counters, "ACTIVE#*") and not counters.startswith("USER#")
    assert _actions(st, "s3:") == set() and _secrets(st) == set()


def test_analysis_role(synth):
    st = _statements(app_(synth, "dev"), "FunctionsAnalysisRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["FILE#*", "UPLOAD#*"],
        "dynamodb:PutItem": ["DUE#*", "EVENT#*", "EVENTS#file:*", "FILE#*"],  # DUE: deadlines
        # the file's state, its listing's counts, file and result id blocks
        "dynamodb:UpdateItem": ["COUNT#*#FILE*", "COUNTER#file#*", "COUNTER#result#*", "FILE#*"],
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
        "dynamodb:PutItem": ["EVENT#*", "EVENTS#dataset:*"],  # tells the owner
        "dynamodb:UpdateItem": ["DATASET#*"],
    }
    assert _objects(st, "s3:PutObject") == {"uploads/datasets/*"}
    assert _objects(st, "s3:DeleteObject*") == {"uploads/datasets/*"}
    assert _objects(st, "s3:GetObject*") == {"uploads/datasets/*"}
    assert _secrets(st) == set()


def test_the_ingest_holds_the_largest_dataset_a_presign_allows(synth):
    """The presign policy's cap (max_dataset_bytes) fits the ingest's /tmp, which holds
    the archive it inspects, with room to spare, within Lambda's 10 GiB."""
    from shared.settings import Settings

    cap = Settings.model_fields["max_dataset_bytes"].default
    [fn] = [
        f["Properties"]
        for f in app_(synth, "dev").find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.events.datasets.handler"
    ]
    size_mib = fn["EphemeralStorage"]["Size"]
    assert cap + 256 * 2**20 <= size_mib * 2**20 <= 10240 * 2**20
    assert Settings.model_fields["max_dataset_bytes"].metadata[-1].le == cap  # no higher cap


def test_only_the_api_and_websocket_reach_users(synth):
    """Users and the locks that name them: the API and the WebSocket function (API
    tokens' service users); the push function reads users (followers' current roles)
    and writes none; the REST API's authorizer reads a user's plan and, like the
    WebSocket function, makes an API token's service user on its first use. Every role
    but the API's is bound to partition keys."""
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
    assert users == {
        "FunctionsWebSocketRole": identity,
        "FunctionsStreamPushRole": {"USER#*"},
        "FunctionsAuthorizerRole": identity,
    }
    push = _table_grants(_statements(t, "FunctionsStreamPushRole"))
    assert [a for a, keys in push.items() if "USER#*" in (keys or [])] == ["dynamodb:GetItem"]


def test_batch_inference_role(synth):
    """Seed 003's batches: the batch's own objects (inference/) and the inference
    function, nothing else: no table but the batch's deadline (DUE#, for the reconciler),
    no secret, no upload, no delete."""
    t = app_(synth, "dev")
    st = _statements(t, "FunctionsBatchInferenceRole")
    assert _table_grants(st) == {"dynamodb:PutItem": ["DUE#*"]} and _secrets(st) == set()
    assert _objects(st, "s3:GetObject*") == {"artifacts/inference/*"}
    assert _objects(st, "s3:PutObject") == {"artifacts/inference/*"}
    assert not _actions(st, "s3:Delete")
    invoke = [s for s in st if "lambda:InvokeFunction" in _actions([s])]
    assert invoke and all("FunctionsInference" in json.dumps(s["Resource"]) for s in invoke)
    (fn,) = [
        f["Properties"]
        for n, f in t.find_resources("AWS::Lambda::Function").items()
        if n.startswith("FunctionsBatchInference") and "Role" in f["Properties"]
    ]
    assert fn["Handler"] == "functions.events.batch_inference.handler"
    assert fn["Timeout"] == 900
    assert fn["Environment"]["Variables"]["CRUCIBLE_PREDICTOR"] == "lambda"
    # the testing setting that lets loopback http through is never deployed
    for f in t.find_resources("AWS::Lambda::Function").values():
        variables = f["Properties"].get("Environment", {}).get("Variables", {})
        assert "CRUCIBLE_URL_FETCH_ALLOW_LOOPBACK_HTTP_FOR_TESTING" not in variables


@pytest.mark.parametrize("env", ENVS)
def test_no_bedrock_permission_without_a_model(synth, env):
    assert "bedrock:" not in json.dumps(app_(synth, env).find_resources("AWS::IAM::Policy"))


@pytest.fixture(scope="module")
def bedrock(tmp_path_factory):
    """Two environments that name a Bedrock model: a foundation model, and a
    cross-region inference profile."""
    context = {
        "crucible:environments": {
            "chat": {"bedrock_model_id": "anthropic.claude-3-5-haiku-20241022-v1:0"},
            "chatx": {"bedrock_model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0"},
        }
    }
    app = build(cdk.App(context=context, outdir=str(tmp_path_factory.mktemp("bedrock.out"))))
    app.synth()  # cdk-nag: every finding acknowledged
    stacks = {s.stack_name: s for s in app.node.children if isinstance(s, cdk.Stack)}
    return {name: Template.from_stack(stack) for name, stack in stacks.items()}


def _bedrock_grants(t) -> dict[str, list[str]]:
    """Role -> the resources (as text) of every statement naming a bedrock action."""
    out: dict[str, list[str]] = {}
    for policy in t.find_resources("AWS::IAM::Policy").values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if _actions([st], "bedrock:"):
                assert _actions([st], "bedrock:") == {"bedrock:InvokeModel"}
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                for role in policy["Properties"]["Roles"]:
                    out.setdefault(role["Ref"][:-8], []).extend(
                        re.sub(r'[{}\[\]"]|Fn::Join|Ref|, ', "", json.dumps(r)) for r in resources
                    )
    return out


def test_bedrock_is_granted_to_the_api_for_the_configured_model_only(bedrock):
    plain = _bedrock_grants(bedrock["crucible-chat-app"])
    assert set(plain) == {"FunctionsApiRole"}
    (arn,) = plain["FunctionsApiRole"]
    assert arn.endswith(
        ":bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
    )
    assert "*" not in arn
    profile = _bedrock_grants(bedrock["crucible-chatx-app"])
    assert set(profile) == {"FunctionsApiRole"}
    arns = sorted(profile["FunctionsApiRole"])
    assert any(
        a.endswith(":inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0") for a in arns
    )
    # the profile's foundation model, in whichever region the profile routes to
    assert any(
        a.endswith(":bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0")
        for a in arns
    )
    for name, model in (
        ("chat", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("chatx", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ):
        fns = bedrock[f"crucible-{name}-app"].find_resources("AWS::Lambda::Function")
        api = next(
            f["Properties"]["Environment"]["Variables"]
            for f in fns.values()
            if f["Properties"].get("Handler") == "functions.api.handler.handler"
        )
        assert api["CRUCIBLE_BEDROCK_MODEL_ID"] == model
        assert api["CRUCIBLE_INTENT_PARSER"] == "bedrock"
    with pytest.raises(ConfigError):  # a wildcard is not a model
        load({"x1": {"bedrock_model_id": "anthropic.*"}})


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
    job = _definition(app_(synth, "dev"), "crucible-dev-trainer")
    role = job["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0]
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
    # Batch reports every stage's jobs on the account's default bus: only this stage's
    # queues reach this stage's handler.
    assert rule["EventPattern"]["detail"]["jobQueue"] == [
        {"suffix": f":job-queue/crucible-{env}-gpu"},
        {"suffix": f":job-queue/crucible-{env}-cpu"},
    ]
    # The local stack keeps its job runner's source (it has no forgers to fear).
    (route,) = [r for r in ROUTES if r.name == "batch-job-state-change"]
    local = route.pattern(ResourceNames.for_stage("local"), cloud=False)
    assert local["source"] == ["aws.batch", "crucible.local-batch"]


# --- seed 004: the evaluator, the sweeper and the API's side ------------------------------


def _definition(t, name: str) -> dict:
    """The properties of the job definition called ``name``."""
    found = [
        d["Properties"]
        for d in t.find_resources("AWS::Batch::JobDefinition").values()
        if d["Properties"]["JobDefinitionName"] == name
    ]
    # A job type's definition appears once its folder has a Dockerfile (batch.py, JOBS).
    assert len(found) == 1, (
        f"no job definition {name}: is its containers/<folder>/Dockerfile there?"
    )
    return found[0]


def _image_dockerfile(synth, env: str, image: dict) -> str:
    """The Dockerfile (relative to the repository, the build context) an image URI of the
    app stack is built from, as the stack's asset manifest records it."""
    digest = image["Fn::Sub"].rsplit(":", 1)[1]
    assets = json.loads((synth["out"] / f"crucible-{env}-app.assets.json").read_text())
    return assets["dockerImages"][digest]["source"]["dockerFile"]


@pytest.mark.parametrize("env", ENVS)
def test_evaluator_job_definition(synth, env):
    t = app_(synth, env)
    job = _definition(t, ResourceNames.for_stage(env).job_definition("evaluator"))
    assert job["PlatformCapabilities"] == ["EC2"]
    assert job["Parameters"] == {"job_id": "unset"}
    # Batch's backstop when SubmitJob sets none: the longest class (3600 s) and a margin;
    # the API sets each job's own (its class's seconds + 300, BatchJobRunner.submit).
    assert job["Timeout"] == {"AttemptDurationSeconds": 3600 + 300}
    c = job["ContainerProperties"]
    # after the image's ENTRYPOINT (/opt/worker/bin/python -m crucible_evaluator): Batch fills in Ref::job_id
    assert c["Command"] == ["--job-id", "Ref::job_id"]
    assert _image_dockerfile(synth, env, c["Image"]) == "containers/evaluator/Dockerfile"
    # the seed's small class by default; SubmitJob overrides both with the job's class
    assert sorted(c["ResourceRequirements"], key=lambda r: r["Type"]) == [
        {"Type": "MEMORY", "Value": "2048"},
        {"Type": "VCPU", "Value": "1"},
    ]
    # privileged (Docker's seccomp profile refuses bubblewrap its user namespaces), and so
    # hardened: read-only root, a non-root user (no capability of its own), one writable path
    assert c["Privileged"] is True
    assert c["ReadonlyRootFilesystem"] is True
    assert c["User"] == EVALUATOR_USER and c["User"].split(":")[0] not in ("0", "root")
    # /tmp: a tmpfs of the job's own, never the instance's disk (which a submission could
    # fill for every job there); writable by uid 10001 (1777, sticky), no setuid, devices
    # or executables; as large as the largest class's memory, which its pages count against
    assert "Volumes" not in c and "MountPoints" not in c  # nothing on the instance's disk
    largest = max(k.memory_mib for k in parse_resource_classes(RESOURCE_CLASSES).values())
    assert largest == 4096  # the seed's medium class
    assert c["LinuxParameters"] == {  # no devices, shared memory or swap of the host
        "Tmpfs": [
            {
                "ContainerPath": "/tmp",
                "Size": largest,
                "MountOptions": ["rw", "nosuid", "nodev", "noexec", "mode=1777"],
            }
        ]
    }
    assert "FargatePlatformConfiguration" not in c and "NetworkConfiguration" not in c
    variables = {v["Name"]: v["Value"] for v in c["Environment"]}
    names = ResourceNames.for_stage(env)
    assert variables["CRUCIBLE_STAGE"] == env
    assert variables["CRUCIBLE_TABLE_NAME"] == names.table
    assert variables["CRUCIBLE_UPLOADS_BUCKET"] == names.uploads_bucket
    assert variables["CRUCIBLE_ARTIFACTS_BUCKET"] == names.artifacts_bucket
    assert variables["CRUCIBLE_RESOURCE_CLASSES"] == RESOURCE_CLASSES
    assert variables["TMPDIR"] == variables["HOME"] == "/tmp"  # the one writable path
    assert "CRUCIBLE_SANDBOX_PYTHON" not in variables  # the image names its interpreter
    assert "TrackingServerArn" in json.dumps(variables["CRUCIBLE_MLFLOW_TRACKING_URI"])
    assert "JwtSecret" in json.dumps(variables["CRUCIBLE_JWT_SECRET_ARN"])  # an ARN, no grant
    assert not any("UNSANDBOXED" in name for name in variables)  # the sandbox is required
    role = c["JobRoleArn"]["Fn::GetAtt"][0]
    assert role.startswith("BatchEvaluatorJobRole")


@pytest.mark.parametrize("env", ENVS)
def test_the_evaluator_runs_where_jobs_have_no_internet(synth, env):
    """Its queue's only compute environment is an EC2 one of its own (ECS-optimized
    AL2023, IMDSv2 only, no public address): in the same isolated subnets as the GPU jobs'
    (which ``test_batch_jobs_have_no_internet`` checks have no route out), with a security
    group that admits nothing and that the VPC endpoints admit."""
    t = app_(synth, env)
    (queue,) = [
        q["Properties"]
        for q in t.find_resources("AWS::Batch::JobQueue").values()
        if q["Properties"]["JobQueueName"] == f"crucible-{env}-cpu"
    ]
    (order,) = queue["ComputeEnvironmentOrder"]
    envs = t.find_resources("AWS::Batch::ComputeEnvironment")
    cpu_id = order["ComputeEnvironment"]["Fn::GetAtt"][0]
    cpu = envs[cpu_id]["Properties"]["ComputeResources"]
    assert cpu["Type"] in ("EC2", "SPOT")
    assert cpu["Ec2Configuration"] == [{"ImageType": "ECS_AL2023"}]
    assert all(re.fullmatch(r"[cmr][67][ia]\.\d*x?large", i) for i in cpu["InstanceTypes"])
    # its instances run the evaluator's jobs only: no other queue uses this environment
    users = [
        o["ComputeEnvironment"]["Fn::GetAtt"][0]
        for q in t.find_resources("AWS::Batch::JobQueue").values()
        for o in q["Properties"]["ComputeEnvironmentOrder"]
    ]
    assert users.count(cpu_id) == 1
    # IMDSv2 only, one hop; no public address, no key, no user data of its own
    template = t.find_resources("AWS::EC2::LaunchTemplate")[
        cpu["LaunchTemplate"]["LaunchTemplateId"]["Ref"]
    ]
    data = template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
    }
    assert not {"NetworkInterfaces", "KeyName", "UserData", "IamInstanceProfile"} & set(data)
    (gpu,) = [e["Properties"]["ComputeResources"] for n, e in envs.items() if n != cpu_id]
    assert cpu["Subnets"] == gpu["Subnets"] and len(cpu["Subnets"]) == 2
    for subnet in cpu["Subnets"]:
        props = t.find_resources("AWS::EC2::Subnet")[subnet["Ref"]]["Properties"]
        assert "Isolated" in json.dumps(props["Tags"]) and not props.get("MapPublicIpOnLaunch")
    (group,) = cpu["SecurityGroupIds"]
    sg = group["Fn::GetAtt"][0]
    assert (
        "SecurityGroupIngress" not in t.find_resources("AWS::EC2::SecurityGroup")[sg]["Properties"]
    )
    admitted = {
        i["Properties"]["GroupId"]["Fn::GetAtt"][0]
        for i in t.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if i["Properties"].get("SourceSecurityGroupId") == group
    }
    endpoints = t.find_resources("AWS::EC2::VPCEndpoint")
    interface = {
        e["Properties"]["SecurityGroupIds"][0]["Fn::GetAtt"][0]
        for e in endpoints.values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    }
    assert admitted == interface and len(interface) == 7  # ECR x2, logs, ECS x3, MLflow


def test_only_the_evaluator_is_privileged_and_alone_on_its_queue():
    """Privileged only where a non-root worker needs user namespaces for its sandbox; the
    CPU queue (and so its instances) holds the evaluator's jobs only."""
    assert [j.name for j in JOBS if j.privileged] == ["evaluator"]
    assert [j.name for j in JOBS if j.queue == "cpu"] == ["evaluator"]
    (evaluator,) = [j for j in JOBS if j.privileged]
    assert evaluator.user == EVALUATOR_USER != "0" and evaluator.read_only_root
    with pytest.raises(ValueError, match="non-root"):
        JobType("x", "containers/x", "cpu", vcpus=1, memory_mib=512, privileged=True)
    with pytest.raises(ValueError, match="non-root"):
        JobType("x", "containers/x", "cpu", 1, 512, user="0:0", privileged=True)


def test_evaluator_job_role(synth):
    """Its job, submission, board, slots and events; submitted files read by key, its
    logs written; MLflow logging only. Batch gives the job no identity of its own, so the
    role covers every submission and job of these shapes, not only this one's."""
    st = _statements(app_(synth, "dev"), "BatchEvaluatorJobRole")
    assert _table_grants(st) == {
        "dynamodb:GetItem": ["EVALUATION#*", "SUBMISSION#*"],  # the job and what it runs
        "dynamodb:UpdateItem": ["ACTIVE#*", "EVALUATION#*"],  # the job; at its end, the slot
        "dynamodb:PutItem": ["BOARD#*", "EVENT#*", "EVENTS#job:*"],  # its board entry, events
    }
    assert _secrets(st) == set() and not _actions(st, "secretsmanager:")
    assert _actions(st, "s3:") == {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert _objects(st, "s3:GetObject") == {"uploads/submissions/*"}
    assert _objects(st, "s3:PutObject") == {"artifacts/evaluations/*"}
    mlflow = _actions(st, "sagemaker-mlflow:")
    assert {"sagemaker-mlflow:CreateRun", "sagemaker-mlflow:LogBatch"} <= mlflow
    assert not {a for a in mlflow if a.split(":")[1].startswith(("Delete", "Search", "Access"))}
    assert "sagemaker-mlflow:*" not in mlflow
    (tracking,) = [s for s in st if _actions([s], "sagemaker-mlflow:")]
    assert tracking["Resource"]["Fn::GetAtt"][1] == "TrackingServerArn"  # the one server
    assert not _actions(st, "batch:") and not _actions(st, "lambda:")


@pytest.mark.parametrize("env", ENVS)
def test_the_sweeper_runs_every_minute(synth, env):
    t = app_(synth, env)
    (schedule,) = t.find_resources("AWS::Scheduler::Schedule").values()
    p = schedule["Properties"]
    assert p["ScheduleExpression"] == "rate(1 minute)" and p["State"] == "ENABLED"
    assert p["Name"] == f"crucible-{env}-sweeper"
    target = p["Target"]
    fn = target["Arn"]["Fn::GetAtt"][0]
    assert fn.startswith("FunctionsSweeper")
    handler = t.find_resources("AWS::Lambda::Function")[fn]["Properties"]["Handler"]
    assert handler == "functions.events.reconciler.handler"
    dlq = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert dlq.startswith("EventsDeadLetters")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # a failed sweep is not retried (the next minute's is) but dead-lettered
    t.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": fn},
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq, "Arn"]}}},
        },
    )
    # Scheduler's role: assumed on this schedule's behalf only; it invokes the sweeper
    # and dead-letters, nothing else
    role = target["RoleArn"]["Fn::GetAtt"][0]
    trust = t.find_resources("AWS::IAM::Role")[role]["Properties"]["AssumeRolePolicyDocument"]
    (assume,) = trust["Statement"]
    assert assume["Principal"] == {"Service": "scheduler.amazonaws.com"}
    source = assume["Condition"]["StringEquals"]
    arn = json.dumps(source["aws:SourceArn"])
    assert arn.endswith(f':schedule/default/crucible-{env}-sweeper"]]}}')
    assert source["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    st = _statements(t, role[:-8])
    assert _actions(st) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    for s in st:
        assert fn in json.dumps(s["Resource"]) or dlq in json.dumps(s["Resource"])


def test_sweeper_role(synth):
    """Jobs not ended (the sparse ACTIVE#EVALUATION partition of GSI2, nothing else of
    it), each past its deadline ended failed with its slot given back and told on its
    topic, its Batch job stopped. No user, submission, object or secret; it starts nothing."""
    t = app_(synth, "dev")
    st = _statements(t, "FunctionsSweeperRole")
    assert EVALUATIONS_ACTIVE == "ACTIVE#EVALUATION"
    # As the reconciler: the deadlines due (DUE#<shard>) and the analyses and training
    # jobs they name, told on their topics; Batch asked, and a job submitted again.
    # And datasets in flight past their deadline (DatasetService.sweep): the sparse
    # ACTIVE#DATASET partition of GSI2, each failed and told, its leftovers deleted.
    assert _table_grants(st) == {
        "dynamodb:Query": ["DUE#*", "GSI2/ACTIVE#DATASET", f"GSI2/{EVALUATIONS_ACTIVE}"],
        "dynamodb:GetItem": ["EVALUATION#*", "FILE#*", "JOB#*"],
        "dynamodb:UpdateItem": ["ACTIVE#*", "DATASET#*", "EVALUATION#*", "FILE#*", "JOB#*"],
        "dynamodb:PutItem": [
            "DUE#*",
            "EVENT#*",
            "EVENTS#dataset:*",
            "EVENTS#file:*",
            "EVENTS#job:*",
        ],
        "dynamodb:DeleteItem": ["DUE#*"],
    }
    assert _actions(st, "batch:") == {"batch:TerminateJob", "batch:SubmitJob", "batch:DescribeJobs"}
    assert _actions(st, "events:") == {"events:PutEvents"}  # an analysis queued again
    # did an archive arrive? and a seed 003 batch past its deadline, ended in its result
    assert _objects(st, "s3:GetObject*") == {"uploads/datasets/*", "artifacts/inference/*"}
    assert _objects(st, "s3:DeleteObject*") == {"uploads/datasets/*"}
    assert _objects(st, "s3:PutObject") == {"artifacts/inference/*"} and _secrets(st) == set()
    (fn,) = [
        f["Properties"]
        for n, f in t.find_resources("AWS::Lambda::Function").items()
        if n.startswith("FunctionsSweeper")
    ]
    assert fn["Environment"]["Variables"]["CRUCIBLE_JOB_RUNNER"] == "batch"  # terminates


@pytest.mark.parametrize("env", ENVS)
def test_the_api_submits_and_stops_the_evaluator(synth, env):
    t = app_(synth, env)
    names = ResourceNames.for_stage(env)
    st = _statements(t, "FunctionsApiRole")
    (submit,) = [s for s in st if "batch:SubmitJob" in _actions([s])]
    resources = json.dumps(submit["Resource"])
    assert f"job-definition/{names.job_definition('evaluator')}:*" in resources
    assert f"job-definition/{names.job_definition('trainer')}:*" in resources
    queues = {
        n: q["Properties"]["JobQueueName"]
        for n, q in t.find_resources("AWS::Batch::JobQueue").items()
    }
    submit_queues = {queues[r["Fn::GetAtt"][0]] for r in submit["Resource"] if "Fn::GetAtt" in r}
    assert names.cpu_queue in submit_queues
    (stop,) = [s for s in st if "batch:TerminateJob" in _actions([s])]
    assert ":job/*" in json.dumps(stop["Resource"])
    (api,) = [
        f["Properties"]
        for n, f in t.find_resources("AWS::Lambda::Function").items()
        if n.startswith("FunctionsApi") and f["Properties"].get("Handler")
    ]
    variables = api["Environment"]["Variables"]
    assert variables["CRUCIBLE_RESOURCE_CLASSES"] == RESOURCE_CLASSES
    # the results' links: the managed MLflow server's URL, read at deploy time
    url = variables["CRUCIBLE_MLFLOW_UI_URL"]["Fn::GetAtt"]
    assert url[1] == "TrackingServerUrl"
    lookup = t.find_resources("Custom::AWS")[url[0]]["Properties"]
    assert "describeMlflowTrackingServer" in lookup["Create"]
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for n, p in t.find_resources("AWS::IAM::Policy").items()
        if n.startswith(url[0][:-8] + "CustomResourcePolicy")  # its id, less the hash
    ]
    (describe,) = policy  # that one call, on that one server
    assert describe["Action"] == "sagemaker:DescribeMlflowTrackingServer"
    assert describe["Resource"]["Fn::GetAtt"][1] == "TrackingServerArn"


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        # the default types: c6i/m6i large to 2xlarge, at most 8 vCPU and 32 GiB (30.4 usable)
        (
            {"resource_classes": "big=60:8192:16"},
            "resource class 'big' asks for 16 vCPU and 8192 MiB (+512 MiB for the worker: "
            "8704 MiB); no type of cpu_instance_types holds that (m6i.2xlarge has 8 vCPU and "
            "31129 MiB for jobs)",
        ),
        (
            {"resource_classes": "fat=60:30720:8"},  # 30 GiB + the worker's 512 MiB
            "no type of cpu_instance_types holds that (m6i.2xlarge has 8 vCPU and 31129 MiB",
        ),
        (
            {
                "resource_classes": "odd=60:4096:2,wide=60:20000:4",
                "cpu_instance_types": ["c6i.xlarge", "r6i.large"],
            },
            "'wide' asks for 4 vCPU and 20000 MiB (+512 MiB for the worker: 20512 MiB); no type "
            "of cpu_instance_types holds that (c6i.xlarge has 4 vCPU and 7782 MiB for jobs, "
            "r6i.large 2 vCPU and 15564 MiB)",
        ),
        ({"resource_classes": "tiny=60:512:0.25"}, "0.25 vCPU; a job on EC2 reserves whole vCPUs"),
        ({"resource_classes": "x=60:2048:1.5"}, "1.5 vCPU; a job on EC2 reserves whole vCPUs"),
        (
            {"resource_classes": "huge=60:16384:8", "cpu_max_vcpus": 4},
            "asks for 8 vCPU but the CPU environment has cpu_max_vcpus=4",
        ),
        ({"resource_classes": "small=1800"}, "write each class as name=seconds:MiB:vCPU"),
        ({"cpu_instance_types": ["c6g.large"]}, "'c6g.large' is not a CPU instance type"),
        ({"cpu_instance_types": ["t3.micro"]}, "use a c, m or r family of the 6th or 7th"),
        ({"cpu_instance_types": []}, "cpu_instance_types: List should have at least 1 item"),
    ],
)
def test_resource_classes_must_fit_the_cpu_instances(settings, says):
    """A class no CPU instance type can hold (its vCPU, its memory plus the worker's 512
    MiB, within what the instance leaves to jobs), or a type this stack cannot size, stops
    synth, naming the environment, the class and what the types offer (no template is
    built; this needs no synth)."""
    context = {"dev": {"cpu_max_vcpus": 8, **settings}}
    with pytest.raises(ConfigError, match=re.escape(says)) as err:
        load(context)
    assert str(err.value).startswith("cdk.json crucible:environments.dev:")
    app = cdk.App(context={"crucible:environments": context})
    with pytest.raises(ConfigError):
        build(app)


def test_resource_classes_that_fit_are_passed_on_as_written():
    (env,) = load(
        {
            "prod": {
                "resource_classes": " small=600:512:1 , large=7200:28672:8",
                "cpu_instance_types": ["m6i.2xlarge", "c6i.large", "m6i.2xlarge"],
            }
        }
    ).values()
    assert env.resource_classes == "small=600:512:1,large=7200:28672:8"
    assert {c.name: (c.vcpu, c.memory_mib) for c in env.classes.values()} == {
        "small": (1, 512),
        "large": (8, 28672),
    }
    assert env.cpu_instance_types == ["m6i.2xlarge", "c6i.large"]


def test_the_worker_share_is_the_one_the_api_asks_for():
    """What the config adds to each class for the worker is what BatchJobRunner.submit
    asks Batch for on top of the class's memory, with the class's vCPU."""
    from infra.config import WORKER_MIB
    from shared.adapters.runners import BatchJobRunner
    from shared.settings import parse_resource_classes

    class Client:
        def submit_job(self, **kwargs):
            self.sent = kwargs
            return {"jobId": "b-1"}

    client = Client()
    runner = BatchJobRunner(client, queues={"cpu": "q"}, definitions={"evaluator": "d"})
    (cls,) = parse_resource_classes("small=1800:2048:2").values()
    runner.submit("j-1", job_type="evaluator", queue="cpu", limits=cls)
    asked = {
        r["type"]: r["value"] for r in client.sent["containerOverrides"]["resourceRequirements"]
    }
    assert asked == {"MEMORY": str(2048 + WORKER_MIB), "VCPU": "2"}


def test_image_contexts_leave_out_local_environments(synth):
    """Images build from the repository (they need shared/), less what only this machine
    has: virtual environments (the sandbox's interpreter, .sandbox/, is gigabytes), local
    data, build output."""
    assets = json.loads((synth["out"] / "crucible-dev-app.assets.json").read_text())
    images = assets["dockerImages"].values()
    assert images
    for image in images:
        staged = synth["out"] / image["source"]["directory"]
        assert (staged / "shared").is_dir() and (staged / "pyproject.toml").is_file()
        local = (".venv", ".sandbox", ".ministack", ".crucible", "build", "cdk.out", ".git")
        assert not [name for name in local if (staged / name).exists()], staged


def test_the_evaluator_image_matches_its_job_definition():
    """What the definition assumes of containers/evaluator/Dockerfile: the command is the
    arguments after its ENTRYPOINT, its user is the definition's, and no writable path is
    a VOLUME there: each is the job's tmpfs (its mode, 1777, from the mount's options), and
    a VOLUME would put it back on the instance's disk wherever the tmpfs is not mounted."""
    (job,) = [j for j in JOBS if j.name == "evaluator"]
    text = (ROOT / job.folder / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]

    def last(instruction: str) -> str:
        found = [line.split(None, 1)[1] for line in lines if line.startswith(instruction + " ")]
        assert found, f"{job.folder}/Dockerfile has no {instruction}"
        return found[-1]

    assert json.loads(last("ENTRYPOINT")) == ["/opt/worker/bin/python", "-m", "crucible_evaluator"]
    assert job.command == ("--job-id", "Ref::job_id")
    assert last("USER") == job.user == EVALUATOR_USER
    volumes = {
        v.rstrip("/") or "/"
        for line in lines
        if line.upper().startswith("VOLUME ")
        for v in (
            json.loads(line.split(None, 1)[1])
            if line.split(None, 1)[1].startswith("[")
            else line.split()[1:]
        )
    }
    assert job.tmpfs == ("/tmp",)
    declared = volumes & set(job.tmpfs)
    assert not declared, f"{job.folder}/Dockerfile declares VOLUME {sorted(declared)}: drop it"


def test_the_evaluator_tmpfs_follows_the_resource_classes():
    """The tmpfs's size is the largest configured class's memory, whatever the classes:
    never more than a job of the largest class may use (its memory limit is that plus the
    worker's share), so the memory cgroup bounds what it holds either way."""
    (job,) = [j for j in JOBS if j.name == "evaluator"]
    envs = load({"seed": {}, "custom": {"resource_classes": "tiny=60:512:1,big=600:12288:4"}})
    assert tmpfs_mib(envs["seed"], job) == 4096
    assert tmpfs_mib(envs["custom"], job) == 12288
    for env in envs.values():
        most = max(c.memory_mib for c in env.classes.values())
        assert tmpfs_mib(env, job) == most < most + EVALUATION_WORKER_MIB
    (trainer,) = [j for j in JOBS if j.name == "trainer"]
    assert not trainer.tmpfs and tmpfs_mib(envs["seed"], trainer) == trainer.memory_mib
