"""Trainer overhead: the same tiny timm run through the real task with every callback —
throttled progress events, per-epoch metric rows and validation events in DynamoDB,
last/best checkpoints to S3 (waited for), MLflow metrics — against a bare loop doing
the identical work without any of it: the same spec, the trainer's own transforms,
model, optimizer, schedule and step (crucible_trainer.optim's Stepper), the same data
loaders, seed and validation forward passes.

Both are warmed once (uncounted), then run in pairs whose order alternates (full-bare,
bare-full, ...); each pair gives a ratio, and the median ratio with its spread is the
figure. Target: median ratio <= 1.03. Starts its own MiniStack.

    .venv/bin/python bench/trainer_overhead.py [--epochs 4 --images 48 --size 64 --pairs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "containers" / "gpu-trainer")]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def bare(spec, root: Path) -> float:
    """The trainer's training and validation, step for step, with nothing around it (no
    progress, metrics, checkpoints or MLflow)."""
    import timm
    import torch
    from crucible_trainer.frameworks.timm_classifier import transform
    from crucible_trainer.optim import Stepper, optimizer, schedule
    from torch.utils.data import DataLoader
    from torchvision import datasets

    t0 = time.perf_counter()
    knobs, size = spec.knobs, spec.image_size
    train_ds = datasets.ImageFolder(root / "train", transform(size, knobs))
    val_ds = datasets.ImageFolder(root / "val", transform(size))
    torch.manual_seed(spec.seed)
    model = timm.create_model(spec.model_name, pretrained=False, num_classes=len(train_ds.classes))
    params = list(model.parameters())
    opt = optimizer(params, knobs)
    sched = schedule(opt, knobs)
    stepper = Stepper(params, opt, knobs)
    loader = DataLoader(train_ds, batch_size=spec.batch_size, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=spec.batch_size)
    loss_fn = torch.nn.CrossEntropyLoss()
    k = min(5, len(train_ds.classes))
    for _ in range(spec.epochs):
        model.train()
        for x, y in loader:
            with stepper.autocast():
                loss = loss_fn(model(x), y)
            stepper.step(loss)
            loss.item()
        sched.step()
        model.eval()
        with torch.no_grad(), stepper.autocast():
            for x, y in val_loader:
                out = model(x).float()
                loss_fn(out, y).item()
                out.argmax(1).tolist()
                out.softmax(1).topk(k, 1)
    return time.perf_counter() - t0


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f}, max {max(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=48, help="training images per class")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=5, help="counted pairs (at least 5)")
    args = ap.parse_args()
    if args.pairs < 5:
        ap.error("--pairs: at least 5, for a median that means something")

    import torch
    from crucible_trainer.frameworks.timm_classifier import train
    from crucible_trainer.run import Checkpoints, Run
    from crucible_trainer.spec import JobSpec

    from functions.local.bootstrap import ensure_resources
    from functions.local.emulator import Emulator, free_port
    from shared.archives import extract
    from shared.models import Principal, TrainingJob
    from shared.services.reporting import Reporter
    from shared.settings import load_settings
    from shared.wiring import build
    from tests import datasets as make

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        emu = Emulator(ROOT / ".ministack" / "bin" / "ministack", work / "aws", free_port()).start()
        try:
            os.environ.update(
                AWS_ENDPOINT_URL=emu.endpoint,
                **emu.credentials.environ(),  # the only key the emulator answers
                AWS_DEFAULT_REGION="us-east-1",
                CRUCIBLE_JWT_SECRET="bench-" + "x" * 40,
            )
            c = build(load_settings(stage="bench"))
            ensure_resources(c)
            archive = make.imagefolder(per_class=args.images)
            root = Path(extract(io.BytesIO(archive), str(work / "data")))
            c.datasets.upload(
                Principal(user_id=1, role="user"), [("d.zip", io.BytesIO(archive))], name="bench"
            )
            import mlflow

            mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
            mlflow.set_experiment("bench")

            def new_job() -> TrainingJob:
                return c.job_repository.create(
                    TrainingJob(
                        id=0,
                        owner_id=1,
                        framework="timm",
                        model_name="resnet10t",
                        task_type="image_classification",
                        epochs=args.epochs,
                        total_epochs=args.epochs,
                        batch_size=16,
                        learning_rate=3e-3,
                        advanced_config={"image_size": args.size},
                    )
                )

            def full() -> float:
                job = new_job()  # a job of its own: its events and checkpoints are new
                with mlflow.start_run():
                    reporter = Reporter(
                        c.push, c.job_repository, job, c.job_records, mlflow, artifacts=c.artifacts
                    )
                    t0 = time.perf_counter()
                    spec = JobSpec.from_job(job)
                    checkpoints = Checkpoints(c.artifacts, job.id, work, reporter)
                    outcome = train(spec, root, Run(spec, reporter, checkpoints, threading.Event()))
                    checkpoints.flush()  # the work is done once its checkpoints are stored
                    elapsed = time.perf_counter() - t0
                assert outcome == "completed", outcome
                return elapsed

            def plain() -> float:
                return bare(JobSpec.from_job(new_job()), root)

            full(), plain()  # warm both: imports, allocator, thread pools, first S3/MLflow use
            fulls, bares, ratios = [], [], []
            for i in range(args.pairs):
                order = (full, plain) if i % 2 == 0 else (plain, full)
                times = {f: f() for f in order}
                fulls.append(times[full])
                bares.append(times[plain])
                ratios.append(times[full] / times[plain])
                print(
                    f"pair {i + 1}/{args.pairs}: full {times[full]:.2f} s, bare "
                    f"{times[plain]:.2f} s, ratio {ratios[-1]:.3f}",
                    file=sys.stderr,
                )
        finally:
            emu.stop()
    n = 2 * args.images
    print(
        f"resnet10t, {n} images of {args.size}px, {args.epochs} epochs, CPU: "
        f"{args.pairs} interleaved pairs after one warm-up of each"
    )
    print(
        f"  trainer with reporting, checkpoints to S3, MLflow: median {statistics.median(fulls):6.2f} s"
        f"  ({spread(fulls)})"
    )
    print(
        f"  bare loop, identical model/data/optimizer/step:   median {statistics.median(bares):6.2f} s"
        f"  ({spread(bares)})"
    )
    print(
        f"  ratio (per pair): median {statistics.median(ratios):.3f}x ({spread(ratios)})"
        f"  (target <= 1.03x)"
    )
    print(
        f"  samples/second (training): {n * args.epochs / statistics.median(fulls):.1f} with, "
        f"{n * args.epochs / statistics.median(bares):.1f} without"
    )


if __name__ == "__main__":
    main()
