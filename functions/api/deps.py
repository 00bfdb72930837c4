"""Request dependencies: the service container, the caller, role checks, rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, RateLimited, Unauthorized
from shared.models import Principal
from shared.settings import Role
from shared.wiring import Container

_bearer = HTTPBearer(auto_error=False, description="JWT access token or static API token")


def get_container(request: Request) -> Container:
    return request.app.state.container


Services = Annotated[Container, Depends(get_container)]


def current_principal(
    container: Services,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer credential and count the request against the caller's limit."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
    principal = container.auth.authenticate(credentials.credentials)
    limit = container.settings.rate_limit_per_minute
    if limit:
        used, reset = container.rate_limiter.hit(
            f"user:{principal.user_id}", limit=limit, window_s=60
        )
        if used > limit:
            raise RateLimited(
                f"Rate limit of {limit} requests per minute exceeded", limit=limit, reset_at=reset
            )
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(max(0, limit - used))
        response.headers["X-RateLimit-Reset"] = str(reset)
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(role: Role):
    """A dependency that admits callers holding ``role`` or a higher one."""

    def check(principal: CurrentUser) -> Principal:
        if not principal.at_least(role):
            raise Forbidden(f"This needs the '{role}' role or higher")
        return principal

    return Depends(check)


Researcher = Annotated[Principal, require("researcher")]
Admin = Annotated[Principal, require("admin")]
