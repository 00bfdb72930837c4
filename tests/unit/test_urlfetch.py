"""The safe image fetcher (shared/adapters/urlfetch.py): every address class refused
(after DNS too, IPv4 and IPv6, embedded IPv4 forms included), one lookup and a
connection to the address checked (no rebinding), redirects checked anew, size and time
limits, content types, and TLS verified against the host's name. The happy paths run
against servers on 127.0.0.1 with the testing setting that lets loopback through."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from shared.adapters.urlfetch import SafeImageFetcher, refusal
from shared.errors import InvalidInput, TooLarge

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
MAX = 10_000


# --- addresses ---------------------------------------------------------------------------
REFUSED = [
    "127.0.0.1",  # loopback
    "127.3.2.1",
    "10.0.0.1",  # private
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the cloud metadata endpoint
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 (unspecified / "this network")
    "0.1.2.3",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.10",  # documentation and benchmarking ranges
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",  # link-local
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fec0::1",  # site-local (deprecated)
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_every_address_class_that_is_not_public_is_refused(address):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_testing_setting_lets_loopback_through_and_nothing_else():
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is None
    for address in ("10.0.0.1", "169.254.169.254", "::ffff:169.254.169.254", "fd00::1", "0.0.0.1"):
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is not None


# --- URLs, checked before anything is fetched ---------------------------------------------
class FakeDNS:
    """A resolver from a table; counts its lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table, self.calls = table, []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


DNS = {
    "evil.test": ["127.0.0.1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "private.test": ["10.1.2.3"],
    "mixed.test": ["93.184.216.34", "192.168.0.7"],
    "cgnat.test": ["100.100.100.100"],
    "six.test": ["fd00::5"],
}


def refused_code(fetcher: SafeImageFetcher, url: str) -> str:
    with pytest.raises(InvalidInput) as info:
        fetcher.check(url)
    return info.value.code


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.png",  # https only
        "ftp://example.com/cat.png",
        "file:///etc/passwd",
        "gopher://example.com/",
        "s3://bucket/key.png",
        "https://user:secret@example.com/cat.png",
        "https://example.com@evil.test/cat.png",
        "https:///cat.png",
        "https://exa mple.com/cat.png",
        "https://example.com/a b.png",
        "https://example.com/\x00.png",
        "https://example.com:99999/cat.png",
        "https://" + "a" * 300 + ".com/",
        "https://example.com/" + "a" * 3000,
        "https://127.0.0.1/cat.png",
        "https://[::1]/cat.png",
        "https://[::ffff:127.0.0.1]/cat.png",
        "https://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest/meta-data/",  # the IPv6 metadata endpoint
        "https://10.0.0.1/",
        "https://100.64.0.1/",
        "https://evil.test/cat.png",  # DNS that answers 127.0.0.1
        "https://mapped.test/cat.png",  # DNS that answers ::ffff:127.0.0.1
        "https://metadata.test/",
        "https://private.test/",
        "https://mixed.test/",  # any address refused refuses the host
        "https://cgnat.test/",
        "https://six.test/",
    ],
)
def test_urls_that_may_not_be_fetched_are_refused_before_fetching(url):
    fetcher = SafeImageFetcher(timeout_s=2, resolver=FakeDNS(DNS))
    assert refused_code(fetcher, url) == "URL_NOT_ALLOWED"


@pytest.mark.parametrize(
    "url", ["https://localhost/x.png", "https://2130706433/x.png", "https://0x7f.1/x.png"]
)
def test_the_system_resolver_answering_loopback_is_refused(url):
    """Names the real resolver turns into 127.0.0.1 (the hosts file, numeric forms)."""
    assert refused_code(SafeImageFetcher(timeout_s=2), url) == "URL_NOT_ALLOWED"


