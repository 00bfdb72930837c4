"""Routers, gathered in one place; each is thin: parse, authorise, call a service, shape.

Each domain's router (``audio.py``) has its request/response models beside it
(``audio_schemas.py``); what several share (the error body, pagination) is in ``common.py``.

:data:`INCLUDES` is the order the app includes them in (the order matters where two
modules' paths overlap: seed 000's and seed 004's ``/jobs``). A module is imported only
when an app includes it: building a route is most of a cold start, so the Lambda handler
builds only the modules whose paths can match the request (``functions/api/routes.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import import_module

from fastapi import FastAPI

V1 = "/api/v1"

# (module, attribute: a router or a tuple of them, prefix), in the order of inclusion.
INCLUDES: tuple[tuple[str, str, str], ...] = (
    ("health", "router", V1),
    ("auth", "router", V1),
    ("users", "router", V1),
    ("profile", "router", V1),
    ("projects", "router", V1),
    ("tags", "router", V1),
    ("datasets", "router", V1),
    ("training", "router", V1),
    ("training", "models", V1),
    ("training", "internal", V1),
    ("models", "routers", V1),
    ("audio", "routers", V1),
    ("inference", "router", V1),
    ("workflows", "router", V1),
    ("workflows", "internal", V1),
    ("chat", "router", V1),
    ("seed000", "router", ""),  # seed 000 kept its own root paths
    # seed 004 too (/submissions, /jobs, /leaderboard), and under /api/v1/leaderboard
    ("leaderboard", "router", ""),
    ("leaderboard", "ranking", ""),
    ("leaderboard", "router", f"{V1}/leaderboard"),
    ("leaderboard", "ranking", V1),
)
MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _, _ in INCLUDES))


def include(app: FastAPI, modules: Collection[str] | None = None) -> None:
    """Include every router, or only those of ``modules``, in :data:`INCLUDES` order."""
    for module, attr, prefix in INCLUDES:
        if modules is not None and module not in modules:
            continue
        routers = getattr(import_module(f"{__name__}.{module}"), attr)
        for router in routers if isinstance(routers, tuple) else (routers,):
            app.include_router(router, prefix=prefix)
