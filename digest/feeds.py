"""Fetching and parsing feeds: bytes from the network or disk, entries out.

httpx fetches (feedparser's own fetching has no timeout); feedparser parses the bytes with the
response headers beside them, so that declared encodings and relative links resolve as the
server meant. JSON Feed, which feedparser 6 does not read, is parsed by `jsonfeed`.

Fetching is polite: several feeds at once but few per host, conditional GET, redirects told
apart (a 301 is remembered, a 302 is not), 410 and Retry-After respected. And since a feed's
server may be hostile, every fetch is bounded where it could hurt us:

- size: the body is decompressed here, a piece at a time, and refused past `max_bytes`
  (httpx inflates a whole network read at once: 6.5 KB of brotli became 4 GiB in memory);
- time: the deadline bounds every socket operation of the fetch, its response headers
  included (httpx's timeouts are per operation: a byte a second never trips them);
- place: a non-public address (loopback, private, link-local, ...) is reached only when the
  configured URL itself points there; no redirect or DNS answer leads a public feed inside.

Errors are values: one feed's failure is returned, recorded and passed over, in words for the
operator rather than in a library's.
"""

from __future__ import annotations

import codecs
import contextvars
import io
import ipaddress
import itertools
import os
import re
import socket
import ssl
import stat
import threading
import time
import xml.sax
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import brotli
import feedparser
import httpcore
import httpx

from digest import __version__, jsonfeed
from digest.config import Collect

