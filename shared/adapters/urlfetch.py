"""Fetching images that clients name by URL (seed 003's ``image_url``), safely.

A URL names a place the platform is asked to connect to, so a hostile one aims the
platform at its own network: a cloud metadata endpoint, the Lambda runtime API on
loopback, a private service. :class:`SafeImageFetcher` therefore:

* takes ``https://`` URLs only: no user info, no spaces or control characters, a host
  that is a DNS name or an IP literal;
* resolves the host once and refuses it unless every address it resolves to may be
  reached (:func:`refusal`: not private, loopback, link-local, multicast, reserved,
  unspecified, shared/CGNAT, nor an IPv6 form that embeds such an IPv4 address:
  IPv4-mapped, IPv4-compatible, 6to4, NAT64), then connects to that checked address
  itself (TLS verified against the host's name), so a second DNS answer never decides
  where it connects (no rebinding);
* follows at most ``max_redirects`` redirects, each checked as a new URL from scratch
  (so an https URL cannot redirect to http, nor to a private address);
* bounds the whole fetch, DNS, connecting, headers and body, redirects included, by
  ``timeout_s`` (a watchdog shuts the connection at the deadline, so a server that
  dribbles bytes cannot hold it), and the body by ``max_bytes`` (the declared length is
  refused before reading, the read stops one byte past the limit);
* accepts only an image's content type, a generic binary one, or none (the inference
  service then checks the bytes' signature).

``allow_loopback_http`` (``CRUCIBLE_URL_FETCH_ALLOW_LOOPBACK_HTTP_FOR_TESTING``) is for
tests on one machine: it lets ``http://`` URLs and loopback addresses through as well,
and nothing else (private and link-local addresses stay refused).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from shared.errors import InvalidInput, TooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (``socket.getaddrinfo`` by default)
Resolver = Callable[[str, int], Sequence[str]]

NOT_ALLOWED = "URL_NOT_ALLOWED"
FETCH_FAILED = "URL_FETCH_FAILED"
TIMED_OUT = "URL_FETCH_TIMEOUT"
NOT_AN_IMAGE = "NOT_AN_IMAGE"

MAX_URL_CHARS = 2048
REDIRECTS = frozenset({301, 302, 303, 307, 308})
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
USER_AGENT = "Crucible-ImageFetcher/1.0"
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_PRINTABLE = re.compile(r"[\x21-\x7e]*")  # what a path and query may hold: no spaces, no controls
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, where it stands for one."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:aabb:ccdd::/48
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # 64:ff9b::a.b.c.d, ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why the platform may not connect to ``ip`` (a phrase for people), or None when it
    may: only globally routable unicast addresses (and loopback, when allowed)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return "a Teredo tunnel address"
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return refusal(embedded, allow_loopback=allow_loopback)
        if ip.is_site_local:
            return "a site-local address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip in _CGNAT, "a shared (carrier-grade NAT) address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "an address that is not publicly routable"),
    )
    return next((why for refused, why in checks if refused), None)


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class _Target:
    """A URL as checked: where to connect (the addresses, in order) and what to ask."""

    url: str
    scheme: str
    host: str  # as sent (Host header, TLS server name): IDNA, lower case
    port: int
    path: str
    addresses: tuple[IPAddress, ...]


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to ``host`` over a connection to exactly ``address`` (no second lookup)."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def _open(self) -> socket.socket:
        family = socket.AF_INET6 if self.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((str(self.address), self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPS(_PinnedHTTP):
    """HTTPS to ``host`` over a connection to exactly ``address``; the certificate is
    verified against ``host`` (the system's trust store)."""

    default_port = 443  # the Host header names other ports only

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, address, timeout)
        self.tls = tls

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(self._open(), server_hostname=self.host)


