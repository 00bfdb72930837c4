"""What every event Lambda shares: the logger and a container built on first use."""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools import Logger

from shared.settings import load_settings
from shared.wiring import Container, build

logger = Logger(service="crucible-events")


@cache
def container() -> Container:
    return build(load_settings())
