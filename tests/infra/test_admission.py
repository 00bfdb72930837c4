"""Admission and cost in the templates (issue 16): the API's reserved concurrency and the
caps of the background functions, analysis and ingest behind queues with a concurrency
cap, fair share on the job queues with each user's jobs under a share of their own,
retries that survive a lost host, and checkpoint versions that expire."""

import json
import re

import pytest

cdk = pytest.importorskip("aws_cdk")
from aws_cdk.assertions import Match  # noqa: E402

from infra.config import ASYNC_EVENT_HANDLERS, QUEUED, ConfigError, load  # noqa: E402
from infra.constructs.events import WORK_RECEIVES  # noqa: E402
from shared.routing import ROUTES  # noqa: E402
from shared.settings import ResourceNames  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")
CONFIG = load(json.loads((ROOT / "cdk.json").read_text())["context"]["crucible:environments"])


def app_(synth, env):
    return synth["t"][f"crucible-{env}-app"]


def functions_by_handler(t) -> dict[str, tuple[str, dict]]:
    """Each zip function's handler -> (its logical id, its properties)."""
    return {
        f["Properties"]["Handler"]: (fid, f["Properties"])
        for fid, f in t.find_resources("AWS::Lambda::Function").items()
        if "Handler" in f["Properties"]
    }


def capped_readers(t) -> dict[str, dict]:
    """The functions that read a queue with a concurrency cap -> their mapping."""
    return {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in t.find_resources("AWS::Lambda::EventSourceMapping").values()
        if "ScalingConfig" in m["Properties"]
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_api_keeps_its_share_of_the_pool_and_async_handlers_are_capped(synth, env):
    t, config = app_(synth, env), CONFIG[env]
    fns = functions_by_handler(t)
    _, api = fns["functions.api.handler.handler"]
    assert api.get("ReservedConcurrentExecutions") == config.api_reserved_concurrency
    for module in ASYNC_EVENT_HANDLERS:
        _, fn = fns[f"{module}.handler"]
        assert fn.get("ReservedConcurrentExecutions") == config.event_reserved_concurrency
    # the queued ones are capped by their queue's reader, not by a reservation
    functions = t.find_resources("AWS::Lambda::Function")
    readers = capped_readers(t)
    assert len(readers) == len(QUEUED)
    for fid in readers:
        assert "ReservedConcurrentExecutions" not in functions[fid]["Properties"], fid
    # what the environment reserves leaves Lambda's minimum of the account unreserved
    total = sum(
        f["Properties"].get("ReservedConcurrentExecutions", 0)
        for f in t.find_resources("AWS::Lambda::Function").values()
    )
    assert total == config.reserved_concurrency <= config.account_concurrency - 100


def test_prod_reserves_for_the_api_and_dev_reserves_nothing(synth):
    """A new account's pool (10) allows no reservation: dev reserves none."""
    assert CONFIG["prod"].api_reserved_concurrency and CONFIG["prod"].event_reserved_concurrency
    assert CONFIG["dev"].reserved_concurrency == 0


def test_reservations_beyond_the_account_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"api_reserved_concurrency.*unreserved"):
        load({"prod": {"api_reserved_concurrency": 900, "event_reserved_concurrency": 10}})
    with pytest.raises(ConfigError, match="analysis_max_concurrency"):
        load({"prod": {"analysis_max_concurrency": 1}})  # Lambda's minimum is 2


