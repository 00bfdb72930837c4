"""What a job may load, through the trainer's entrypoint (run as the local job runner runs
it) and the inference function: a model is a catalogue name, starting weights a file in
the operator's weights directory, and a checkpoint a state dict read with
``weights_only=True``. Job items are written straight into the table, as if the API's
check had never been: a URL or a path never reaches ultralytics or timm, nothing is
fetched, and a planted pickle never runs, neither for predictions nor for a resume."""

import base64
import http.server
import io
import sys
import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("ultralytics")

import torch

from shared.adapters.dynamodb.jobs import DynamoJobs
from shared.adapters.runners import LocalJobRunner
from shared.errors import CrucibleError
from shared.models import Principal, TrainingJob
from tests import datasets as make
from tests.conftest import ROOT, wait_for_job

pytestmark = pytest.mark.integration
OWNER = Principal(user_id=4343, role="user")
TRAINER_PATH = ROOT / "containers" / "gpu-trainer"
REFUSED = "The job cannot run"


class RunsCode:
    """Pickles as a call to ``open(path, "w")``: loading it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant(path, marker, **state) -> bytes:
    """A torch checkpoint whose pickle creates ``marker`` when it is loaded."""
    buf = io.BytesIO()
    torch.save({**state, "epoch": 1, "payload": RunsCode(marker)}, buf)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture(scope="module")
def shapes(container):
    return container.datasets.upload(
        OWNER, [("shapes.zip", io.BytesIO(make.imagefolder(per_class=6)))], name="shapes"
    )


@pytest.fixture(scope="module")
def boxes(container):
    return container.datasets.upload(OWNER, [("boxes.zip", io.BytesIO(make.yolo(4)))], name="boxes")


def make_runner(container, tmp_path, **env) -> LocalJobRunner:
    return LocalJobRunner(
        container.bus,
        {"trainer": [sys.executable, "-m", "crucible_trainer"]},
        env={
            "PYTHONPATH": str(TRAINER_PATH),
            "CRUCIBLE_STAGE": container.settings.stage,
            "CRUCIBLE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "OMP_NUM_THREADS": "1",
            # Whatever tries the internet fails at once instead of waiting on it.
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            **env,
        },
        log_dir=tmp_path,
        queues=container.settings.names.job_queues,
        grace_s=20,
    )


def new_job(container, dataset, *, framework="timm", model="resnet10t", epochs=1, lr=3e-3, **cfg):
    task = "image_classification" if framework == "timm" else "object_detection"
    return DynamoJobs(container.table).create(
        TrainingJob(
            id=0,
            owner_id=OWNER.user_id,
            framework=framework,
            model_name=model,
            task_type=task,
            dataset_id=dataset.id,
            epochs=epochs,
            total_epochs=epochs,
            batch_size=4,
            learning_rate=lr,
            advanced_config={"image_size": 32, **cfg},
        )
    )


def run_all(container, tmp_path, jobs, **env) -> list[TrainingJob]:
    """Run the jobs side by side (each with an MLflow store of its own); each as it ended."""
    for job in jobs:
        work = tmp_path / f"job-{job.id}"
        work.mkdir()
        make_runner(container, work, **env).submit(str(job.id), job_type="trainer", queue="gpu")
    return [wait_for_job(container, j.id, {"completed", "failed", "stopped"}) for j in jobs]


def errors(container, job_id) -> list[str]:
    return [
        e.data.get("message", "")
        for e in container.push.events.recent(f"job:{job_id}", limit=200)
        if e.kind == "error"
    ]


def refused(container, job, *words) -> None:
    messages = errors(container, job.id)
    assert job.status == "failed", (job.status, messages)
    reason = next((m for m in messages if m.startswith(REFUSED)), None)
    assert reason is not None, messages
    for word in words:
        assert word in reason, reason


@pytest.fixture
def served():
    """An https address on loopback, and the connections made to it."""
    asked: list[tuple] = []

    class Server(http.server.ThreadingHTTPServer):
        def verify_request(self, request, client_address):
            asked.append(client_address)
            return False  # counted, then closed

    server = Server(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}/x.pt", asked
    server.shutdown()


def test_a_model_name_that_is_a_url_or_a_path_never_reaches_yolo(
    container, dispatcher, boxes, served, tmp_path
):
    url, asked = served
    local = tmp_path / "evil.pt"
    plant(local, tmp_path / "ran-from-path", model="x")
    jobs = [
        new_job(container, boxes, framework="ultralytics", model=name)
        for name in (url, str(local), "../../x.pt", "yolov8n.pt")
    ]
    ended = run_all(container, tmp_path, jobs)
    assert asked == []  # nothing was fetched
    assert not (tmp_path / "ran-from-path").exists(), "the pickle at that path ran"
    for job in ended:
        refused(container, job, "is not available", "yolov8n")


def test_timm_model_names_are_architecture_names(container, dispatcher, shapes, tmp_path):
    jobs = [
        new_job(container, shapes, model=name)
        for name in ("hf-hub:timm/resnet10t.a1_in1k", "timm/resnet10t", "/abs/resnet10t")
    ]
    for job in run_all(container, tmp_path, jobs):
        refused(container, job, "architecture name")


def test_starting_weights_come_only_from_the_operators_directory(
    container, dispatcher, shapes, tmp_path
):
    import timm
    from safetensors.torch import save_file

    weights_dir, outside = tmp_path / "weights", tmp_path / "outside"
    weights_dir.mkdir()
    outside.mkdir()
    torch.manual_seed(7)
    start = timm.create_model("resnet10t", pretrained=False).state_dict()
    save_file(start, weights_dir / "resnet10t-start.safetensors")
    plant(outside / "evil.pth", tmp_path / "ran-from-weights")
    (weights_dir / "escape.pth").symlink_to(outside / "evil.pth")

    # A learning rate too small to move them: what it trained is what it started from.
    good = new_job(container, shapes, lr=1e-12, weights="resnet10t-start.safetensors")
    bad = {
        "a path": str(outside / "evil.pth"),
        "a relative path": "../outside/evil.pth",
        "a link out of the directory": "escape.pth",
        "a missing file": "nope.pth",
    }
    jobs = [good] + [new_job(container, shapes, weights=w) for w in bad.values()]
    done, *refusals = run_all(container, tmp_path, jobs, CRUCIBLE_WEIGHTS_DIR=str(weights_dir))

    assert done.status == "completed", errors(container, done.id)
    local = tmp_path / "trained.pt"
    container.artifacts.download(f"jobs/{done.id}/checkpoints/last.pt", str(local))
    trained = torch.load(local, map_location="cpu", weights_only=True)["model"]
    stem = next(k for k in start if k.endswith(".weight") and start[k].dim() == 4)
    assert torch.allclose(trained[stem], start[stem], atol=1e-5)  # it started from them

    for job, what in zip(refusals, bad, strict=True):
        words = ("weights directory",) if what != "a missing file" else ("nope.pth",)
        refused(container, job, *words)
    assert not (tmp_path / "ran-from-weights").exists()


def test_weights_need_a_configured_directory(container, dispatcher, shapes, tmp_path):
    [job] = run_all(container, tmp_path, [new_job(container, shapes, weights="resnet10t.pth")])
    refused(container, job, "CRUCIBLE_WEIGHTS_DIR")


@pytest.mark.parametrize("looks_like", ["timm", "ultralytics"])
def test_a_planted_checkpoint_never_runs_for_predictions(container, shapes, tmp_path, looks_like):
    from crucible_trainer.predict import predict

    from functions.local.predictor import InProcessPredictor
    from shared.wiring import build

    marker = tmp_path / "ran"
    job = new_job(container, shapes)
    key = f"jobs/{job.id}/checkpoints/best.pt"
    # "ultralytics." in its pickle made the old loader hand it to ultralytics as it was.
    fields = {"framework": looks_like, "model_name": f"{looks_like}.resnet10t"}
    plant(tmp_path / "best.pt", marker, **fields)
    container.artifacts.upload(key, str(tmp_path / "best.pt"))
    image = make.png("circle")

    answer = None
    try:
        answer = predict(
            {"checkpoint": key, "data": base64.b64encode(image).decode(), "filename": "x.png"},
            container.artifacts,
        )
    finally:
        assert not marker.exists(), "the checkpoint's pickle ran"
    assert answer["error"]["status"] == 409, answer
    assert "cannot be used" in answer["error"]["detail"]

    # The same through the training service and the local stack's in-process predictor.
    c = build(
        container.settings,
        local_predictor=lambda c: InProcessPredictor(c.artifacts, str(TRAINER_PATH)),
    )
    with pytest.raises(CrucibleError) as err:
        c.training.test_inference(OWNER, job.id, image, "x.png", {})
    assert 400 <= err.value.http_status < 500 and "cannot be used" in err.value.detail
    assert not marker.exists()


def test_a_planted_checkpoint_never_runs_on_resume(container, dispatcher, shapes, boxes, tmp_path):
    marker = tmp_path / "ran"
    victim = new_job(container, shapes)
    key = f"jobs/{victim.id}/checkpoints/last.pt"
    plant(tmp_path / "last.pt", marker, framework="ultralytics", model_name="ultralytics.x")
    container.artifacts.upload(key, str(tmp_path / "last.pt"))
    jobs = [
        new_job(container, shapes, epochs=3, resume_from=key),
        new_job(
            container, boxes, framework="ultralytics", model="yolov8n", epochs=3, resume_from=key
        ),
    ]
    ended = run_all(container, tmp_path, jobs)
    assert not marker.exists(), "the checkpoint's pickle ran"
    for job in ended:
        messages = errors(container, job.id)
        assert job.status == "failed", messages
        assert any("not a checkpoint this platform wrote" in m for m in messages), messages
