"""A card's missing picture or teaser, from its article's own page; and its picture hosted.

Most feeds give no picture (of 355 real-world feeds tried, 132 had one on any entry), yet
nearly every article page names one for link previews: Open Graph's `og:image`, Twitter's
`twitter:image`, or the `image` of its schema.org JSON-LD. So `collect` reads the page of
each card that lacks a picture or a teaser, once, beside the feed fetches:

    cards wanting a page | read (threads, bounded like feeds, per-host limit shared)
    | facts (og, twitter, JSON-LD) | store by link | download each card's picture
    | cut and re-encode (images.py) | store by URL

A page is fetched as a feed is (deadline, timeouts, no private addresses but those its
feed's configured URL points at, conditional requests), with a smaller size cap. A page that
fails leaves its card as the feed made it; nothing here ever holds up a send, which only
reads what collect stored (`dress`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from email.message import Message
from typing import Any

from lxml import etree
from lxml import html as lxml_html

from digest import cards, feeds, images
from digest.config import Config
from digest.records import Card, Copy, Fate, Image, PageFacts
from digest.store import PageWanted

PAGE_BYTES = 2 * 1024 * 1024  # an article page larger than this is not read to the end
FRESH = timedelta(days=1)  # a page read this recently is not asked again
TRIES = 3  # failed reads (or downloads) of one page (or picture), then no more
DESCRIPTION = 1000  # characters of a page's description kept; teasers are cut far shorter
_HTML = ("text/html", "application/xhtml+xml")
# Where a page names its picture, in order of trust: what it gives link previews first.
_OPEN_GRAPH = ("og:image:secure_url", "og:image:url", "og:image")
_TWITTER = ("twitter:image", "twitter:image:src")
_DESCRIPTIONS = ("og:description", "twitter:description", "description")
# schema.org types whose `image` is the story's own: Article and its kinds (NewsArticle,
# BlogPosting, ...), Report; then the page itself. A Person's or an Organization's is not.
_STORY_TYPES = ("Article", "Posting", "Report")
_PAGE_TYPES = ("WebPage", "ItemPage")
_JSON_NODES = 10_000  # objects walked in one page's JSON-LD, at most


class NotAPage(Exception):
    """Why a fetched page gives nothing to read."""


def facts(body: bytes, url: str, content_type: str = "") -> PageFacts:
    """The picture and description an article page gives, its URLs resolved against the
    page's own `url`; http(s) pictures only, tracking pixels skipped."""
    kind = content_type.partition(";")[0].strip().lower()
    if kind and kind not in _HTML:
        raise NotAPage(f"not an HTML page but {kind[:60]}")
    try:
        root = lxml_html.document_fromstring(_text(body, content_type))
    except (etree.ParserError, ValueError):
        raise NotAPage("an empty page") from None
    metas: dict[str, str] = {}
    for meta in root.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
        content = (meta.get("content") or "").strip()
        if key and content:
            metas.setdefault(key, content)
    found = [(metas.get(key), metas.get("og:image:width"), metas.get("og:image:height"),
              metas.get("og:image:alt", "")) for key in _OPEN_GRAPH]
    found += [(metas.get(key), None, None, metas.get("twitter:image:alt", ""))
              for key in _TWITTER]
    found += _linked_data(root)
    description = next((metas[key] for key in _DESCRIPTIONS if metas.get(key)), "")
    return PageFacts(_picture(found, url), cards.text(description)[:DESCRIPTION])


