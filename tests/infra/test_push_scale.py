"""Push at scale in the templates (issue 16): the stream mapping batches, coalesces and
runs batches of a shard in parallel, and the push function's timeout leaves room for
its own deadline (functions/events/stream_push.py) and one post's retries
(shared/services/push.py), so a batch is never cut off half-sent."""

import pytest

cdk = pytest.importorskip("aws_cdk")

from functions.events.stream_push import MARGIN_S  # noqa: E402
from infra.constructs.events import PUSH_BATCH, PUSH_PARALLELISM, PUSH_WINDOW_S  # noqa: E402
from shared.adapters.push import CLIENT_CONFIG  # noqa: E402
from shared.services.push import PushService  # noqa: E402

pytestmark = pytest.mark.infra
ENVS = ("dev", "staging", "prod")


def app_(synth, env):
    return synth["t"][f"crucible-{env}-app"]


def push_function(t) -> tuple[str, dict]:
    (found,) = [
        (lid, r["Properties"])
        for lid, r in t.find_resources("AWS::Lambda::Function").items()
        if r["Properties"].get("Handler") == "functions.events.stream_push.handler"
    ]
    return found


def stream_mapping(t) -> dict:
    (mapping,) = [
        r["Properties"]
        for r in t.find_resources("AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" in r["Properties"]  # the stream's; the queues' have none
    ]
    return mapping


@pytest.mark.parametrize("env", ENVS)
def test_the_stream_mapping_batches_coalesces_and_parallelises(synth, env):
    t = app_(synth, env)
    lid, _ = push_function(t)
    m = stream_mapping(t)
    assert m["FunctionName"] == {"Ref": lid}
    assert m["BatchSize"] == PUSH_BATCH == 100
    assert m["MaximumBatchingWindowInSeconds"] == PUSH_WINDOW_S == 1
    assert m["ParallelizationFactor"] == PUSH_PARALLELISM and 1 < PUSH_PARALLELISM <= 10
    # what did not fit is retried alone, and what keeps failing is kept
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert m["MaximumRetryAttempts"] >= 1 and m["DestinationConfig"]["OnFailure"]
    assert "TumblingWindowInSeconds" not in m  # no state carried between batches


@pytest.mark.parametrize("env", ENVS)
def test_the_push_function_has_room_for_its_deadline(synth, env):
    _, fn = push_function(app_(synth, env))
    # one full vCPU for 64 posts at once (CPU-bound on botocore's signing and parsing)
    assert fn["MemorySize"] >= 1769
    timeout = fn["Timeout"]
    # sending stops MARGIN_S before the timeout, and no post starts in the POST_S before
    # that: the rest of the time is for sending
    assert timeout - MARGIN_S - PushService.POST_S >= 30, timeout
    # an attempt started just before sending stops ends before the function does
    assert CLIENT_CONFIG.connect_timeout + CLIENT_CONFIG.read_timeout <= (
        PushService.POST_S + MARGIN_S
    )
    # throttled posts are retried by botocore, a few times (the stream retries the rest)
    assert CLIENT_CONFIG.retries["mode"] in ("standard", "adaptive")
    assert 2 <= CLIENT_CONFIG.retries["total_max_attempts"] <= 5  # the first one included
    # a pooled connection for every delivery thread
    assert CLIENT_CONFIG.max_pool_connections >= PushService.WORKERS
