"""Trainer overhead: the same tiny timm run (same model, data, seed, optimizer, epochs)
through the real task with every callback — throttled progress events, per-epoch
metric rows and validation events in DynamoDB, last/best checkpoints to S3, MLflow
metrics — against a bare PyTorch loop doing the same training and validation, in one
run, alternating, best of N. Target ratio <= 1.03. Starts its own MiniStack.

    .venv/bin/python bench/trainer_overhead.py [--epochs 4 --images 48 --size 64 --runs 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "containers" / "gpu-trainer")]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def bare(job, root: Path) -> float:
    """The same training with nothing around it."""
    import timm
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    size = job.advanced_config["image_size"]
    tf = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    train, val = datasets.ImageFolder(root / "train", tf), datasets.ImageFolder(root / "val", tf)
    torch.manual_seed(0)
    model = timm.create_model(job.model_name, pretrained=False, num_classes=len(train.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=job.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=job.total_epochs)
    loader, vloader = (
        DataLoader(train, batch_size=job.batch_size, shuffle=True),
        DataLoader(val, batch_size=job.batch_size),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(job.total_epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            for x, y in vloader:
                loss_fn(model(x), y)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=48, help="training images per class")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()

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
            full_times, bare_times = [], []
            for _ in range(args.runs):
                job = c.job_repository.create(
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
                bare_times.append(bare(job, root))
                with mlflow.start_run():
                    reporter = Reporter(
                        c.push, c.job_repository, job, c.job_records, mlflow, artifacts=c.artifacts
                    )
                    t0 = time.perf_counter()
                    spec = JobSpec.from_job(job)
                    checkpoints = Checkpoints(c.artifacts, job.id, work, reporter)
                    train(spec, root, Run(spec, reporter, checkpoints, threading.Event()))
                    full_times.append(time.perf_counter() - t0)
        finally:
            emu.stop()
    full, plain = min(full_times), min(bare_times)
    print(
        f"resnet10t, {2 * args.images} images of {args.size}px, {args.epochs} epochs, best of {args.runs}, CPU"
    )
    print(f"  trainer with reporting, checkpoints to S3, MLflow: {full:7.2f} s")
    print(f"  bare loop, same model and data:                  {plain:7.2f} s")
    print(f"  ratio: {full / plain:.3f}x  (target <= 1.03x)")
    print(
        f"  samples/second (training): {2 * args.images * args.epochs / full:.1f} with, "
        f"{2 * args.images * args.epochs / plain:.1f} without"
    )


if __name__ == "__main__":
    main()