def _text(body: bytes, content_type: str) -> str | bytes:
    """The page as text when its charset is known from the HTTP header, or it is valid
    UTF-8; else its bytes, for lxml to read the charset its <meta> declares."""
    header = Message()
    header["content-type"] = content_type
    charset = header.get_content_charset()
    if charset:
        try:
            return body.decode(charset, "replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _picture(found: list[tuple[Any, Any, Any, Any]], base: str) -> Image | None:
    for url, width, height, alt in found:
        safe = cards.safe_url(url, base) if isinstance(url, str) else None
        sides = _side(width), _side(height)
        if safe is None or any(side is not None and side <= 1 for side in sides):
            continue
        return Image(safe, *sides, cards.text(alt) if isinstance(alt, str) else "")
    return None


def _side(value: Any) -> int | None:
    """A width or height as pages write it: 1200, "1200", "1200px" or {"value": 1200}."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().removesuffix("px").isdigit():
        return int(value.strip().removesuffix("px"))
    return None


def _linked_data(root: Any) -> list[tuple[Any, Any, Any, Any]]:
    """The pictures a page's JSON-LD gives its story, then the page itself: `image` (a URL,
    a list, an ImageObject, or a reference by @id into the @graph, as Yoast writes it), else
    `thumbnailUrl`."""
    nodes: list[dict[str, Any]] = []
    for script in root.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        try:
            nodes += _objects(json.loads(script.text or ""))
        except (ValueError, RecursionError):
            continue  # a broken block says nothing; the others may
    # A reference is an object of one key, "@id"; what it names is the one that says more.
    named = {node["@id"]: node for node in nodes
             if isinstance(node.get("@id"), str) and len(node) > 1}
    found = []
    for kinds in (_STORY_TYPES, _PAGE_TYPES):
        for node in nodes:
            types = node.get("@type")
            types = types if isinstance(types, list) else [types]
            if any(isinstance(kind, str) and kind.endswith(kinds) for kind in types):
                found += [_image_object(value, named) for value in
                          _listed(node.get("image")) + _listed(node.get("thumbnailUrl"))]
    return found


def _objects(data: Any) -> list[dict[str, Any]]:
    """Every JSON object in `data`, outermost first; a walk of at most _JSON_NODES values."""
    found: list[dict[str, Any]] = []
    waiting = deque([data])
    for _ in range(_JSON_NODES):
        if not waiting:
            break
        item = waiting.popleft()
        if isinstance(item, dict):
            found.append(item)
            waiting.extend(value for value in item.values() if isinstance(value, dict | list))
        elif isinstance(item, list):
            waiting.extend(value for value in item if isinstance(value, dict | list))
    return found


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _image_object(value: Any, named: dict[str, dict[str, Any]]) -> tuple[Any, Any, Any, Any]:
    if isinstance(value, dict) and set(value) <= {"@id"}:
        value = named.get(str(value.get("@id")), {})
    if isinstance(value, dict):
        return (value.get("url") or value.get("contentUrl"), value.get("width"),
                value.get("height"), value.get("caption") or "")
    return value, None, None, ""


# -- what a card shows: the feed's, else the page's, hosted when the copies are there --------

def picture(card: Card, page: PageFacts | None) -> Image | None:
    """The card's picture: the feed's own, else its page's."""
    return card.image or (page.image if page else None)


def dress(card: Card, page: PageFacts | None, copies: Mapping[str, Copy],
          hosted_at: str | None, teaser_length: int) -> Card:
    """The card as mailed: what the feed lacks filled from its page (`page`, None when not
    read). With hosting (`hosted_at`: where the copies are reached), a hosted picture shows
    our cuts, a dropped one none, and one not (yet) downloaded keeps its original link."""
    image = picture(card, page)
    copy = copies.get(image.url) if image is not None and hosted_at is not None else None
    if copy is not None and copy.fate is Fate.DROPPED:
        image = None
    elif image is not None and hosted_at and copy and copy.wide and copy.square:
        image = Image(hosted_at + copy.wide.name, copy.wide.width, copy.wide.height,
                      image.alt, Image(hosted_at + copy.square.name, copy.square.width,
                                       copy.square.height))
    teaser = card.teaser or (cards.cut(page.description, teaser_length) if page else "")
    return replace(card, image=image, teaser=teaser)


# -- fetching, beside the feeds ---------------------------------------------------------------

@dataclass(frozen=True)
class PageRead:
    """One page's read: facts (None when unchanged since the last read), or the problem."""

    feed_id: int
    feed: str  # the feed's configured URL: what its pages' pictures are fetched for
    wanted: PageWanted
    facts: PageFacts | None = None
    etag: str | None = None
    last_modified: str | None = None
    problem: str = ""


