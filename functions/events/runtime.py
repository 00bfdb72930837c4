"""What every event Lambda shares: its services, built on first use (and once per process)."""

from __future__ import annotations

from functools import cache

from shared.settings import load_settings
from shared.wiring import Container, build


@cache
def container() -> Container:
    return build(load_settings())