@pytest.mark.parametrize("env", ENVS)
def test_analysis_and_ingest_read_queues_with_a_concurrency_cap(synth, env):
    t, config = app_(synth, env), CONFIG[env]
    queues = t.find_resources("AWS::SQS::Queue")
    functions = t.find_resources("AWS::Lambda::Function")
    mappings = list(capped_readers(t).values())
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in t.find_resources("AWS::Events::Rule").values()
    }
    seen = set()
    for module, setting in QUEUED.items():
        short = module.rsplit(".", 1)[1]
        qid, queue = next(
            (qid, q)
            for qid, q in queues.items()
            if q["Properties"].get("QueueName") == f"crucible-{env}-{short}"
        )
        props = queue["Properties"]
        # its rules' target: the queue, with the events dead-letter queue behind delivery
        for route in (r for r in ROUTES if r.handler == module):
            (target,) = rules[f"crucible-{env}-{route.name}"]["Targets"]
            assert target["Arn"] == {"Fn::GetAtt": [qid, "Arn"]}
            assert target["DeadLetterConfig"] and target["RetryPolicy"]["MaximumRetryAttempts"]
            seen.add(route.name)
        # its reader: one message an invocation, failures reported per message, capped
        mapping = next(m for m in mappings if m["EventSourceArn"] == {"Fn::GetAtt": [qid, "Arn"]})
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": getattr(config, setting)}
        assert mapping["BatchSize"] == 1
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        fn = functions[mapping["FunctionName"]["Ref"]]["Properties"]
        # hidden for 6x the function's timeout while at work, then dead-lettered
        assert props["VisibilityTimeout"] >= 6 * fn["Timeout"]
        assert props["RedrivePolicy"]["maxReceiveCount"] == WORK_RECEIVES
        dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert queues[dlq]["Properties"]["QueueName"] == ResourceNames.for_stage(env).events_dlq
        # a dead-letter queue counts a message's age from its first send: it keeps longer
        assert props["MessageRetentionPeriod"] < queues[dlq]["Properties"]["MessageRetentionPeriod"]
        assert props["SqsManagedSseEnabled"] is True
    assert seen == {r.name for r in ROUTES if r.handler in QUEUED}
    # only EventBridge may send to them, on the stage's own rules' behalf
    for policy in t.find_resources("AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Action") == "sqs:SendMessage" and statement["Effect"] == "Allow":
                assert statement["Principal"] == {"Service": "events.amazonaws.com"}
                assert "aws:SourceArn" in statement["Condition"]["ArnEquals"]


@pytest.mark.parametrize("env", ENVS)
def test_queued_functions_are_not_invoked_asynchronously(synth, env):
    """Nothing but their queue invokes them: no async-invoke configuration, no
    EventBridge permission; the others keep theirs (retries, then the dead-letter queue)."""
    t = app_(synth, env)
    fns = functions_by_handler(t)
    queued = set(capped_readers(t))
    configs = t.find_resources("AWS::Lambda::EventInvokeConfig")
    configured = {c["Properties"]["FunctionName"]["Ref"] for c in configs.values()}
    assert queued and not queued & configured
    for module in ASYNC_EVENT_HANDLERS:
        assert fns[f"{module}.handler"][0] in configured
    for p in t.find_resources("AWS::Lambda::Permission").values():
        if p["Properties"]["Principal"] == "events.amazonaws.com":
            assert p["Properties"]["FunctionName"]["Fn::GetAtt"][0] not in queued


@pytest.mark.parametrize("env", ENVS)
def test_both_job_queues_schedule_by_fair_share(synth, env):
    t, config = app_(synth, env), CONFIG[env]
    (pid, policy), *more = t.find_resources("AWS::Batch::SchedulingPolicy").items()
    assert not more
    fair = policy["Properties"]["FairsharePolicy"]
    assert fair["ShareDecaySeconds"] == config.fair_share_decay_hours * 3600
    assert fair["ComputeReservation"] == config.fair_share_reserve
    names = ResourceNames.for_stage(env)
    queues = {
        q["Properties"]["JobQueueName"]: q["Properties"]
        for q in t.find_resources("AWS::Batch::JobQueue").values()
    }
    assert set(queues) == {names.gpu_queue, names.cpu_queue}
    for q in queues.values():
        assert q["SchedulingPolicyArn"] == {"Fn::GetAtt": [pid, "Arn"]}


