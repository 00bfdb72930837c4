"""The API's authentication fast path against the emulator: a bearer token is checked on
the event loop (its signature once, its expiry every time, the user as read in the last
``RECENT_S`` seconds), and a user that changed elsewhere (another process: an operator's
CLI, another Lambda) is still noticed within that bound."""

import time

import pytest

from shared.adapters.dynamodb import identity
from shared.adapters.dynamodb.identity import DynamoUsers
from shared.errors import Unauthorized
from shared.services.auth import AuthService

pytestmark = pytest.mark.integration

BOUND_S = 0.5


@pytest.fixture
def short_bound(monkeypatch):
    monkeypatch.setattr(identity, "RECENT_S", BOUND_S)


def _user(container, auth: AuthService):
    email = f"fast-{time.time_ns()}@example.com"
    user = auth.users.create(email=email, password_hash="!", role="user", full_name=None)
    return user, auth.issue(user).access_token


def _wait_until_stale() -> None:
    time.sleep(BOUND_S + 0.1)  # the bound itself is what is tested: no condition to wait on


def test_identify_reads_nothing_until_a_read_is_due(container, short_bound):
    auth = AuthService(DynamoUsers(container.table), container.settings, "k" * 40)
    user, token = _user(container, auth)
    _wait_until_stale()
    assert auth.identify(token, read=False) is None  # not read lately: the caller reads
    principal, found = auth.identify(token)
    assert (principal.user_id, principal.role, found.id) == (user.id, "user", user.id)
    principal, _ = auth.identify(token, read=False)  # now known: no read
    assert principal.user_id == user.id


def test_a_role_changed_or_a_user_deleted_elsewhere_is_noticed_within_the_bound(
    container, short_bound
):
    auth = AuthService(DynamoUsers(container.table), container.settings, "k" * 40)
    user, token = _user(container, auth)
    assert auth.authenticate(token).role == "user"
    # Another process promotes the user: straight to the table, no cache of ours told.
    container.table.update(f"USER#{user.id}", "USER", {"role": "admin"})
    deadline = time.monotonic() + BOUND_S + 2
    while auth.authenticate(token).role != "admin":
        assert time.monotonic() < deadline, "the role change was not seen within the bound"
        time.sleep(0.05)
    # And deletes it, with its place in everyone's listing (a bare delete of the item would
    # leave its index row behind, counted and skipped over by other tests' listings).
    container.table.delete_listed(f"USER#{user.id}", "USER")
    _wait_until_stale()
    assert auth.identify(token, read=False) is None
    with pytest.raises(Unauthorized, match="no longer exists"):
        auth.authenticate(token)


def test_a_checked_token_is_still_refused_once_expired(container, monkeypatch):
    auth = AuthService(DynamoUsers(container.table), container.settings, "k" * 40)
    user, token = _user(container, auth)
    assert auth.authenticate(token).user_id == user.id  # checked, and remembered
    later = time.time() + container.settings.access_token_ttl_s + 1
    monkeypatch.setattr("shared.services.auth.time.time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(token)


def test_a_token_signed_with_another_key_is_refused_though_its_twin_was_accepted(container):
    mine = AuthService(DynamoUsers(container.table), container.settings, "k" * 40)
    theirs = AuthService(DynamoUsers(container.table), container.settings, "x" * 40)
    user, token = _user(container, mine)
    assert mine.authenticate(token).user_id == user.id
    forged = theirs.issue(user).access_token
    with pytest.raises(Unauthorized, match="Invalid token"):
        mine.authenticate(forged)
    with pytest.raises(Unauthorized, match="Invalid token"):
        mine.identify(token + "x", read=False)
