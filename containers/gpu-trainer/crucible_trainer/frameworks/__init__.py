"""The training frameworks, one module each, behind one interface. Each module has

- ``train(spec, data, run)``: trains ``spec`` on the extracted dataset at ``data``,
  talking to the platform only through ``run``; returns how it ended;
- ``Model(checkpoint)``: predictions from one of its checkpoints (the state dict it
  saved; for ultralytics, which saves its own files, the file's path).

A framework's module is imported only when a job or a checkpoint picks it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Protocol

from crucible_trainer.run import Outcome, Run
from crucible_trainer.spec import JobSpec

MODULES = {
    "timm": "timm_classifier",
    "ultralytics": "ultralytics_yolo",
    "torchaudio": "torchaudio_asr",
}


class Train(Protocol):
    def __call__(self, spec: JobSpec, data: Path, run: Run) -> Outcome: ...


def framework(name: str) -> ModuleType:
    """The module of the framework called ``name`` (a job's ``framework`` field)."""
    module = MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown framework '{name}'")
    return importlib.import_module(f"{__name__}.{module}")


def trainer(name: str) -> Train:
    return framework(name).train
