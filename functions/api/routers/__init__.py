"""Routers, gathered in one place; each is thin: parse, authorise, call a service, shape.

Each domain's router (``audio.py``) has its request/response models beside it
(``audio_schemas.py``); what several share (the error body, pagination) is in ``common.py``.
"""

from fastapi import APIRouter

from functions.api.routers import audio, auth, datasets, health, projects, tags, training, users

api_router = APIRouter()
for _router in (
    health.router,
    auth.router,
    users.router,
    projects.router,
    tags.router,
    datasets.router,
    training.router,
    training.models,
    training.internal,
    *audio.routers,
):
    api_router.include_router(_router)
