"""The API over HTTP: where it is, the signed-in session (the token file), refreshing an
expired access token, and every refusal turned into one line and an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from enum import IntEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v1"
# Refresh an access token this long before it expires, not after a refusal.
REFRESH_MARGIN_S = 30
# C0 and C1 controls (but tab and newline), and the bidi overrides that reorder what shows
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Exit(IntEnum):
    """What ``crucible`` exits with (listed in ``crucible --help``)."""

    OK = 0
    FAILED = 1  # a job, analysis, dataset or evaluation ended failed or stopped
    USAGE = 2  # the command line was wrong (click's own code for usage errors)
    AUTH = 3  # not signed in, or the API refused the credentials (401)
    REFUSED = 4  # the API refused the request (another 4xx)
    UNAVAILABLE = 5  # the API could not be reached, failed (5xx) or did not answer in time
    BUG = 6  # an error in crucible itself


class CliError(Exception):
    """A failure to report as one line, ending the command with ``code``."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def clean(text: object) -> str:
    """Text from the API or a file, safe to print: no control characters (a hostile
    message cannot move the cursor or retitle the terminal)."""
    return _CONTROL.sub("", str(text))


def base_url() -> str:
    url = os.environ.get("CRUCIBLE_URL", DEFAULT_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"CRUCIBLE_URL must be an http(s) URL, not {url!r}", Exit.USAGE)
    return url


def config_dir() -> Path:
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "crucible"


class TokenStore:
    """``token.json`` in the config directory: one session per API URL. The directory is
    0700 and the file 0600, written whole (a new file renamed over the old), so neither a
    reader nor a crash ever sees half a token."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or config_dir()
        self.path = self.dir / "token.json"

    def _all(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CliError(
                f"cannot read {self.path} ({exc}); run `crucible login` again", Exit.AUTH
            ) from None
        return data.get("sessions", {}) if isinstance(data, dict) else {}

    def load(self, url: str) -> dict[str, Any] | None:
        found = self._all().get(url)
        return found if isinstance(found, dict) else None

    def save(self, url: str, session: dict[str, Any] | None) -> None:
        sessions = self._all()
        if session is None:
            sessions.pop(url, None)
        else:
            sessions[url] = session
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        tmp = self.dir / f".token.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a leftover of a write that died
        # a new file only, never through a link someone put there
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"sessions": sessions}, f, indent=1)
            os.chmod(tmp, 0o600)  # whatever the umask made of it
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def refusal(r: httpx.Response) -> CliError:
    """The API's own words for a refusal (its ``detail``), with the status and code."""
    detail, code = None, None
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("detail")
        if isinstance(raw, list):  # FastAPI's own list of problems, should one get through
            raw = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in raw)
        detail = raw if raw else None
        code = body.get("code") if isinstance(body.get("code"), str) else None
    if detail is None:
        detail = r.text.strip().splitlines()[0][:300] if r.text.strip() else r.reason_phrase
    where = f"HTTP {r.status_code}" + (f" {code}" if code else "")
    message = f"{clean(detail)} ({where})"
    if r.status_code == 401:
        return CliError(message, Exit.AUTH)
    if r.status_code == 429 and r.headers.get("Retry-After"):
        message += f"; try again in {clean(r.headers['Retry-After'])} s"
    return CliError(message, Exit.REFUSED if r.status_code < 500 else Exit.UNAVAILABLE)


def unreachable(url: str, exc: Exception) -> CliError:
    if isinstance(exc, httpx.TimeoutException):
        return CliError(f"{url} did not answer in time ({type(exc).__name__})", Exit.UNAVAILABLE)
    return CliError(
        f"cannot reach {url}: {clean(exc) or type(exc).__name__} "
        "(is the stack running? set CRUCIBLE_URL)",
        Exit.UNAVAILABLE,
    )


class Api:
    """The API at ``url`` as the signed-in user. Thread-safe: uploads and watches call it
    from worker threads; one refresh at a time."""

    def __init__(self, url: str | None = None, store: TokenStore | None = None) -> None:
        self.url = url or base_url()
        self.store = store or TokenStore()
        self.http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(120, connect=10),
            headers={"User-Agent": "crucible-cli"},
            follow_redirects=False,
        )
        self._lock = threading.Lock()
        self._session: dict[str, Any] | None = None

    # --- the session ---------------------------------------------------------------------
    @property
    def session(self) -> dict[str, Any]:
        if self._session is None:
            self._session = self.store.load(self.url)
        if not self._session:
            raise CliError(f"not signed in to {self.url}: run `crucible login`", Exit.AUTH)
        return self._session

    def sign_in(self, session: dict[str, Any]) -> None:
        self._session = session
        self.store.save(self.url, session)

    def sign_out(self) -> bool:
        had = self.store.load(self.url) is not None
        self.store.save(self.url, None)
        self._session = None
        return had

    def token(self) -> str:
        """A current access token: refreshed first when it is about to expire."""
        s = self.session
        if s.get("refresh_token") and s.get("expires_at", 0) - REFRESH_MARGIN_S < time.time():
            self.refresh(s["access_token"])
        return self.session["access_token"]

    def refresh(self, stale: str) -> None:
        """Trade the refresh token for a new access token (unless another thread just
        did). A refused refresh ends the session: the user must sign in again."""
        with self._lock:
            s = self.session
            if s["access_token"] != stale:
                return
            if not s.get("refresh_token"):
                raise CliError(
                    "the token was refused; run `crucible login` with a valid one", Exit.AUTH
                )
            try:
                r = self.http.post(
                    f"{API}/auth/refresh", json={"refresh_token": s["refresh_token"]}
                )
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from None
            if r.status_code != 200:
                err = refusal(r)
                if r.status_code in (400, 401, 403):
                    raise CliError(
                        f"the session has expired ({err.message}); run `crucible login`",
                        Exit.AUTH,
                    )
                raise err
            body = r.json()
            self.sign_in(
                {
                    **s,
                    "access_token": body["access_token"],
                    "expires_at": time.time() + int(body.get("expires_in", 0)),
                }
            )

    # --- requests ------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, auth: bool = True, ok: tuple[int, ...] = (), **kw: Any
    ) -> httpx.Response:
        """Send one request; a refusal (any status >= 400 not in ``ok``) raises CliError.
        An expired access token is refreshed and the request sent once more; a GET the
        API answers 503 (a backing service restarting) is retried after its Retry-After."""
        headers = dict(kw.pop("headers", None) or {})
        for attempt in range(4):
            token = self.token() if auth else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                r = self.http.request(method, path, headers=headers, **kw)
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from None
            if r.status_code in ok or r.status_code < 400:
                return r
            if r.status_code == 401 and token and attempt == 0 and self._refreshable(r):
                self.refresh(token)
                continue
            if r.status_code == 503 and method == "GET" and attempt < 3:
                time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 10.0))
                continue
            raise refusal(r)
        raise refusal(r)

    def _refreshable(self, r: httpx.Response) -> bool:
        try:
            code = r.json().get("code")
        except (ValueError, AttributeError):
            code = None
        return bool(self.session.get("refresh_token")) and code in (None, "TOKEN_EXPIRED")

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw).json()

    def ws_url(self, topic: str) -> str:
        """The WebSocket of one topic; the token goes in the subprotocol, never the URL."""
        scheme = "wss" if self.url.startswith("https") else "ws"
        query = urlencode({"topic": topic, "format": "crucible"})
        return f"{scheme}{self.url[self.url.index(':') :]}{API}/ws?{query}"

    def close(self) -> None:
        self.http.close()
