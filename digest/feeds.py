"""Fetching and parsing feeds: bytes from the network or disk, entries out.

httpx fetches (feedparser's own fetching has no timeout); feedparser parses the bytes with the
response headers beside them, so that declared encodings and relative links resolve as the
server meant. Errors are values: one feed's failure is returned, recorded and passed over.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import feedparser
import httpx

from digest import __version__

MAX_BYTES = 10 * 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class FeedError(Exception):
    """Why one feed could not be read, in words for the operator."""


@dataclass(frozen=True)
class Fetched:
    url: str  # where the body came from, after redirects: relative links resolve against it
    body: bytes | None  # None: 304 Not Modified, nothing to parse
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


def user_agent(public_url: str) -> str:
    return f"digest/{__version__} (+{public_url})"


def client(public_url: str) -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True,
                        headers={"User-Agent": user_agent(public_url)})


def fetch(http: httpx.Client, url: str, etag: str | None = None,
          last_modified: str | None = None, max_bytes: int = MAX_BYTES) -> Fetched:
    """The feed's bytes, or None for the body when the server says nothing changed."""
    if not url.lower().startswith(("http://", "https://")):
        return _read_file(Path(url), max_bytes)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with http.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return Fetched(str(response.url), None, dict(response.headers))
            if response.status_code >= 400:
                raise FeedError(f"HTTP {response.status_code} {response.reason_phrase}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FeedError(f"larger than {max_bytes:,} bytes")
            return Fetched(str(response.url), bytes(body), dict(response.headers))
    except httpx.TimeoutException:
        raise FeedError("timed out") from None
    except httpx.HTTPError as error:
        raise FeedError(str(error) or type(error).__name__) from None


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


@dataclass(frozen=True)
class Parsed:
    entries: list[Any]
    problem: str | None  # what feedparser had to salvage around, said once per feed


def parse(fetched: Fetched) -> Parsed:
    assert fetched.body is not None
    headers = {**fetched.headers, "content-location": fetched.url}
    result = feedparser.parse(io.BytesIO(fetched.body), response_headers=headers)
    problem = str(result.get("bozo_exception", "")) if result.get("bozo") else None
    if not result.get("version") and not result.entries:
        raise FeedError(f"not a feed: {problem or 'no entries'}")
    return Parsed(list(result.entries), problem)
