"""The inference Lambda's entry (the trainer image run by ``awslambdaric``, command
``crucible_trainer.lambda_handler.handler``): the container is built once per
execution environment, and each event is a :func:`crucible_trainer.predict.predict`
request. Nothing in this function unpickles: every ``torch.load`` in it, whoever calls
it, is ``weights_only`` (predict.py asks for that anyway)."""

from __future__ import annotations

import functools
import os
from typing import Any

from crucible_trainer.predict import predict
from shared.settings import load_settings
from shared.wiring import Container, build

os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"


@functools.cache
def _container() -> Container:
    return build(load_settings())


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return predict(event, _container().artifacts)