def test_each_user_submits_under_a_share_of_their_own():
    """The request BatchJobRunner.submit makes, as botocore serialises and validates it
    against Batch's API model (stopped before it is sent): the owner's share identifier."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from shared.adapters.runners import FAIR_SHARES, BatchJobRunner, share_identifier

    client = boto3.client(
        "batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    sent = []

    def capture(request, **_):
        sent.append(json.loads(request.body))

        class Raw:
            def stream(self, **_):
                yield b'{"jobId": "b-1", "jobName": "n", "jobArn": "a"}'

        return AWSResponse(request.url, 200, {}, Raw())

    client.meta.events.register("before-send.batch.SubmitJob", capture)
    runner = BatchJobRunner(client, queues={"gpu": "q"}, definitions={"trainer": "d"})
    assert runner.submit("7", job_type="trainer", queue="gpu", attempt=2, owner=42) == "b-1"
    assert runner.submit("8", job_type="trainer", queue="gpu", owner=42) == "b-1"
    assert runner.submit("9", job_type="trainer", queue="gpu") == "b-1"
    assert sent[0]["shareIdentifier"] == sent[1]["shareIdentifier"] == share_identifier(42)
    assert sent[2]["shareIdentifier"] == "system"
    # letters and digits (Batch's rule), and a bounded set (Batch tracks 500 a queue)
    shares = {share_identifier(uid) for uid in range(1, 20_001)}
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,255}", s) for s in shares)
    assert FAIR_SHARES * 0.95 <= len(shares) <= FAIR_SHARES < 500


@pytest.mark.parametrize("env", ENVS)
def test_a_trainer_checkpoints_at_the_configured_interval(synth, env):
    t, config = app_(synth, env), CONFIG[env]
    definitions = t.find_resources("AWS::Batch::JobDefinition")
    trainer = next(
        d["Properties"]
        for d in definitions.values()
        if d["Properties"]["JobDefinitionName"].endswith("trainer")
    )
    environment = {e["Name"]: e["Value"] for e in trainer["ContainerProperties"]["Environment"]}
    assert environment["CRUCIBLE_CHECKPOINT_INTERVAL_S"] == str(config.checkpoint_interval_s)
    # a job whose host was reclaimed runs again (from its last checkpoint); nothing else does
    assert trainer["RetryStrategy"]["Attempts"] >= 2
    assert trainer["RetryStrategy"]["EvaluateOnExit"] == [
        {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
        {"Action": "EXIT", "OnReason": "*"},
    ]


@pytest.mark.parametrize("env", ENVS)
def test_overwritten_checkpoints_expire_after_the_configured_days(synth, env):
    t, config = synth["t"][f"crucible-{env}-data"], CONFIG[env]
    names = ResourceNames.for_stage(env)
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": names.artifacts_bucket,
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        {
                            "Prefix": "jobs/",
                            "NoncurrentVersionExpiration": {
                                "NoncurrentDays": config.checkpoint_versions_days
                            },
                            "Status": "Enabled",
                        }
                    ]
                )
            },
        },
    )


@pytest.mark.parametrize("env", ENVS)
def test_no_function_runs_in_a_vpc(synth, env):
    """The gateway endpoints (S3, DynamoDB) serve the Batch subnets, which have no other
    way out; the functions run outside any VPC, so they need no endpoint and no NAT."""
    t = app_(synth, env)
    assert all(
        "VpcConfig" not in f["Properties"]
        for f in t.find_resources("AWS::Lambda::Function").values()
    )
    services = {
        json.dumps(e["Properties"]["ServiceName"])
        for e in t.find_resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    assert any(".s3" in s for s in services) and any(".dynamodb" in s for s in services)


def test_every_expensive_route_is_one_the_app_serves():
    """The throttled methods name real routes (a renamed route would otherwise leave its
    throttle on a path nobody calls)."""
    from functions.api.app import create_app
    from infra.constructs.api import EXPENSIVE_ROUTES
    from shared.settings import load_settings

    served = create_app(load_settings(), container=object()).openapi()["paths"]
    for method, path in EXPENSIVE_ROUTES:
        assert method.lower() in served.get(path, {}), (method, path)


def resource_paths(t) -> dict[str, str]:
    """Each API Gateway resource's logical id -> its path."""
    resources = t.find_resources("AWS::ApiGateway::Resource")

    def path(rid: str) -> str:
        props = resources[rid]["Properties"]
        parent = props["ParentId"]
        above = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{above}/{props['PathPart']}"

    return {rid: path(rid) for rid in resources}


@pytest.mark.parametrize("env", ENVS)
def test_expensive_routes_have_throttles_of_their_own_and_every_path_still_routes(synth, env):
    from infra.constructs.api import EXPENSIVE_ROUTES

    t, config = app_(synth, env), CONFIG[env]
    paths = resource_paths(t)
    methods = {
        (m["Properties"]["HttpMethod"], paths.get(m["Properties"]["ResourceId"].get("Ref"), "/"))
        for m in t.find_resources("AWS::ApiGateway::Method").values()
    }
    (stage,) = t.find_resources("AWS::ApiGateway::Stage").values()
    settings = {
        (s["HttpMethod"], s["ResourcePath"]): s for s in stage["Properties"]["MethodSettings"]
    }
    everything = settings[("*", "/*")]
    assert everything["ThrottlingRateLimit"] == config.throttle_rate
    for method, path in EXPENSIVE_ROUTES:
        assert (method, path) in methods
        s = settings[(method, "/" + path.replace("/", "~1"))]  # JSON Pointer escaping
        assert s["ThrottlingRateLimit"] == config.expensive_throttle_rate
        assert s["ThrottlingBurstLimit"] == config.expensive_throttle_burst
    # every resource takes any method, and has somewhere below it for deeper paths
    for path in set(paths.values()) | {"/"}:
        assert ("ANY", path) in methods, path
        below = [p for p in paths.values() if p.rsplit("/", 1)[0] == path.rstrip("/")]
        assert path.endswith("{proxy+}") or any(
            p.rsplit("/", 1)[1].startswith("{") for p in below
        ), path
    # one permission for the methods added here, not one per method (the function's
    # resource policy is limited to 20 KB): the proxy's own four, and that one
    api_fn, _ = functions_by_handler(t)["functions.api.handler.handler"]
    permissions = [
        p
        for p in t.find_resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [api_fn, "Arn"]}
    ]
    assert len(permissions) == 5


