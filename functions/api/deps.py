"""Request dependencies: the service container, the caller, role checks, rate limits.

Authenticated requests count against their user's plan (shared/plans.py): a per-minute
and a per-hour window, fixed to the clock; the response's ``X-RateLimit-*`` headers
describe the tighter of the two. They are counted in the process and added to the table
in batches (``Container.request_counter``, shared/services/ratelimit.py): in one process
they decide as the table alone would; a request asks the table only now and then, and
always near a limit.
``CRUCIBLE_RATE_LIMIT_PER_MINUTE``, when set, replaces
every plan's windows with N a minute (0: no request limits at all).
Requests made before authentication (register, login, token, refresh, the internal
callback) count against the client's address and, where they name one, the account
(``auth_rate_limit_per_minute``): a password guess costs an argon2 check.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from functions.api.errors import set_rate_limit
from shared.errors import Conflict, Forbidden, RateLimited, Unauthorized
from shared.models import Principal
from shared.plans import RequestLimits, Window, tighter
from shared.settings import Role
from shared.wiring import Container

_bearer = HTTPBearer(auto_error=False, description="JWT access token or static API token")
WINDOW_S = 60
# Each request window's counter, per user (the minute's key is the one it always had).
_WINDOW_KEYS = {"minute": "user:{}", "hour": "user-hour:{}"}


async def get_container(request: Request) -> Container:
    return request.app.state.container  # async: no trip to the thread pool for a lookup


Services = Annotated[Container, Depends(get_container)]


async def current_principal(
    container: Services,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer credential and count the request against the caller's limit.

    On the event loop: a JWT check and a look at the users read in the last few seconds
    (``AuthService.identify``) cost microseconds; only a read of the table (a user not
    read recently) and the counting of rate-limit windows go to the thread pool. So a
    request costs one hop to the pool (its route), not three."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
    auth, token = container.auth, credentials.credentials
    found = auth.identify(token, read=False) or await run_in_threadpool(auth.identify, token)
    if found is None:  # never so: with read=True it reads the user
        raise Unauthorized("Invalid token", code="INVALID_TOKEN")
    principal, user = found
    limits = container.plans.request_limits(principal.user_id, user)
    if limits.windows:
        counted = await run_in_threadpool(_count, container, principal.user_id, limits)
        # Written on the response by functions.api.errors.RequestContext, whatever it is.
        binding = tighter(counted)
        set_rate_limit(request.scope, binding.limit, binding.remaining, binding.reset)
    return principal


def _count(container: Container, user_id: int, limits: RequestLimits) -> list[Window]:
    """Count the request in each of ``limits``' windows; RateLimited past one."""
    counted: list[Window] = []
    for name, seconds, limit in limits.windows:  # the minute first: a request it refuses
        used, reset = container.request_counter.hit(  # is not counted in the hour
            _WINDOW_KEYS[name].format(user_id), limit=limit, window_s=seconds
        )
        window = Window(name, limit, used, reset)
        if window.exceeded:
            plan = f" (the {limits.plan} plan's)" if limits.plan else ""
            raise RateLimited(
                f"Rate limit of {limit} requests per {name}{plan} exceeded; "
                f"try again in {max(1, reset - int(time.time()))} s",
                limit=limit,
                reset_at=reset,
            )
        counted.append(window)
    return counted


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(role: Role):
    """A dependency that admits callers holding ``role`` or a higher one."""

    async def check(principal: CurrentUser) -> Principal:  # no I/O: no thread
        if not principal.at_least(role):
            raise Forbidden(f"This needs the '{role}' role or higher")
        return principal

    return Depends(check)


Researcher = Annotated[Principal, require("researcher")]
Admin = Annotated[Principal, require("admin")]


# --- before authentication ------------------------------------------------------------


def client_address(request: Request) -> str:
    """The caller's IP address: in Lambda, API Gateway's ``requestContext.identity.sourceIp``
    (Mangum puts it in the ASGI scope's ``client``); locally, the socket's peer.
    ``X-Forwarded-For`` is never read: any client writes what it likes there."""
    return request.client.host if request.client else "unknown"


def _refuse_over(used: int, limit: int, reset: int, what: str) -> None:
    if used > limit:
        wait = max(1, reset - int(time.time()))
        raise RateLimited(
            f"Too many {what}: at most {limit} a minute; try again in {wait} s",
            limit=limit,
            reset_at=reset,
        )


def limit_client(request: Request, c: Services) -> None:
    """Count a request made before authentication against its client address."""
    limit = c.settings.auth_rate_limit_per_minute
    if limit:
        used, reset = c.rate_limiter.hit(
            f"auth-client:{client_address(request)}", limit=limit, window_s=WINDOW_S
        )
        _refuse_over(used, limit, reset, "sign-in requests from this address")


ClientLimited = Depends(limit_client)


@contextmanager
def account_attempt(request: Request, c: Container, email: str) -> Iterator[None]:
    """Guard one sign-in or registration naming ``email``: its failures (401, 409) count
    against the account, from any client, and against the account from this client.

    A client may fail at most ``auth_rate_limit_per_minute`` times a minute for one
    account. Once the account as a whole has failed that often (guesses spread over many
    addresses), a client that has itself failed for it is refused too, while a client
    that has not (the owner, elsewhere) still gets its attempt: guessing is bounded, and
    nobody can lock an account's owner out by failing on purpose. The keys are digests:
    no addresses in the counters."""
    limit = c.settings.auth_rate_limit_per_minute
    if not limit:
        yield
        return
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    account = f"auth-account:{digest}"
    pair = f"{account}:{hashlib.sha256(client_address(request).encode()).hexdigest()[:16]}"
    mine, reset = c.rate_limiter.count(pair, window_s=WINDOW_S)
    _refuse_over(mine + 1, limit, reset, "failed attempts for this account from this address")
    everyone, reset = c.rate_limiter.count(account, window_s=WINDOW_S)
    if everyone >= limit:
        _refuse_over(mine + 1, 1, reset, "failed attempts for this account")
    try:
        yield
    except (Unauthorized, Conflict):
        c.rate_limiter.hit(pair, limit=limit, window_s=WINDOW_S)
        c.rate_limiter.hit(account, limit=limit, window_s=WINDOW_S)
        raise


def internal_caller(
    request: Request,
    c: Services,
    x_internal_auth: Annotated[str | None, Header(description="The internal secret")] = None,
) -> None:
    """Seed 002's ``X-Internal-Auth`` (the training callback). Wrong or missing secrets
    count against the client address; once over ``auth_rate_limit_per_minute`` the client
    is refused before its secret is looked at. Right ones are not counted: an external
    trainer may report as often as it likes."""
    limit = c.settings.auth_rate_limit_per_minute
    key = f"auth-internal:{client_address(request)}"
    if limit:
        failed, reset = c.rate_limiter.count(key, window_s=WINDOW_S)
        _refuse_over(failed + 1, limit, reset, "failed internal calls from this address")
    expected = c.internal_secret
    if (
        not expected
        or not x_internal_auth
        or not hmac.compare_digest(x_internal_auth.encode(), expected.encode())
    ):
        if limit:
            c.rate_limiter.hit(key, limit=limit, window_s=WINDOW_S)
        raise Unauthorized("X-Internal-Auth is missing or wrong", code="INVALID_INTERNAL_AUTH")


InternalCaller = Annotated[None, Depends(internal_caller)]
