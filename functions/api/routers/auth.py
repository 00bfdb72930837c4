"""Seeds 001/002/004: register, login, me; seed 003: token and refresh.

Everything here but ``/me`` runs before authentication, so it is counted against the
client's address (and, where an e-mail is named, the account): 429 with ``Retry-After``
past ``CRUCIBLE_AUTH_RATE_LIMIT_PER_MINUTE``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from functions.api.deps import ClientLimited, CurrentUser, Services, account_attempt
from functions.api.routers.auth_schemas import (
    AccessTokenOut,
    LoginIn,
    LoginOut,
    RefreshIn,
    RegisterIn,
    TokenOut,
)
from functions.api.routers.common import ErrorOut
from functions.api.routers.users_schemas import UserOut

router = APIRouter(prefix="/auth", tags=["auth"])
_429 = {429: {"model": ErrorOut, "description": "Too many attempts; see Retry-After"}}
_401 = {401: {"model": ErrorOut}, **_429}


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    dependencies=[ClientLimited],
    responses={
        400: {"model": ErrorOut},
        403: {"model": ErrorOut},
        409: {"model": ErrorOut},
        **_429,
    },
)
def register(body: RegisterIn, request: Request, c: Services) -> UserOut:
    with account_attempt(request, c, str(body.email)):
        user = c.auth.register(
            email=str(body.email), password=body.password, role=body.role, full_name=body.full_name
        )
    return UserOut.of(user)


@router.post("/login", response_model=LoginOut, dependencies=[ClientLimited], responses=_401)
def login(body: LoginIn, request: Request, c: Services) -> LoginOut:
    with account_attempt(request, c, str(body.email)):
        user = c.auth.authenticate_password(str(body.email), body.password)
    tokens = c.auth.issue(user)
    return LoginOut(user=UserOut.of(user), **vars(tokens))


@router.post("/token", response_model=TokenOut, dependencies=[ClientLimited], responses=_401)
def token(body: LoginIn, request: Request, c: Services) -> TokenOut:
    with account_attempt(request, c, str(body.email)):
        user = c.auth.authenticate_password(str(body.email), body.password)
    return TokenOut(**vars(c.auth.issue(user)))


@router.post(
    "/refresh", response_model=AccessTokenOut, dependencies=[ClientLimited], responses=_401
)
def refresh(body: RefreshIn, c: Services) -> AccessTokenOut:
    access, ttl = c.auth.refresh(body.refresh_token)
    return AccessTokenOut(access_token=access, expires_in=ttl)


@router.get("/me", response_model=UserOut, responses=_401)
def me(principal: CurrentUser, c: Services) -> UserOut:
    return UserOut.of(c.auth.get_user(principal, principal.user_id))