class Enricher:
    """The article pages and pictures of one collect run, fetched in threads of their own
    beside the feeds', within the same per-host limit (`hosts`); each result is handed back
    to the collecting thread, which alone writes the store. Nothing is started until asked
    for: a run with nothing to read costs no thread and no connection."""

    def __init__(self, config: Config, hosts: feeds.Hosts) -> None:
        self.config = config
        self.hosts = hosts
        self.pages = replace(config.collect, max_bytes=PAGE_BYTES)
        self.pictures = replace(config.collect, max_bytes=config.images.max_bytes)
        self.asked: set[str] = set()  # pages and pictures asked for in this run
        self.pending = 0
        self.done: queue.Queue[Future[PageRead | Copy]] = queue.Queue()
        self._http: feeds.Fetcher | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Enricher:
        return self

    def __exit__(self, *exception: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    def read(self, feed_id: int, feed: str, wanted: PageWanted) -> None:
        """Read an article page (once per run)."""
        self._ask(wanted.link, lambda: self._read(feed_id, feed, wanted))

    def download(self, url: str, feed: str) -> None:
        """Download and host a picture (once per run)."""
        self._ask(url, lambda: self._download(url, feed))

    def download_logo(self, url: str) -> None:
        """Download and host the newsletter's logo: the operator configured it, so its host
        is trusted as a feed's is."""
        self._ask(url, lambda: self._download(url, url, logo=True))

    def _ask(self, what: str, work: Callable[[], PageRead | Copy]) -> None:
        if what in self.asked:
            return
        self.asked.add(what)
        if self._pool is None:
            self._http = feeds.client(self.config.newsletter.public_url, self.config.collect)
            self._pool = ThreadPoolExecutor(self.config.collect.concurrency,
                                            thread_name_prefix="enrich")
        self.pending += 1
        self._pool.submit(work).add_done_callback(self.done.put)

    def results(self, until: float, stop: threading.Event | None = None,
                ) -> Iterator[PageRead | Copy]:
        """Each result as it comes, until none is pending, `stop` is set or the monotonic
        clock passes `until` (what is left is asked for again by the next collect). A
        worker's exception is raised here: it is the run's, never swallowed."""
        while self.pending and (stop is None or not stop.is_set()):
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                future = self.done.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.pending -= 1
            if not future.cancelled():
                yield future.result()

    def _read(self, feed_id: int, feed: str, wanted: PageWanted) -> PageRead:
        assert self._http is not None
        read = PageRead(feed_id, feed, wanted)
        try:
            with self.hosts.gate(wanted.link):
                fetched = feeds.fetch(self._http, wanted.link, wanted.etag,
                                      wanted.last_modified, self.pages, configured=feed)
            if fetched.body is None:
                return read
            found = facts(fetched.body, fetched.url, fetched.headers.get("content-type", ""))
        except (feeds.FeedError, NotAPage) as error:
            return replace(read, problem=str(error))
        return replace(read, facts=found, etag=fetched.etag,
                       last_modified=fetched.last_modified)

    def _download(self, url: str, feed: str, logo: bool = False) -> Copy:
        assert self._http is not None
        data = images.bundled(url)
        folder = self.config.paths.images
        try:
            if data is None:
                with self.hosts.gate(url):
                    fetched = feeds.fetch(self._http, url, settings=self.pictures,
                                          configured=feed)
                data = fetched.body or b""
            if logo:
                return Copy(url, Fate.HOSTED, images.logo(data, folder))
            wide, square = images.host(data, folder, self.config.images.format)
        except feeds.Refused as refused:
            return Copy(url, Fate.DROPPED, problem=str(refused))
        except images.NotAPicture as error:
            return Copy(url, Fate.DROPPED, problem=str(error))
        except feeds.FeedError as error:
            return Copy(url, Fate.KEPT, problem=str(error))
        except OSError as error:  # the state folder cannot take the file: the link stays
            return Copy(url, Fate.KEPT, problem=f"{self.config.paths.images}: cannot write: "
                                                f"{error.strerror or error}")
        return Copy(url, Fate.HOSTED, wide, square)
