"""The inference Lambda's entry (the trainer image run by ``awslambdaric``, command
``crucible_trainer.lambda_handler.handler``): the container is built once per
execution environment, and each event is a :func:`crucible_trainer.predict.predict`
request."""

from __future__ import annotations

import functools
from typing import Any

from crucible_trainer.predict import predict
from shared.settings import load_settings
from shared.wiring import Container, build


@functools.cache
def _container() -> Container:
    return build(load_settings())


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return predict(event, _container().artifacts)