def _abort(conn: http.client.HTTPConnection) -> None:
    """Shut the connection's socket (from the watchdog): a blocked read returns at once."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # the plain socket's, also under TLS: reads end
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class SafeImageFetcher:
    """The :class:`shared.ports.ImageFetcher` of every runtime (see the module's notes)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        allow_loopback_http: bool = False,
        max_redirects: int = 3,
        resolver: Resolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.allow_loopback_http = allow_loopback_http
        self.max_redirects = max_redirects
        self.resolver = resolver or _resolve
        self.tls = tls or ssl.create_default_context()

    # --- the port ---------------------------------------------------------------------
    def check(self, url: str) -> None:
        self._target(url, time.monotonic() + self.timeout_s)

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        for _ in range(self.max_redirects + 1):
            target = self._target(url, deadline)
            try:
                return self._get(target, max_bytes, deadline)
            except _Redirect as redirect:
                url = urljoin(target.url, redirect.location)
        raise InvalidInput(
            f"The image URL redirected more than {self.max_redirects} times", code=FETCH_FAILED
        )

    # --- checking a URL ---------------------------------------------------------------
    def _refuse(self, why: str) -> InvalidInput:
        return InvalidInput(f"This image URL may not be fetched: {why}", code=NOT_ALLOWED)

    def _target(self, url: str, deadline: float) -> _Target:
        if len(url) > MAX_URL_CHARS:
            raise self._refuse(f"it is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise self._refuse("it is not a valid URL") from None
        schemes = ("https", "http") if self.allow_loopback_http else ("https",)
        if parts.scheme.lower() not in schemes:
            raise self._refuse("only https:// URLs are fetched")
        if parts.username is not None or parts.password is not None:
            raise self._refuse("it holds user information (user@host)")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if not _PRINTABLE.fullmatch(path):
            raise self._refuse("its path holds spaces, control or non-ASCII characters")
        host = self._host(parts.hostname or "")
        scheme = parts.scheme.lower()
        port = port or (443 if scheme == "https" else 80)
        addresses = self._addresses(host, port, deadline)
        return _Target(url, scheme, host, port, path, addresses)

    def _host(self, host: str) -> str:
        if not host:
            raise self._refuse("it names no host")
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        try:
            name = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise self._refuse("its host is not a valid name") from None
        if len(name) > 253 or not _HOST.fullmatch(name):
            raise self._refuse("its host is not a valid name")
        return name

    def _addresses(self, host: str, port: int, deadline: float) -> tuple[IPAddress, ...]:
        """Every address ``host`` stands for, each allowed; refused if any is not."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        names = [host] if literal else self._lookup(host, port, deadline)
        try:
            addresses = tuple(dict.fromkeys(ipaddress.ip_address(a) for a in names))
        except ValueError:
            raise self._refuse("its host resolved to something that is not an address") from None
        if not addresses:
            raise InvalidInput(f"The image URL's host {host} has no address", code=FETCH_FAILED)
        for address in addresses:
            why = refusal(address, allow_loopback=self.allow_loopback_http)
            if why:
                where = "is" if literal else "resolves to"
                raise self._refuse(f"its host {where} {why}")
        return addresses

    def _lookup(self, host: str, port: int, deadline: float) -> list[str]:
        """The resolver's answer, within the time left (a lookup that hangs is left behind)."""
        found: list[str] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                found.extend(self.resolver(host, port))
            except Exception as exc:
                failed.append(exc)

        worker = threading.Thread(target=run, name="urlfetch-dns", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            raise InvalidInput(
                f"The image URL's host {host} could not be resolved within {self.timeout_s:g} s",
                code=TIMED_OUT,
            )
        if failed:
            raise InvalidInput(
                f"The image URL's host {host} could not be resolved", code=FETCH_FAILED
            )
        return found

    # --- fetching ---------------------------------------------------------------------
    def _connect(self, t: _Target, deadline: float) -> http.client.HTTPConnection:
        """A connection to the first of the checked addresses that answers."""
        last: OSError | None = None
        for address in t.addresses:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn: http.client.HTTPConnection = (
                _PinnedHTTPS(t.host, t.port, address, left, self.tls)
                if t.scheme == "https"
                else _PinnedHTTP(t.host, t.port, address, left)
            )
            try:
                conn.connect()
                return conn
            except OSError as exc:
                conn.close()
                last = exc
        raise last or TimeoutError()

    def _get(self, t: _Target, max_bytes: int, deadline: float) -> bytes:
        conn: http.client.HTTPConnection | None = None
        watchdog: threading.Timer | None = None
        try:
            conn = self._connect(t, deadline)
            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _abort, (conn,))
            watchdog.daemon = True
            watchdog.start()
            conn.request(
                "GET",
                t.path,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            resp = conn.getresponse()
            if resp.status in REDIRECTS:
                location = resp.getheader("Location")
                if not location:
                    raise InvalidInput(
                        f"The image URL answered HTTP {resp.status} without a Location",
                        code=FETCH_FAILED,
                    )
                raise _Redirect(location)
            if resp.status != 200:
                raise InvalidInput(
                    f"The image URL answered HTTP {resp.status}, not 200", code=FETCH_FAILED
                )
            self._check_type(resp.getheader("Content-Type"))
            length = (resp.getheader("Content-Length") or "").strip()
            if length.isdigit() and int(length) > max_bytes:
                raise self._too_large(max_bytes)
            body = bytearray()
            while chunk := resp.read(min(1 << 16, max_bytes + 1 - len(body))):
                body += chunk
                if len(body) > max_bytes:
                    raise self._too_large(max_bytes)
            if time.monotonic() >= deadline:  # the watchdog ended the read
                raise TimeoutError()
            if length.isdigit() and len(body) != int(length):
                raise http.client.IncompleteRead(bytes(body), int(length) - len(body))
            return bytes(body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if time.monotonic() >= deadline - 0.01:
                raise InvalidInput(
                    f"The image URL did not answer within {self.timeout_s:g} s", code=TIMED_OUT
                ) from None
            reason = "its certificate could not be verified" if _is_tls(exc) else "it failed"
            raise InvalidInput(
                f"The image could not be fetched from {t.host}: {reason} ({type(exc).__name__})",
                code=FETCH_FAILED,
            ) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if conn is not None:
                conn.close()

    @staticmethod
    def _check_type(value: str | None) -> None:
        if not value:
            return
        kind = value.split(";", 1)[0].strip().lower()
        if not (kind.startswith("image/") or kind in GENERIC_TYPES):
            raise InvalidInput(
                f"The image URL answered {kind[:60]}, not an image", code=NOT_AN_IMAGE
            )

    @staticmethod
    def _too_large(max_bytes: int) -> TooLarge:
        return TooLarge(f"Images for inference must be at most {max_bytes} bytes")


def _is_tls(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLCertVerificationError)
