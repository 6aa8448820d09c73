"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1), read by hand: feedparser 6 does not.

Items come out shaped like feedparser's entries (the keys cards.py reads), so a JSON Feed
item becomes a card by exactly the same rules as an RSS item.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any


class NotJsonFeed(ValueError):
    """The bytes are not a JSON Feed; the reason, for the operator."""


def looks_like(body: bytes, content_type: str) -> bool:
    """JSON by its declared type, or by its first character when the server says nothing
    useful (many serve JSON Feeds as text/plain or application/octet-stream)."""
    if "json" in content_type.lower():
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def entries(body: bytes) -> list[dict[str, Any]]:
    try:
        # utf-8-sig: RFC 8259 forbids a BOM, some servers send one anyway. Invalid UTF-8 reads
        # as U+FFFD, as in an XML feed, rather than costing the whole feed.
        document = json.loads(body.decode("utf-8-sig", "replace"))
    except json.JSONDecodeError as error:
        raise NotJsonFeed(f"invalid JSON at line {error.lineno}") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
            "https://jsonfeed.org/version/"):
        raise NotJsonFeed("JSON without a JSON Feed version")
    items = document.get("items")
    if not isinstance(items, list):
        raise NotJsonFeed("JSON Feed without an items list")
    return [_entry(item) for item in items if isinstance(item, dict)]


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for ours, theirs in (("id", "id"), ("link", "url"), ("title", "title")):
        value = item.get(theirs)
        # 1.0 allowed numeric ids; a key is a string either way.
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            entry[ours] = str(value)
    body = _text(item.get("content_html")) or html.escape(_text(item.get("content_text")))
    summary = _text(item.get("summary"))
    entry["summary"] = html.escape(summary) if summary else body
    if body:
        entry["content"] = [{"value": body}]
    for ours, theirs in (("published", "date_published"), ("updated", "date_modified")):
        raw = _text(item.get(theirs))
        if raw:
            entry[ours] = raw
            moment = _date(raw)
            if moment:
                entry[f"{ours}_parsed"] = moment.timetuple()
    pictures = [url for url in (item.get("image"), item.get("banner_image"))
                if isinstance(url, str)]
    entry["media_thumbnail"] = [{"url": url} for url in pictures]
    attachments = item.get("attachments")
    entry["links"] = [{"rel": "enclosure", "href": a["url"], "type": a.get("mime_type", "")}
                      for a in (attachments if isinstance(attachments, list) else [])
                      if isinstance(a, dict) and isinstance(a.get("url"), str)
                      and isinstance(a.get("mime_type", ""), str)]
    # As feedparser gives categories, for the feed filters (cards.tags).
    tags = item.get("tags")
    entry["tags"] = [{"term": tag} for tag in (tags if isinstance(tags, list) else [])
                     if isinstance(tag, str)]
    return entry


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _date(raw: str) -> datetime | None:
    """RFC 3339, as the spec requires; in UTC, as feedparser gives its dates."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
