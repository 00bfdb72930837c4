"""Each user's API key in API Gateway's usage plans (the ``UsageKeys`` port).

The REST API takes its keys from the Lambda authorizer (key source ``AUTHORIZER``,
functions/api/authorizer.py), which returns a user's key as ``usageIdentifierKey``:
clients never see or send one. One usage plan per plan tier (infra/constructs/api.py)
gives the key its throttle and daily quota on the routes that start work.

A user's key is named ``crucible-<stage>-user-<uid>-key``: GetApiKeys' ``nameQuery``
matches names that start with it, and the ``-key`` ending keeps user 1's query from
matching users 10, 11, 100 ... Its value is an HMAC-SHA256 of the user id under the
stage's JWT secret: two authorizers that create the same user's key at once offer the
same value, and API Gateway, which keeps values unique, refuses the second
(ConflictException), which then finds the first by name. A key found is used with the
value it has (a rotated secret changes only the keys made after it). An operator who
disables a user's key blocks that user's expensive routes (403).

Each process remembers the users it has bound and to which plan, so API Gateway's
control plane (a few requests a second per account) is asked once per user per warm
authorizer, and again only when the user's plan changed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


class ApiGatewayUsageKeys:
    def __init__(
        self, client: Any, *, stage: str, usage_plans: Mapping[str, str], secret: str
    ) -> None:
        self._client = client
        self._stage = stage
        self._plans = dict(usage_plans)  # plan tier -> usage plan id
        self._secret = secret.encode()
        self._bound: dict[int, tuple[str, str]] = {}  # user id -> (plan, key value)

    def name(self, user_id: int) -> str:
        return f"crucible-{self._stage}-user-{user_id}-key"

    def value(self, user_id: int) -> str:
        """The value a new key of ``user_id`` gets (64 hex digits; API Gateway wants 20+)."""
        message = f"crucible-usage-key:{self._stage}:{user_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def key_for(self, user_id: int, plan: str) -> str:
        known = self._bound.get(user_id)
        if known is not None and known[0] == plan:
            return known[1]
        if plan not in self._plans:
            raise ValueError(
                f"no usage plan for the '{plan}' plan (CRUCIBLE_USAGE_PLANS has "
                f"{', '.join(sorted(self._plans)) or 'none'})"
            )
        key_id, value = self._find(user_id) or self._create(user_id)
        # Out of the others first: API Gateway keeps a key in one usage plan per API stage.
        for tier, plan_id in self._plans.items():
            if tier != plan and self._holds(plan_id, key_id):
                self._leave(plan_id, key_id)
        if not self._holds(self._plans[plan], key_id):
            self._join(self._plans[plan], key_id)
        self._bound[user_id] = (plan, value)
        return value

    # --- the key ------------------------------------------------------------------
    def _keys_named(self, name: str) -> Iterator[dict[str, Any]]:
        # With values: a key keeps the value it was created with, so a rotated JWT secret
        # (which derives new ones) leaves existing keys working.
        params: dict[str, Any] = {"nameQuery": name, "includeValues": True, "limit": 500}
        while True:
            page = self._client.get_api_keys(**params)
            yield from (k for k in page.get("items", []) if k.get("name") == name)
            if not page.get("position"):
                return
            params["position"] = page["position"]

    def _find(self, user_id: int) -> tuple[str, str] | None:
        """The user's key (id, value): of several (none in AWS, where values are unique
        and each user's is derived), the oldest, so every authorizer picks the same."""
        keys = sorted(
            self._keys_named(self.name(user_id)), key=lambda k: (k["createdDate"], k["id"])
        )
        return (keys[0]["id"], keys[0]["value"]) if keys else None

    def _create(self, user_id: int) -> tuple[str, str]:
        try:
            key = self._client.create_api_key(
                name=self.name(user_id),
                description=f"Crucible user {user_id}'s key into their plan's usage plan",
                enabled=True,
                value=self.value(user_id),
            )
        except ClientError as exc:
            if _code(exc) != "ConflictException":
                raise
            found = self._find(user_id)  # another authorizer made it first
            if found is None:
                raise RuntimeError(
                    f"the API key of user {user_id} exists but was not found by name yet"
                ) from exc
            return found
        return key["id"], key["value"]

    # --- its usage plan -------------------------------------------------------------
    def _holds(self, plan_id: str, key_id: str) -> bool:
        try:
            self._client.get_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
        except ClientError as exc:
            if _code(exc) == "NotFoundException":
                return False
            raise
        return True

    def _leave(self, plan_id: str, key_id: str) -> None:
        try:
            self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
        except ClientError as exc:
            if _code(exc) != "NotFoundException":  # gone already: what we wanted
                raise

    def _join(self, plan_id: str, key_id: str) -> None:
        try:
            self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
        except ClientError as exc:
            # in it already (another authorizer), or still in another plan of this stage
            # (a move under way elsewhere): only the first is done
            if _code(exc) != "ConflictException" or not self._holds(plan_id, key_id):
                raise
