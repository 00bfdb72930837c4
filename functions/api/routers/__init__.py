"""Routers, gathered in one place; each is thin: parse, authorise, call a service, shape.

Each domain's router (``audio.py``) has its request/response models beside it
(``audio_schemas.py``); what several share (the error body, pagination) is in ``common.py``.
"""

from fastapi import APIRouter

from functions.api.routers import (
    audio,
    auth,
    chat,
    datasets,
    health,
    inference,
    models,
    profile,
    projects,
    tags,
    training,
    users,
    workflows,
)

api_router = APIRouter()
for _router in (
    health.router,
    auth.router,
    users.router,
    profile.router,
    projects.router,
    tags.router,
    datasets.router,
    training.router,
    training.models,
    training.internal,
    *models.routers,
    *audio.routers,
    inference.router,
    workflows.router,
    workflows.internal,
    chat.router,
):
    api_router.include_router(_router)