@pytest.mark.parametrize("env", ENVS)
def test_a_queue_that_falls_behind_raises_an_alarm(synth, env):
    from infra.constructs.monitoring import QUEUE_BACKLOG_S

    t = app_(synth, env)
    queues = {
        qid
        for qid, q in t.find_resources("AWS::SQS::Queue").items()
        if "RedrivePolicy" in q["Properties"]
    }
    watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in t.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
        and a["Properties"]["Threshold"] == QUEUE_BACKLOG_S
        and a["Properties"]["AlarmActions"]
    }
    assert queues and watched == queues


# --- per-client limits behind CloudFront ----------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_cloudfront_tells_the_api_the_viewer_address_with_a_secret(synth, env):
    """Every API behaviour writes the viewer's address (the function) and the
    distribution's secret (an origin header, resolved from Secrets Manager at deploy, so
    it is not in the template); the API function gets the secret's ARN and may read it."""
    from infra.constructs.console import API_PATHS, ORIGIN_VERIFY_HEADER

    t = app_(synth, env)
    (distribution,) = t.find_resources("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    (secret_id,) = [
        sid
        for sid, s in t.find_resources("AWS::SecretsManager::Secret").items()
        if ORIGIN_VERIFY_HEADER in s["Properties"].get("Description", "")
    ]
    functions = {
        fid: f["Properties"]
        for fid, f in t.find_resources("AWS::CloudFront::Function").items()
        if "viewer's address" in f["Properties"]["FunctionConfig"]["Comment"]
    }
    (function_id,) = functions
    (api_origin,) = [o for o in config["Origins"] if "OriginCustomHeaders" in o]
    (header,) = api_origin["OriginCustomHeaders"]
    assert header["HeaderName"] == ORIGIN_VERIFY_HEADER
    assert header["HeaderValue"] == {
        "Fn::Join": ["", ["{{resolve:secretsmanager:", {"Ref": secret_id}, ":SecretString:::}}"]]
    }
    behaviours = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    for path in API_PATHS:
        b = behaviours[path]
        assert b["TargetOriginId"] == api_origin["Id"]
        assert b["FunctionAssociations"] == [
            {
                "EventType": "viewer-request",
                "FunctionARN": {"Fn::GetAtt": [function_id, "FunctionARN"]},
            }
        ]
    _, api = functions_by_handler(t)["functions.api.handler.handler"]
    assert api["Environment"]["Variables"]["CRUCIBLE_ORIGIN_SECRET_ARN"] == {"Ref": secret_id}
    role = api["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in t.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(
        s["Resource"] == {"Ref": secret_id} and "secretsmanager:GetSecretValue" in s["Action"]
        for s in statements
    )


def test_the_viewer_address_is_cloudfronts_not_the_clients(tmp_path):
    """The function in Node's VM (as CloudFront runs it: no require, no process): the
    address it writes is the viewer's, over a value the client sent in the same header."""
    import shutil
    import subprocess

    from infra.constructs.console import VIEWER_ADDRESS, VIEWER_ADDRESS_HEADER

    node = shutil.which("node")
    assert node, "Node.js runs the CDK app; it must be on PATH"
    event = {
        "version": "1.0",
        "context": {"eventType": "viewer-request"},
        "viewer": {"ip": "203.0.113.7"},
        "request": {
            "method": "POST",
            "uri": "/api/v1/training/jobs",
            "querystring": {},
            "headers": {
                VIEWER_ADDRESS_HEADER: {"value": "198.51.100.1"},
                "authorization": {"value": "Bearer t"},
            },
            "cookies": {},
        },
    }
    script = (
        "const vm = require('node:vm'), fs = require('node:fs');"
        "const c = vm.createContext({});"
        "vm.runInContext(fs.readFileSync(process.argv[1], 'utf8'), c);"
        "const out = vm.runInContext('handler', c)(JSON.parse(process.argv[2]));"
        "process.stdout.write(JSON.stringify(out));"
    )
    run = subprocess.run(
        [node, "-e", script, str(VIEWER_ADDRESS), json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    request = json.loads(run.stdout)
    assert request["headers"][VIEWER_ADDRESS_HEADER] == {"value": "203.0.113.7"}
    assert request["headers"]["authorization"] == {"value": "Bearer t"}
    assert request["uri"] == "/api/v1/training/jobs"
