"""Routers, gathered in one place; each is thin: parse, authorise, call a service, shape."""

from fastapi import APIRouter

from functions.api.routers import auth, health, projects, tags, users

api_router = APIRouter()
for _module in (health, auth, users, projects, tags):
    api_router.include_router(_module.router)
