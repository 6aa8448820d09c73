"""Fetching and parsing feeds: bytes from the network or disk, entries out.

httpx fetches (feedparser's own fetching has no timeout); feedparser parses the bytes with the
response headers beside them, so that declared encodings and relative links resolve as the
server meant. JSON Feed, which feedparser 6 does not read, is parsed by `jsonfeed`.

Fetching is polite and bounded: several feeds at once but few per host, conditional GET,
a size cap, a deadline, redirects told apart (a 301 is remembered, a 302 is not), 410 and
Retry-After respected. Errors are values: one feed's failure is returned, recorded and passed
over.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
import time
import xml.sax
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
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


class FeedError(Exception):
    """Why one feed could not be read, in words for the operator."""

    def __init__(self, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # the server asked us not to come back before this


class Gone(FeedError):
    """410 Gone: the publisher took the feed down for good; it is disabled, not retried."""


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


def client(public_url: str, settings: Collect = DEFAULTS) -> httpx.Client:
    """One client for a collect run, shared by the fetching threads (httpx's pool is
    thread-safe). Accept-Encoding is httpx's own: gzip, deflate and br (brotli installed)."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=False,  # followed by hand: a 301 is recorded, a 302 is not
        headers={"User-Agent": user_agent(public_url)},
        limits=httpx.Limits(max_connections=settings.concurrency,
                            max_keepalive_connections=settings.concurrency))


def fetch_all(http: httpx.Client, requests: Iterable[Request], settings: Collect,
              ) -> Iterator[tuple[Request, Fetched | FeedError]]:
    """Fetch in threads, `settings.concurrency` at once and at most `settings.per_host` per
    host; yield each result as it arrives, so the caller parses and stores one at a time in
    its own thread."""
    hosts: dict[str, threading.Semaphore] = {}
    for request in requests:
        hosts.setdefault(_host(request.url), threading.Semaphore(settings.per_host))

    def one(request: Request) -> Fetched | FeedError:
        with hosts[_host(request.url)]:
            try:
                return fetch(http, request.url, request.etag, request.last_modified, settings)
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


def fetch(http: httpx.Client, url: str, etag: str | None = None,
          last_modified: str | None = None, settings: Collect = DEFAULTS) -> Fetched:
    """The feed's bytes, or None for the body when the server says nothing changed."""
    if not _is_http(url):
        return _read_file(Path(url), settings.max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + settings.deadline
    moved: str | None = None
    permanent = True
    try:
        for _ in range(MAX_REDIRECTS + 1):
            with http.stream("GET", url, headers=headers) as response:
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
                _refuse(response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > settings.max_bytes:
                        raise FeedError(f"larger than {settings.max_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise FeedError(f"too slow: not complete after {settings.deadline:g}s")
                return Fetched(url, bytes(body), dict(response.headers), moved)
        raise FeedError(f"more than {MAX_REDIRECTS} redirects")
    except httpx.TimeoutException:
        raise FeedError(f"timed out (no answer within {settings.timeout:g}s)") from None
    except httpx.HTTPError as error:
        raise FeedError(str(error) or type(error).__name__) from None
    except (httpx.InvalidURL, ValueError) as error:  # a malformed URL, configured or redirected
        raise FeedError(f"invalid URL {url!r}: {error}") from None


def _refuse(response: httpx.Response) -> None:
    """Raise the FeedError an error status means; return for a success."""
    status = response.status_code
    if status < 400 and status not in PERMANENT + TEMPORARY:
        return
    message = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status == 410:
        raise Gone(message)
    wait = retry_after(response.headers.get("retry-after"), datetime.now(UTC))
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


def _read_file(path: Path, max_bytes: int) -> Fetched:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FeedError(f"larger than {max_bytes:,} bytes")
        # Without a content type feedparser flags every local file as ill-formed.
        return Fetched(path.resolve().as_uri(), path.read_bytes(),
                       {"content-type": "application/xml"})
    except FileNotFoundError:
        raise FeedError("no such file") from None
    except OSError as error:
        raise FeedError(error.strerror or str(error)) from None


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