def test_a_host_that_does_not_resolve_or_resolves_slowly():
    fetcher = SafeImageFetcher(timeout_s=2, resolver=FakeDNS({}))
    assert refused_code(fetcher, "https://nowhere.test/x.png") == "URL_FETCH_FAILED"

    def slow(host, port):
        time.sleep(5)
        return ["93.184.216.34"]

    started = time.monotonic()
    slow_fetcher = SafeImageFetcher(timeout_s=0.3, resolver=slow)
    assert refused_code(slow_fetcher, "https://slow.test/x.png") == "URL_FETCH_TIMEOUT"
    assert time.monotonic() - started < 2


def test_loopback_http_is_refused_without_the_testing_setting(server):
    fetcher = SafeImageFetcher(timeout_s=2)
    with pytest.raises(InvalidInput) as info:
        fetcher.fetch(f"{server}/ok.png", max_bytes=MAX)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert not Handler.seen  # never connected


# --- fetching, against servers on 127.0.0.1 -----------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []  # (path, Host header) of every request served
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Handler.seen.append((self.path, self.headers.get("Host", "")))
        port = self.server.server_address[1]
        routes = {
            "/ok.png": lambda: self._send(200, PNG, {"Content-Type": "image/png"}),
            "/untyped.png": lambda: self._send(200, PNG),
            "/html": lambda: self._send(200, b"<html></html>", {"Content-Type": "text/html"}),
            "/missing": lambda: self._send(404, b"nope"),
            "/redirect": lambda: self._send(302, headers={"Location": "/ok.png"}),
            "/redirect-private": lambda: self._send(
                302, headers={"Location": "http://10.0.0.1/x.png"}
            ),
            "/redirect-metadata": lambda: self._send(
                301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
            ),
            "/redirect-by-name": lambda: self._send(
                307, headers={"Location": f"http://private.test:{port}/ok.png"}
            ),
            "/loop": lambda: self._send(302, headers={"Location": "/loop"}),
            "/big": lambda: self._send(
                200, b"\x89PNG" + b"\x00" * MAX, {"Content-Type": "image/png"}
            ),
        }
        if self.path in routes:
            return routes[self.path]()
        if self.path == "/big-unannounced":  # no Content-Length: read until the limit
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\x00" * 1000)
            return None
        if self.path == "/slow":  # headers at once, then a byte now and then, forever
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "5000")
            self.end_headers()
            return self._dribble()
        if self.path == "/slow-headers":  # the headers themselves, a byte at a time
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            return self._dribble(b"X")
        return self._send(404)

    def _dribble(self, byte: bytes = b"\x00") -> None:
        try:
            for _ in range(200):
                self.wfile.write(byte)
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hung up: expected here
        pass


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    httpd = Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    Handler.seen = []
    yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    yield from _serve()


def local(timeout_s: float = 3, dns: dict | None = None, **kw) -> SafeImageFetcher:
    return SafeImageFetcher(
        timeout_s=timeout_s, allow_loopback_http=True, resolver=FakeDNS(dns or DNS), **kw
    )


def fetch_error(fetcher: SafeImageFetcher, url: str, max_bytes: int = MAX) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        fetcher.fetch(url, max_bytes=max_bytes)
    return info.value


def test_an_image_is_fetched(server):
    assert local().fetch(f"{server}/ok.png", max_bytes=MAX) == PNG
    assert local().fetch(f"{server}/untyped.png", max_bytes=MAX) == PNG  # no type: bytes decide


def test_one_lookup_and_the_connection_goes_to_the_checked_address(server):
    """The name is resolved once and connected to as checked: a resolver that would
    answer differently the second time (rebinding) is never asked twice, and the
    request still names the host."""
    port = server.rsplit(":", 1)[1]
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls = []

    def rebinding(host, p):
        calls.append(host)
        return next(answers)

    fetcher = SafeImageFetcher(timeout_s=3, allow_loopback_http=True, resolver=rebinding)
    assert fetcher.fetch(f"http://images.test:{port}/ok.png", max_bytes=MAX) == PNG
    assert calls == ["images.test"]
    assert Handler.seen == [("/ok.png", f"images.test:{port}")]


