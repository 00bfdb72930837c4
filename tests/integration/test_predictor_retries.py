"""The inference Lambda is invoked exactly once per prediction: against a local HTTP server
that speaks Lambda's Invoke API (``POST /2015-03-31/functions/<name>/invocations``), slow,
throttled or failing, the predictor sends one invocation and answers what happened, where
botocore's own retries (the API's clients allow 5 attempts) would have invoked it again."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.adapters.runners import InferenceUnavailable, LambdaPredictor

FUNCTION = "crucible-test-inference"
PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"


class FakeLambda(ThreadingHTTPServer):
    """Lambda's Invoke, answering as ``mode`` says: ``ok`` (the request echoed), ``slow``
    (held until the test releases it), ``throttled`` (429), ``broken`` (500)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"
        self.invocations: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeLambda

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != PATH:
            self._answer(404, {"Type": "User", "message": "Function not found"})
            return
        with self.server.lock:
            self.server.invocations.append(payload)
        mode = self.server.mode
        if mode == "slow":
            self.server.release.wait(timeout=60)  # a cold start, loading the model
            self._answer(200, {"predictions": []})
        elif mode == "throttled":
            self._answer(
                429,
                {
                    "Type": "User",
                    "message": "Rate Exceeded.",
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                },
                {"x-amzn-ErrorType": "TooManyRequestsException"},
            )
        elif mode == "broken":
            self._answer(
                500,
                {"Type": "Service", "message": "Internal failure"},
                {"x-amzn-ErrorType": "ServiceException"},
            )
        else:
            self._answer(200, {"echo": payload["data"]})


@pytest.fixture
def fake() -> Iterator[FakeLambda]:
    server = FakeLambda()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def predictor(fake: FakeLambda, timeout_s: float = 1.0) -> LambdaPredictor:
    # The client as the container makes it (shared/wiring.py): 5 attempts, a 30 s read.
    client = boto3.session.Session().client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=fake.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
        ),
    )
    return LambdaPredictor(client, FUNCTION, timeout_s=timeout_s)


REQUEST = {"checkpoint": "jobs/1/best.pt", "data": "aGVsbG8=", "filename": "a.png", "options": {}}


def test_an_answer_takes_one_invocation(fake):
    assert predictor(fake).predict(REQUEST) == {"echo": "aGVsbG8="}
    assert fake.invocations == [REQUEST]


def test_a_cold_function_that_cannot_answer_in_time_is_invoked_once_and_says_retry(fake):
    fake.mode = "slow"
    with pytest.raises(InferenceUnavailable) as raised:
        predictor(fake, timeout_s=1.0).predict(REQUEST)
    error = raised.value
    assert error.http_status == 503 and error.code == "MODEL_WARMING_UP"
    assert error.retry_after > 0 and "warming up" in error.detail and "retry" in error.detail
    # botocore would have retried the read timeout by now (before raising): one invocation
    assert len(fake.invocations) == 1


def test_a_throttled_function_is_not_invoked_again(fake):
    fake.mode = "throttled"
    with pytest.raises(InferenceUnavailable) as raised:
        predictor(fake).predict(REQUEST)
    assert raised.value.code == "INFERENCE_BUSY" and raised.value.http_status == 503
    assert len(fake.invocations) == 1


def test_an_unreachable_function_says_retry():
    from functions.local.emulator import free_port

    class Nowhere:  # a port nothing listens on
        url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(InferenceUnavailable) as raised:
        predictor(Nowhere()).predict(REQUEST)
    assert raised.value.http_status == 503 and raised.value.code == "INFERENCE_BUSY"


def test_a_failing_service_is_not_invoked_again(fake):
    fake.mode = "broken"
    with pytest.raises(ClientError):
        predictor(fake).predict(REQUEST)
    assert len(fake.invocations) == 1


def test_the_wait_stays_under_api_gateways_29_s():
    from shared.adapters.runners import INVOKE_TIMEOUT_S

    client = boto3.session.Session().client(
        "lambda",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    config = LambdaPredictor(client, FUNCTION).client.meta.config
    assert config.read_timeout == INVOKE_TIMEOUT_S
    assert config.read_timeout + config.connect_timeout <= 29 - 2  # the API's own work
    assert config.retries["total_max_attempts"] == 1


# --- a warm prediction's look-ups: a completed job's checkpoint is found once ---------------


class CountingHeads:
    """The artifacts store, counting HEADs."""

    def __init__(self, store) -> None:
        self.store, self.heads = store, 0

    def head(self, key):
        self.heads += 1
        return self.store.head(key)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_completed_jobs_checkpoint_is_looked_up_once_and_a_changed_job_again(container):
    from shared import keys
    from shared.models import TrainingJob, utcnow

    training = container.training
    job = TrainingJob(
        id=9_000_000 + int.from_bytes(os.urandom(3)),
        owner_id=1,
        framework="timm",
        model_name="resnet10t",
        task_type="image_classification",
    )
    container.artifacts.put(keys.last_checkpoint(job.id), b"v1")
    counting = CountingHeads(training.artifacts)
    training.artifacts = counting
    try:
        running = job.model_copy(update={"status": "running"})
        first = training.checkpoint_of(running)
        assert first.key == keys.last_checkpoint(job.id)
        training.checkpoint_of(running)
        assert counting.heads == 4  # still training: best, then last, each time

        done = job.model_copy(update={"status": "completed", "completed_at": utcnow()})
        counting.heads = 0
        assert training.checkpoint_of(done) == first
        assert training.checkpoint_of(done) == first
        assert counting.heads == 2  # once for the completed job, then none

        # run again and completed anew (a resume): its new checkpoint is found
        container.artifacts.put(keys.best_checkpoint(job.id), b"v2")
        again = done.model_copy(update={"completed_at": utcnow()})
        best = training.checkpoint_of(again)
        assert best.key == keys.best_checkpoint(job.id) and counting.heads == 3
    finally:
        training.artifacts = counting.store


# --- a batch, which has minutes, retries a warming model once itself --------------------


class WarmingOnce:
    """A predictor whose first call finds the model cold (as LambdaPredictor says it)."""

    def __init__(self, retry_after: float) -> None:
        self.calls, self.retry_after = 0, retry_after

    def predict(self, request):
        self.calls += 1
        if self.calls == 1:
            error = InferenceUnavailable("The model is warming up")
            error.retry_after = self.retry_after
            raise error
        return {"predictions": [{"label": "circle", "label_id": 0, "confidence": 0.9}]}


def test_a_batch_image_that_found_the_model_cold_is_predicted_on_the_retry(container):
    from shared import keys
    from tests import datasets as make

    service = container.inference
    warming = WarmingOnce(retry_after=0.05)
    image_key = f"inference/test/{os.urandom(6).hex()}.png"
    container.artifacts.put(image_key, make.png("circle", seed=3))
    record = {"batch_id": "b", "checkpoint": keys.best_checkpoint(1), "options": {}}
    kept, service.predictor = service.predictor, warming
    try:
        out = service._run_one(record, 0, {"key": image_key})
    finally:
        service.predictor = kept
    assert warming.calls == 2, out
    assert out["predictions"][0]["class"] == "circle" and "error" not in out
