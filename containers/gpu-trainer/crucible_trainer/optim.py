"""Seed 002's knobs (:class:`shared.training_options.Options`) as torch builds them, for
the trainers that run their own loop (timm, torchaudio): the optimizer, the per-epoch
learning-rate schedule, and a :class:`Stepper` that runs each step under the precision
asked for and clips the gradients. ultralytics maps the knobs onto its own arguments."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from shared.training_options import Options


def optimizer(params: Iterable[Any], o: Options) -> Any:
    """torch.optim.AdamW, Adam or SGD with the knobs' learning rate, weight decay, betas
    (Adam/AdamW) or momentum (SGD)."""
    import torch

    kind, lr, decay = o["optimizer.type"], o.learning_rate, float(o["optimizer.weight_decay"])
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=float(o["optimizer.momentum"]), weight_decay=decay
        )
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=decay, betas=tuple(o["optimizer.betas"]))


def schedule(opt: Any, o: Options) -> Any:
    """The per-epoch schedule (warm-up, then cosine, step, linear or none), as a
    LambdaLR over :meth:`Options.lr_at`: call ``step()`` after each epoch. Its state
    (the epochs done) goes into checkpoints; the schedule itself is the job's."""
    import torch

    base = o.learning_rate
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda done: o.lr_at(done + 1) / base)


def resume(opt: Any, sched: Any, o: Options, state: dict[str, Any], epoch: int) -> None:
    """Restore the optimizer's state from a checkpoint that has it (a "last" one; "best"
    weights have none) and the schedule's where it is one of :func:`schedule`'s (older
    checkpoints held another kind), then put both at (1-based) ``epoch``."""
    if state.get("optimizer"):
        opt.load_state_dict(state["optimizer"])
    if isinstance(state.get("scheduler"), dict) and "lr_lambdas" in state["scheduler"]:
        sched.load_state_dict(state["scheduler"])
    set_epoch(opt, sched, o, epoch)


def set_epoch(opt: Any, sched: Any, o: Options, epoch: int) -> None:
    """Put the optimizer and schedule at the start of (1-based) ``epoch`` (a resumed run
    whose epochs changed goes on by this job's schedule, not the checkpoint's)."""
    sched.last_epoch = epoch - 1
    sched.base_lrs = [o.learning_rate for _ in opt.param_groups]
    for group in opt.param_groups:
        group["lr"] = o.lr_at(epoch)


class Stepper:
    """One training step as the knobs say: the forward pass under ``autocast`` where
    mixed precision is asked for (bfloat16 on the CPU; on a GPU, bfloat16 where it has
    it, else float16 with a gradient scaler), then backward, gradient clipping to the
    total norm ``gradient_clip_value`` and the optimizer's step."""

    def __init__(self, params: list[Any], opt: Any, o: Options, device: str = "cpu") -> None:
        import torch

        self.params, self.opt, self.device = params, opt, device
        self.clip = o.get("gradient_clip_value")
        self.dtype = None
        if o.get("mixed_precision"):
            gpu = device == "cuda"
            bf16 = not gpu or torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.dtype is torch.float16 else None
        )  # float16 gradients underflow without it
        self.last_norm: float | None = None  # the gradients' norm before clipping

    def describe(self) -> str:
        """What the steps do, for the job's log."""
        precision = (
            f"mixed precision: {str(self.dtype).removeprefix('torch.')} autocast on the "
            f"{self.device.upper()}"
            if self.dtype is not None
            else "float32"
        )
        clip = f", gradients clipped to norm {self.clip:g}" if self.clip else ""
        return f"Optimizer: {type(self.opt).__name__}; {precision}{clip}"

    def autocast(self) -> Any:
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def step(self, loss: Any) -> None:
        """Backward from ``loss`` (computed under :meth:`autocast`) and step."""
        import torch

        self.opt.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if self.clip:
            norm = torch.nn.utils.clip_grad_norm_(self.params, float(self.clip))
            self.last_norm = float(norm)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
