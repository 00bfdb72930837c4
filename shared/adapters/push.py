"""Push adapters: API Gateway's ``@connections`` API, and the local dev server's hub."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from shared.ports import DeliveryDeferred

# How the ``@connections`` client should be built (shared/wiring.py): botocore's standard
# retries (jittered exponential backoff; throttling, ``LimitExceededException``/429, and
# 5xx) bounded to a few attempts and short timeouts, so one post, retries included, ends
# well inside the push function's per-event budget (shared/services/push.py); and one
# pooled connection per delivery thread (PushService's ``workers``).
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 4},  # "max_attempts" would be 4 retries
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=64,
)
# Asking whether a connection is open ($connect at a user's cap): one attempt, short
# timeouts; a probe that fails counts the connection as open.
PROBE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=2
)
_GONE = ("GoneException", "410")
log = logging.getLogger(__name__)


class ApiGatewayNotifier:
    """Posts to WebSocket clients through ``apigatewaymanagementapi.post_to_connection``
    (thread-safe: the client is). Throttled posts are retried by botocore; one still
    throttled (or failing with a 5xx) when its attempts run out is ``DeliveryDeferred``."""

    def __init__(self, client: Any, probe_client: Callable[[], Any] | None = None) -> None:
        self.client = client
        # what ``alive`` asks with (PROBE_CONFIG), built on its first use
        self._probe_client = probe_client
        self._prober: Any = None

    def post(self, connection_id: str, message: dict[str, Any]) -> bool:
        try:
            self.client.post_to_connection(
                ConnectionId=connection_id, Data=json.dumps(message).encode()
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                return False
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 429 or status >= 500 or "LimitExceeded" in exc.response["Error"]["Code"]:
                raise DeliveryDeferred(f"{connection_id}: {exc}") from exc
            raise
        except (ConnectionError, HTTPClientError) as exc:
            raise DeliveryDeferred(f"{connection_id}: {exc}") from exc
        return True

    def close(self, connection_id: str) -> None:
        """Close the client's socket (``DeleteConnection``); a connection already gone is fine."""
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _GONE:
                raise

    def alive(self, connection_id: str) -> bool:
        """``GetConnection``: False only when API Gateway says it is gone (anything else,
        a throttle, a denial or an outage, counts as open, with a warning: a live socket
        is never forgotten)."""
        if self._prober is None:
            self._prober = self._probe_client() if self._probe_client else self.client
        try:
            self._prober.get_connection(ConnectionId=connection_id)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in _GONE:
                return False
            log.warning(
                "asking about connection %s failed (%s): counted as open", connection_id, code
            )
        except (ConnectionError, HTTPClientError) as exc:
            log.warning(
                "asking about connection %s failed (%s): counted as open", connection_id, exc
            )
        return True


Sender = Callable[[str], bool]
Closer = Callable[[], None]


class LocalHub:
    """Connections held by the local dev server, by connection id.

    The server registers a thread-safe ``send(text) -> bool`` per WebSocket, and a
    ``close()`` that closes it; the notifier below posts and closes through them exactly
    as the API Gateway notifier does through ``@connections``.
    """

    def __init__(self) -> None:
        self._senders: dict[str, Sender] = {}
        self._closers: dict[str, Closer] = {}
        self._lock = threading.Lock()

    def register(self, connection_id: str, send: Sender, close: Closer | None = None) -> None:
        with self._lock:
            self._senders[connection_id] = send
            if close is not None:
                self._closers[connection_id] = close

    def unregister(self, connection_id: str) -> None:
        with self._lock:
            self._senders.pop(connection_id, None)
            self._closers.pop(connection_id, None)

    def close(self, connection_id: str) -> None:
        """Stop sending to the connection and close its socket (when the server gave a way)."""
        with self._lock:
            self._senders.pop(connection_id, None)
            close = self._closers.pop(connection_id, None)
        if close is not None:
            close()

    def sender(self, connection_id: str) -> Sender | None:
        with self._lock:
            return self._senders.get(connection_id)


class LocalHubNotifier:
    def __init__(self, hub: LocalHub) -> None:
        self.hub = hub

    def post(self, connection_id: str, message: dict[str, Any]) -> bool:
        send = self.hub.sender(connection_id)
        return bool(send and send(json.dumps(message)))

    def close(self, connection_id: str) -> None:
        self.hub.close(connection_id)

    def alive(self, connection_id: str) -> bool:
        return self.hub.sender(connection_id) is not None