def test_redirects_are_followed_and_each_checked_anew(server):
    assert local().fetch(f"{server}/redirect", max_bytes=MAX) == PNG
    for path in ("/redirect-private", "/redirect-metadata", "/redirect-by-name"):
        assert fetch_error(local(), f"{server}{path}").code == "URL_NOT_ALLOWED", path
    assert [p for p, _ in Handler.seen] == [
        "/redirect",
        "/ok.png",
        "/redirect-private",
        "/redirect-metadata",
        "/redirect-by-name",
    ]  # nothing reached past a refused redirect
    loop = fetch_error(local(), f"{server}/loop")
    assert loop.code == "URL_FETCH_FAILED" and "redirected more than 3" in loop.detail


def test_an_https_url_may_not_redirect_to_http():
    def redirect_to_http(host, port):
        return ["93.184.216.34"]

    fetcher = SafeImageFetcher(timeout_s=2, resolver=redirect_to_http)
    # what a redirect is checked with: the URL it names, from scratch
    assert refused_code(fetcher, "http://93.184.216.34/x.png") == "URL_NOT_ALLOWED"


def test_size_limits(server):
    with pytest.raises(TooLarge):  # announced too large: refused before reading
        local().fetch(f"{server}/big", max_bytes=MAX)
    with pytest.raises(TooLarge):  # unannounced: the read stops past the limit
        local().fetch(f"{server}/big-unannounced", max_bytes=MAX)


def test_what_is_not_an_image_or_not_there(server):
    assert fetch_error(local(), f"{server}/html").code == "NOT_AN_IMAGE"
    missing = fetch_error(local(), f"{server}/missing")
    assert missing.code == "URL_FETCH_FAILED" and "404" in missing.detail


@pytest.mark.parametrize("path", ["/slow", "/slow-headers"])
def test_the_whole_fetch_is_bounded_in_time(server, path):
    started = time.monotonic()
    assert fetch_error(local(timeout_s=1), f"{server}{path}").code == "URL_FETCH_TIMEOUT"
    assert time.monotonic() - started < 2.5


def test_nothing_listening(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert fetch_error(local(), f"http://127.0.0.1:{port}/x.png").code == "URL_FETCH_FAILED"


# --- TLS: verified against the host's name, over the pinned connection --------------------
def _certificate(tmp_path, name: str) -> tuple[str, str]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[str, str]]:
    cert, key = _certificate(tmp_path, "images.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    for base in _serve(ctx):
        yield base, cert


def test_https_is_verified_against_the_hosts_name(tls_server, tmp_path):
    base, cert = tls_server
    port = base.rsplit(":", 1)[1]
    dns = {"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    trusting = ssl.create_default_context(cafile=cert)
    fetcher = local(dns=dns, tls=trusting)
    assert fetcher.fetch(f"https://images.test:{port}/ok.png", max_bytes=MAX) == PNG
    assert Handler.seen[-1] == ("/ok.png", f"images.test:{port}")
    # the same server, under a name its certificate does not hold
    wrong = fetch_error(fetcher, f"https://other.test:{port}/ok.png")
    assert wrong.code == "URL_FETCH_FAILED" and "certificate" in wrong.detail
    # a certificate the system does not trust
    untrusted = fetch_error(local(dns=dns), f"https://images.test:{port}/ok.png")
    assert untrusted.code == "URL_FETCH_FAILED" and "certificate" in untrusted.detail


# --- the setting ----------------------------------------------------------------------------
def test_the_testing_setting_is_off_by_default_and_refused_in_a_deployment():
    from shared.settings import SettingsError, load_settings

    assert load_settings().url_fetch_allow_loopback_http_for_testing is False
    assert load_settings(url_fetch_allow_loopback_http_for_testing=True).predictor == "local"
    with pytest.raises(SettingsError, match="URL_FETCH_ALLOW_LOOPBACK_HTTP_FOR_TESTING"):
        load_settings(predictor="lambda", url_fetch_allow_loopback_http_for_testing=True)