PERMANENT = (301, 308)
TEMPORARY = (302, 303, 307)
MAX_REDIRECTS = 5
# However long a server asks us to stay away (429/503 Retry-After), we look again within a day:
# a misconfigured header must not silence a feed for good.
LONGEST_WAIT = timedelta(days=1)
DEFAULTS = Collect()
# The codings `_body` can bound; httpx would also offer zstd when a package for it is around.
ACCEPT_ENCODING = "gzip, deflate, br"
# The most one step of a decoder may inflate at once.
_PIECE = 64 * 1024
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FeedError(Exception):
    """Why one feed could not be read, in words for the operator."""

    def __init__(self, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # the server asked us not to come back before this


class Gone(FeedError):
    """410 Gone: the publisher took the feed down for good; it is disabled, not retried."""


class Refused(FeedError):
    """A connection the feed may not make: to a non-public address its configured URL does
    not name."""


@dataclass(frozen=True)
class Fetched:
    url: str  # where the body came from, after redirects: relative links resolve against it
    body: bytes | None  # None: 304 Not Modified, nothing to parse
    headers: dict[str, str] = field(default_factory=dict)
    moved: str | None = None  # the new URL, when every redirect on the way was permanent

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


@dataclass(frozen=True)
class Request:
    """One feed to fetch: where from, with the validators of the last good fetch."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    feed: str = ""  # the caller's name for the feed: its configured URL


def user_agent(public_url: str) -> str:
    return f"digest/{__version__} (+{public_url})"


# -- where a fetch may connect, and for how long ---------------------------------------------

def _plain(address: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is the IPv4 address a.b.c.d, and must be judged as one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _public(address: IPAddress) -> bool:
    address = _plain(address)
    return address.is_global and not address.is_multicast


def _kind(address: IPAddress) -> str:
    address = _plain(address)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return "private" if address.is_private else "non-public"


def _resolve(host: str) -> list[IPAddress]:
    """The addresses of `host` in the resolver's order; an IP literal is its own."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FeedError(f"cannot resolve host {host}") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))


@dataclass
class _Bounds:
    """What one fetch may do: until when (on the monotonic clock), and which non-public
    addresses its configured URL vouches for. Each host is resolved once per fetch and
    connected to at the addresses that were checked, so a second DNS answer cannot differ."""

    until: float
    seconds: float
    vouched: frozenset[IPAddress] = frozenset()
    answers: dict[str, list[IPAddress]] = field(default_factory=dict)

    def within(self, timeout: float | None) -> float:
        """`timeout`, shortened to what is left of the deadline."""
        left = self.until - time.monotonic()
        if left <= 0:
            raise FeedError(f"too slow: not complete after {self.seconds:g}s")
        return left if timeout is None else min(timeout, left)

    def addresses(self, host: str) -> list[IPAddress]:
        """Where `host` may be reached: its addresses, if each is public or vouched for."""
        if host not in self.answers:
            self.answers[host] = _resolve(host)
        for address in self.answers[host]:
            if not _public(address) and address not in self.vouched:
                named = host if host == str(address) else f"{host} ({address})"
                raise Refused(f"{named} is a {_kind(address)} address")
        return self.answers[host]

    def vouch(self, host: str) -> bool:
        """Trust `host`'s addresses when none of them is public: the configured URL points
        inside on purpose. True if it does."""
        addresses = self.answers.setdefault(host, _resolve(host))
        if any(_public(address) for address in addresses):
            return False
        self.vouched = frozenset(addresses)
        return True


# The bounds of the fetch running in this thread. httpcore's network backend, which opens and
# reads the sockets, is told nothing of the request they serve: this is how it learns them.
_BOUNDS: contextvars.ContextVar[_Bounds] = contextvars.ContextVar("bounds")


def _reason(error: BaseException) -> str:
    """What went wrong below a library's exception, in words without an error number."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError) and cause.reason:
            return cause.reason.lower().replace("_", " ")
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__
    words = str(error).rstrip(".") or type(error).__name__
    return words[:1].lower() + words[1:]


class _Stream(httpcore.NetworkStream):
    """A socket whose every operation ends by the deadline of the fetch using it."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _BOUNDS.get().within(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _BOUNDS.get().within(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        try:
            return _Stream(self._stream.start_tls(ssl_context, server_hostname,
                                                  _BOUNDS.get().within(timeout)))
        except httpcore.ConnectError as error:
            raise FeedError(f"TLS with {server_hostname} failed: {_reason(error)}") from None

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Guarded(httpcore.SyncBackend):
    """httpcore's sockets, opened only to addresses the current fetch may reach."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bounds = _BOUNDS.get()
        failure: httpcore.ConnectError | None = None
        for address in bounds.addresses(host):
            try:
                return _Stream(super().connect_tcp(str(address), port, bounds.within(timeout),
                                                   local_address, socket_options))
            except httpcore.ConnectError as error:
                failure = error  # the next address may answer
        raise FeedError(f"cannot connect to {host} port {port}: {_reason(failure or OSError())}")


class _Transport(httpx.HTTPTransport):
    """httpx's transport over guarded sockets."""

    def __init__(self, limits: httpx.Limits, context: ssl.SSLContext) -> None:
        super().__init__(verify=context)
        # httpx takes no network backend: its pool is made again around ours, as httpx makes it.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_Guarded())


class Fetcher:
    """The HTTP side of a collect run, shared by its fetching threads (httpx's pools are
    thread-safe): one client for public feeds, one for feeds whose configured URL points at a
    non-public address. Only public connections are kept alive: a kept connection serves the
    next fetch from its host, and only a public one is fine for every feed."""

    def __init__(self, public_url: str, settings: Collect = DEFAULTS) -> None:
        context = httpx.create_ssl_context()  # loading the CA certificates takes a while

        def made(kept: int) -> httpx.Client:
            return httpx.Client(
                transport=_Transport(httpx.Limits(max_connections=settings.concurrency,
                                                  max_keepalive_connections=kept), context),
                timeout=httpx.Timeout(settings.timeout),
                follow_redirects=False,  # followed by hand: a 301 is recorded, a 302 is not
                headers={"User-Agent": user_agent(public_url),
                         "Accept-Encoding": ACCEPT_ENCODING})

        self.public = made(settings.concurrency)
        self.inside = made(0)

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    def close(self) -> None:
        self.public.close()
        self.inside.close()


def client(public_url: str, settings: Collect = DEFAULTS) -> Fetcher:
    """One Fetcher for a collect run."""
    return Fetcher(public_url, settings)


# -- fetching ----------------------------------------------------------------------------------

class Hosts:
    """At most `per_host` fetches at once from any one host, counted across every thread of a
    run that fetches: the feeds' and those reading their article pages (enrich.py)."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Semaphore] = {}

    def gate(self, url: str) -> threading.Semaphore:
        with self._lock:
            return self._gates.setdefault(_host(url), threading.Semaphore(self.per_host))


def fetch_all(http: Fetcher, requests: Iterable[Request], settings: Collect, at: datetime,
              hosts: Hosts | None = None) -> Iterator[tuple[Request, Fetched | FeedError]]:
    """Fetch in threads, `settings.concurrency` at once and at most `settings.per_host` per
    host (counted in `hosts` when other fetches share them); yield each result as it arrives,
    so the caller parses and stores one at a time in its own thread. `at` is the moment of
    the run, from which a Retry-After counts."""
    gates = hosts or Hosts(settings.per_host)

    def one(request: Request) -> Fetched | FeedError:
        with gates.gate(request.url):
            try:
                return fetch(http, request.url, request.etag, request.last_modified, settings,
                             configured=request.feed or request.url, at=at)
            except FeedError as error:
                return error

    with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="fetch") as pool:
        futures: dict[Future[Fetched | FeedError], Request] = {
            pool.submit(one, request): request for request in _interleaved(requests)}
        for done in as_completed(futures):
            yield futures[done], done.result()


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "") if _is_http(url) else ""
    except ValueError:
        return ""


def _interleaved(requests: Iterable[Request]) -> list[Request]:
    """Round-robin over hosts, so that threads waiting for a busy host's turn are rare and
    the other hosts' feeds go ahead."""
    queues: dict[str, list[Request]] = {}
    for request in requests:
        queues.setdefault(_host(request.url), []).append(request)
    ordered = []
    while queues:
        for host in list(queues):
            ordered.append(queues[host].pop(0))
            if not queues[host]:
                del queues[host]
    return ordered


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def fetch(http: Fetcher, url: str, etag: str | None = None, last_modified: str | None = None,
          settings: Collect = DEFAULTS, *, configured: str | None = None,
          at: datetime | None = None) -> Fetched:
    """The feed's bytes, or None for the body when the server says nothing changed.

    `configured` is the URL as the operator wrote it (`url` unless the feed moved): only its
    host can vouch for a non-public address. `at` is the moment of the fetch, from which a
    Retry-After counts; without it, none is read."""
    if not _is_http(url):
        return _read_file(url, settings.max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    bounds = _Bounds(time.monotonic() + settings.deadline, settings.deadline)
    token = _BOUNDS.set(bounds)
    first, moved, permanent = url, None, True
    try:
        http_client = http.inside if _vouched(bounds, configured or url, url) else http.public
        for _ in range(MAX_REDIRECTS + 1):
            with http_client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status in PERMANENT + TEMPORARY and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if not _is_http(url):
                        raise FeedError(f"HTTP {status} redirects to {url!r}, not http(s)")
                    permanent = permanent and status in PERMANENT
                    moved = url if permanent else None
                    continue
                if status == 304:
                    return Fetched(url, None, dict(response.headers), moved)
                _refuse(response, at)
                return Fetched(url, _body(response, settings.max_bytes),
                               dict(response.headers), moved)
        raise FeedError(f"more than {MAX_REDIRECTS} redirects")
    except Refused as refused:
        raise Refused(f"refused a redirect to {url}: {refused}" if url != first
                      else f"refused: {refused}") from None
    except httpx.TimeoutException:
        if time.monotonic() >= bounds.until:
            raise FeedError(f"too slow: not complete after {settings.deadline:g}s") from None
        raise FeedError(f"timed out (no answer within {settings.timeout:g}s)") from None
    except (httpx.ReadError, httpx.WriteError) as error:
        raise FeedError(f"connection lost: {_reason(error)}") from None
    except httpx.HTTPError as error:
        raise FeedError(_reason(error)) from None
    except (httpx.InvalidURL, ValueError) as error:  # a malformed URL, configured or redirected
        raise FeedError(f"invalid URL {url!r}: {error}") from None
    finally:
        _BOUNDS.reset(token)


def _vouched(bounds: _Bounds, configured: str, url: str) -> bool:
    """Whether the configured URL's host vouches for its non-public addresses. A feed that
    moved is judged by where the operator pointed it, not where its publisher sent it; when
    the host it left no longer resolves, it vouches for nothing. Nor does a local feed's path
    for the pages its entries link to."""
    if not _is_http(configured):
        return False
    host = httpx.URL(configured).raw_host.decode("ascii")
    if not host:
        raise FeedError(f"invalid URL {configured!r}: no host")
    try:
        return bounds.vouch(host)
    except FeedError:
        if httpx.URL(url).raw_host.decode("ascii") == host:
            raise
        return False


def _refuse(response: httpx.Response, at: datetime | None) -> None:
    """Raise the FeedError an error status means; return for a success. The words are ours:
    a reason phrase is the server's text, and may tell of what lies behind it."""
    status = response.status_code
    if status < 400 and status not in PERMANENT + TEMPORARY:
        return
    try:
        message = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        message = f"HTTP {status}"
    if status == 410:
        raise Gone(message)
    wait = retry_after(response.headers.get("retry-after"), at) if at else None
    if status in (429, 503) and wait:
        raise FeedError(f"{message}, asked to wait until {wait:%Y-%m-%d %H:%M} UTC", wait)
    raise FeedError(message)


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """When a Retry-After header (seconds, or an HTTP date: RFC 9110 10.2.3) lets us come
    back; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return now + min(max(wait, timedelta(0)), LONGEST_WAIT)


# -- bodies --------------------------------------------------------------------------------

def _inflated(pieces: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits)
    for data in pieces:
        while True:
            piece = inflater.decompress(data, _PIECE)
            yield piece
            data = inflater.unconsumed_tail
            if not data and len(piece) < _PIECE:
                break


def _gunzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    return _inflated(pieces, zlib.MAX_WBITS | 16)


def _deflated(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """HTTP's deflate is zlib-wrapped (RFC 9110 8.4.1.2); some servers send it raw, and
    browsers (and httpx) read both: the first two bytes tell which."""
    pieces = iter(pieces)
    head = b""
    for data in pieces:
        head += data
        if len(head) >= 2:
            break
    wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and int.from_bytes(head[:2]) % 31 == 0
    return _inflated(itertools.chain([head], pieces),
                     zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)


def _unbrotlied(pieces: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = brotli.Decompressor()
    for data in pieces:
        piece = decompressor.process(data, output_buffer_limit=_PIECE)
        # Drained with empty input until nothing more comes out of what it was given.
        while piece or not decompressor.can_accept_more_data():
            yield piece
            piece = decompressor.process(b"", output_buffer_limit=_PIECE)


_DECODERS: dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]] = {
    "gzip": _gunzipped, "x-gzip": _gunzipped, "deflate": _deflated, "br": _unbrotlied}


def _body(response: httpx.Response, limit: int) -> bytes:
    """The body decoded as its Content-Encoding says, a piece at a time, and refused as soon
    as it passes `limit` bytes."""
    codings = [coding.strip().lower()
               for coding in response.headers.get("content-encoding", "").split(",")]
    codings = [coding for coding in codings if coding not in ("", "identity")]
    pieces: Iterator[bytes] = response.iter_raw()
    for coding in reversed(codings):  # the last one applied comes off first
        if coding not in _DECODERS:
            raise FeedError(f"unsupported Content-Encoding {coding[:40]!r}")
        pieces = _DECODERS[coding](pieces)
    body = bytearray()
    try:
        for piece in pieces:
            body += piece
            if len(body) > limit:
                raise FeedError(f"larger than {limit:,} bytes"
                                + (" once decompressed" if codings else ""))
    except (zlib.error, brotli.error):
        raise FeedError(f"cannot decompress: not valid {', '.join(codings)} data") from None
    return bytes(body)


def _read_file(where: str, max_bytes: int) -> Fetched:
    scheme = _SCHEME.match(where)
    if scheme:
        raise FeedError(f"unsupported scheme {scheme[1]!r}: a feed is an http(s) URL or a "
                        "local file")
    path = Path(where)
    try:
        # Opened without blocking, so that a FIFO nobody writes to cannot hold the run up;
        # it is refused next, with devices, folders and all else that is not a regular file.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise FeedError("not a regular file")
        with open(descriptor, "rb") as file:
            body = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise FeedError("no such file") from None
    except OSError as error:
        raise FeedError(_reason(error)) from None
    if len(body) > max_bytes:
        raise FeedError(f"larger than {max_bytes:,} bytes")
    # Without a content type feedparser flags every local file as ill-formed.
    return Fetched(path.resolve().as_uri(), body, {"content-type": "application/xml"})


# -- parsing -------------------------------------------------------------------------------

_XML_ENCODING = re.compile(rb"""(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*["']([\w.:-]+)""")
_CHARSET = re.compile(r"""\bcharset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
# The byte order marks feedparser reads and strips, UTF-32's before UTF-16's (FF FE 00 00).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))


@dataclass(frozen=True)
class Parsed:
    entries: list[Any]
    problem: str | None  # what feedparser had to salvage around, said once per feed


def parse(fetched: Fetched) -> Parsed:
    assert fetched.body is not None
    content_type = fetched.headers.get("content-type", "")
    if jsonfeed.looks_like(fetched.body, content_type):
        try:
            return Parsed(jsonfeed.entries(fetched.body), None)
        except jsonfeed.NotJsonFeed as error:
            raise FeedError(f"not a feed: {error}") from None
    body, repaired = _utf8(fetched.body, content_type)
    # No Content-Location: feedparser would resolve relative guids against it, and an entry's
    # key would change whenever the feed moves. cards.py resolves links and images against
    # the final URL itself; xml:base, part of the feed, still applies.
    headers = {key: value for key, value in fetched.headers.items()
               if key.lower() != "content-location"}
    # sanitize_html off: cards.py turns every piece of feed HTML into plain text with nh3;
    # feedparser's own sanitiser would be a second, slower pass (most of the parse time).
    result = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    problem = _words(result["bozo_exception"], body) if result.get("bozo") else None
    problem = "; ".join(filter(None, (problem, repaired))) or None
    if not result.get("version") and not result.entries:
        raise FeedError(f"not a feed: {problem or 'no RSS, Atom or JSON Feed in it'}")
    return Parsed(list(result.entries), problem)


def _words(error: Exception, body: bytes) -> str:
    """feedparser's complaint for the operator: an XML error by its line in the feed, not in
    expat's shorthand ("<unknown>:7:2: mismatched tag")."""
    if not isinstance(error, xml.sax.SAXParseException):
        return str(error)
    # Before a document without an XML declaration, feedparser puts one on a line of its own.
    added = next((not body[len(bom):len(bom) + 40].decode(codec, "ignore").startswith("<?xml")
                  for bom, codec in _BOMS if body.startswith(bom)),
                 not body.startswith(b"<?xml"))
    return f"XML error at line {max(1, (error.getLineNumber() or 1) - added)}"


def _utf8(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The body, its invalid UTF-8 replaced by U+FFFD when UTF-8 is what it should be: what it
    declares, or XML's default when it declares nothing else. Left to itself, feedparser
    would guess another encoding for the whole document, and every letter beyond ASCII
    would turn into mojibake."""
    try:
        body.decode("utf-8")
        return body, None
    except UnicodeDecodeError:
        pass
    if body[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in body[:4]:
        return body, None  # UTF-16 or -32, which feedparser tells by the first bytes
    declared = [_CHARSET.search(content_type), _XML_ENCODING.match(body[:1024])]
    names = [match[1] if isinstance(match[1], str) else match[1].decode("ascii")
             for match in declared if match]
    if any(_codec(name) not in (None, "utf-8", "ascii") for name in names):
        return body, None  # declared as another encoding: feedparser reads it as that
    return body.decode("utf-8", "replace").encode("utf-8"), "invalid UTF-8 replaced"


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None
