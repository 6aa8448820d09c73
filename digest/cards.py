"""Turning one parsed feed entry into an Article: key, clean title, plain-text teaser, safe link,
image and date.

Everything here is pure: a feedparser entry in, a record out. Feed HTML is hostile, so nothing
from it survives as markup: teasers and titles are plain text, links and images http(s) only.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from digest.records import Article, Image

ELLIPSIS = "…"
# Block elements end a line of text: without a space, "<p>end.</p><p>Start" would read "end.Start".
_BLOCK = re.compile(r"<(?=/?(?:p|br|div|li|ul|ol|h[1-6]|tr|td|th|blockquote|section|article|"
                    r"figure|figcaption|pre|hr|table)\b)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# WordPress appends this to every excerpt in its feeds.
_WORDPRESS = re.compile(r"\s*The post .{1,300}? appeared first on .{1,200}?\.?\s*$", re.DOTALL)
# ... and ends excerpts with "[…]" (the_excerpt's excerpt_more), which reads as junk in a card.
_MORE = re.compile(r"\s*\[(?:…|\.\.\.)\]\s*$")
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\b(src|alt|width|height|style)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""",
                   re.IGNORECASE)
# A width or height in an inline style: it wins over the attributes, as in a browser.
_STYLE_SIZE = re.compile(r"(?:^|;)\s*(width|height)\s*:\s*([^;!]*)", re.IGNORECASE)
# A length in CSS pixels: "1", "1.0", "1px" (percentages and other units say nothing of size).
_PIXELS = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:px)?\s*", re.IGNORECASE)
# Query parameters that say how a reader arrived, not what they read: Google Analytics (utm_*),
# Facebook, Google Ads, Mailchimp, Microsoft, HubSpot and the RSS plugins of WordPress/Feedburner.
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hs\w+|"
                       r"ref_src|igshid|yclid)$", re.IGNORECASE)
# RFC 3986's reserved and unreserved characters, and % for what is already encoded.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
# A date this far ahead of the moment we first saw the entry is a feed's mistake, not news.
FUTURE_SLACK = timedelta(days=1)


def text(markup: str) -> str:
    """Plain text from feed HTML: tags dropped (script and style with their content), entities
    decoded, whitespace collapsed."""
    markup = _BLOCK.sub(" <", markup)
    plain = html.unescape(nh3.clean(markup, tags=set(), attributes={}))
    return _SPACE.sub(" ", plain).strip()


def cut(plain: str, limit: int) -> str:
    """At most `limit` characters plus "…", at a word boundary where the text has words.

    Text without spaces (Chinese, Japanese) is cut between characters; a cut never splits a
    base character from its combining marks.
    """
    if len(plain) <= limit:
        return plain
    end = limit
    while end > 0 and (joins(plain[end]) or plain[end - 1] == "\u200d"
                       or _pairs(plain, end)):
        end -= 1
    wide = unspaced(plain[end - 1]) or unspaced(plain[end])
    space = plain.rfind(" ", 0, end + 1)
    if space > 0 and not wide:
        end = space
    # Nor does it end on a comma, a dash, or a quote or bracket it opened.
    head = plain[:end].rstrip(" ,;:–—-([{“‘«„「『（")
    return (head or plain[:end]) + ELLIPSIS


def joins(char: str) -> bool:
    """True for a character that belongs to the one before it (combining mark, joiner,
    variation selector, skin tone), where a cut would break a letter or an emoji."""
    return bool(unicodedata.combining(char)) or char in "\u200d\ufe0e\ufe0f" or (
        unicodedata.category(char) in ("Mn", "Me")) or "\U0001f3fb" <= char <= "\U0001f3ff"


def _pairs(plain: str, end: int) -> bool:
    """True where `end` falls inside a flag: two regional indicators make one flag, and a
    lone one shows as a box (Unicode TR 51)."""
    run = 0
    while end - run > 0 and "\U0001f1e6" <= plain[end - run - 1] <= "\U0001f1ff":
        run += 1
    return run % 2 == 1 and "\U0001f1e6" <= plain[end] <= "\U0001f1ff"


def unspaced(char: str) -> bool:
    """A letter of a script written without spaces (Chinese, Japanese): a cut beside it falls
    between words. Fullwidth Latin letters and digits are still parts of words, and Korean
    puts spaces between its words."""
    return (unicodedata.east_asian_width(char) in ("W", "F")
            and unicodedata.category(char) == "Lo"
            and not ("\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"
                     or "\uac00" <= char <= "\ud7a3"))


def safe_url(url: str | None, base: str | None = None) -> str | None:
    """The URL resolved against `base`, if it is http(s); None for javascript:, data: and the
    like."""
    if not url:
        return None
    url = url.strip()
    if base:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    # Spaces, quotes and angle brackets are not URL characters: encoded, they cannot end an
    # attribute or confuse a mail client's link detection.
    return urlunsplit(parts._replace(path=quote(parts.path, safe=_URL_SAFE),
                                     query=quote(parts.query, safe=_URL_SAFE),
                                     fragment=quote(parts.fragment, safe=_URL_SAFE)))


def canonical(url: str | None) -> str | None:
    """The link as two feeds pointing at one story would agree on it: scheme and host in
    lower case, no default port, no fragment, no tracking parameters."""
    if not url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)
             if not _TRACKING.match(name)]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def _own(entry: Any, name: str) -> Any:
    """The entry's own value, without feedparser 6's deprecated stand-in of `published` for a
    missing `updated` (which warns on every read)."""
    return dict.get(entry, name) or ""


def key(entry: Any) -> str:
    """The entry's identity across runs: its id, else its link, else a hash of title, raw date
    and link. Never a hash of sanitised content: sanitisers change, and so would the key."""
    identity = entry.get("id") or entry.get("link")
    if identity:
        return str(identity)
    raw = "\n".join((entry.get("title", ""), _own(entry, "published") or _own(entry, "updated"),
                     entry.get("link", "")))
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def teaser(entry: Any, limit: int) -> str:
    """The story's own opening, in the feed's structure: its first paragraph when that is
    long enough to stand alone, else its opening paragraphs; never the lists of links, the
    headings or the captions around them; cut at a sentence or a word."""
    markup = entry.get("summary") or ""
    if not markup and entry.get("content"):
        markup = entry["content"][0].get("value", "")
    reader = _Reader()
    # Sanitised first (script and style go with their content): only the block tags and the
    # links are left to read.
    clean = nh3.clean(markup, tags=_BLOCKS | {"a", "br"}, attributes={}, link_rel=None)
    # Read until the opening is found: a whole article in content:encoded can be 100 KB.
    for start in range(0, len(clean), _PIECE):
        reader.feed(clean[start:start + _PIECE])
        opening, complete = _opening(reader.blocks, limit)
        if complete:
            return clip(opening, limit)
    reader.close()
    reader.end()
    return clip(_opening(reader.blocks, limit)[0], limit)


def _opening(blocks: list[_Block], limit: int) -> tuple[str, bool]:
    """The opening of these runs of text, and whether it is final: later runs of prose would
    not change it."""
    found = [(block.kind, block.text) for block in blocks if not block.linked]
    # Prose when there is some; the items of a list that is not links when that is all.
    prose = [words for kind, words in found if kind == "prose"]
    opening = ""
    for words in prose or [words for kind, words in found if kind == "item"]:
        opening = _join(opening, words)
        if len(opening) >= min(STANDALONE, limit):
            return opening, bool(prose)
    return opening, False


# Sanitised feed HTML is read this many characters at a time.
_PIECE = 4096
# A first paragraph this long reads as a teaser alone (a standfirst is one or two sentences);
# a shorter one (a byline, "Updated at 9:00") is joined by the next.
STANDALONE = 80
# Tags whose start or end ends a run of text, and the enclosing tags that say what a run is:
# the item of a list (often links to related stories, as in The Guardian's descriptions), a
# heading, or the caption of a picture rather than the story.
_BLOCKS = {"p", "div", "blockquote", "section", "article", "pre", "table", "tr", "td", "th",
           "ul", "ol", "li", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "figure",
           "figcaption", "hr", "header", "footer", "aside", "nav", "main"}
_KINDS = {"li": "item", "dt": "item", "dd": "item", "h1": "heading", "h2": "heading",
          "h3": "heading", "h4": "heading", "h5": "heading", "h6": "heading",
          "figure": "caption", "figcaption": "caption", "aside": "caption", "nav": "item"}
# Punctuation a sentence or a run of text ends with: what follows it starts afresh.
_ENDED = tuple(".!?…:;\"”’»)]」』）。！？")
# A sentence ends at "!", "?", "…" or their CJK forms, or at a full stop after three small
# letters (so not after "Mr.", "U.S." or "Inc."), perhaps followed by closing quotes.
_SENTENCE = re.compile(r"(?:\.(?<=[^\W\d_A-Z]{3}\.)|[!?…])[\"'”’»)\]]*(?=\s)|[。！？][」』）]*")


@dataclass(frozen=True)
class _Block:
    text: str  # plain, whitespace collapsed, WordPress's additions gone
    kind: str  # "prose", "item", "heading" or "caption"
    linked: bool  # mostly the text of links: a list of related stories, "Continue reading"


class _Reader(HTMLParser):
    """The runs of text in sanitised feed HTML, with what each is."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self._open: list[str] = []
        self._parts: list[str] = []
        self._kind = "prose"
        self._letters = self._linked = self._links = self._breaks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._links += 1
        elif tag == "br":
            # One break is a line in a paragraph; two in a row end it.
            self._breaks += 1
            self._parts.append(" ")
            if self._breaks == 2:
                self.end()
        elif tag in _BLOCKS:
            self.end()
            if tag != "hr":
                self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._links = max(0, self._links - 1)
        elif tag in _BLOCKS:
            self.end()
            if tag in self._open:
                del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        letters = len("".join(data.split()))
        if letters:
            self._breaks = 0
            if not self._letters:
                self._kind = next((_KINDS[tag] for tag in reversed(self._open)
                                   if tag in _KINDS), "prose")
            self._letters += letters
            self._linked += letters if self._links else 0
        self._parts.append(data)

    def end(self) -> None:
        found = _SPACE.sub(" ", "".join(self._parts)).strip()
        found = _MORE.sub("", _WORDPRESS.sub("", found)) if found else found
        if found:
            self.blocks.append(_Block(found, self._kind, self._linked * 2 > self._letters))
        self._parts, self._letters, self._linked, self._breaks = [], 0, 0, 0


def _join(opening: str, words: str) -> str:
    """Two runs of text as one: a sentence is followed by the next, anything else (a
    byline, an item) is set apart from it."""
    if not opening:
        return words
    return f"{opening} {words}" if opening.endswith(_ENDED) else f"{opening} · {words}"


def clip(plain: str, limit: int) -> str:
    """At most `limit` characters: whole sentences when they fill most of it, else cut at a
    word with "…" (see `cut`)."""
    if len(plain) <= limit:
        return plain
    end = 0
    for match in _SENTENCE.finditer(plain):
        if match.end() > limit:
            break
        end = match.end()
    return plain[:end] if end >= limit * 0.6 else cut(plain, limit)


def title(entry: Any, teaser_text: str) -> str:
    found = text(entry.get("title", ""))
    if found:
        return found
    return cut(teaser_text.rstrip(ELLIPSIS), 80) if teaser_text else "Untitled"


def _pixels(value: Any) -> float | None:
    match = _PIXELS.fullmatch(value) if isinstance(value, str) else None
    return float(match[1]) if match else None


def _candidates(entry: Any) -> list[tuple[str, Any, Any, str]]:
    """Image candidates in order of trust: media:thumbnail, media:content (images), image
    enclosures, the first <img> in the content or summary."""
    found = [(t.get("url"), t.get("width"), t.get("height"), "")
             for t in entry.get("media_thumbnail", [])]
    for media in entry.get("media_content", []):
        kind = media.get("medium") or media.get("type", "").partition("/")[0]
        if kind == "image":
            found.append((media.get("url"), media.get("width"), media.get("height"), ""))
    for link in entry.get("links", []):
        if link.get("rel") == "enclosure" and link.get("type", "").startswith("image/"):
            found.append((link.get("href"), None, None, ""))
    bodies = [c.get("value", "") for c in entry.get("content", [])] + [entry.get("summary", "")]
    for body in bodies:
        for tag in _IMG.findall(body or ""):
            attrs = {name.lower(): html.unescape(value.strip("'\"")) for name, value
                     in _ATTR.findall(tag)}
            attrs |= {name.lower(): value for name, value
                      in _STYLE_SIZE.findall(attrs.get("style", ""))}
            found.append((attrs.get("src"), attrs.get("width"), attrs.get("height"),
                          attrs.get("alt", "")))
    return found


def image(entry: Any, base: str | None) -> Image | None:
    """The first usable image: http(s) only; data: URLs and tracking pixels skipped (a side
    of at most one pixel, however given: width="0", height="1.0", style="width:1px"). Its
    alt text is the feed's own description of it, else empty: the headline follows, and a
    screen reader should not read it twice."""
    for url, width, height, alt_text in _candidates(entry):
        safe = safe_url(url, base)
        sides = _pixels(width), _pixels(height)
        if safe is None or any(side is not None and side <= 1 for side in sides):
            continue
        width, height = (round(side) if side else None for side in sides)
        return Image(safe, width, height, text(alt_text))
    return None


def published(entry: Any, seen: datetime) -> datetime | None:
    """published, else updated; a date far in the future is the feed's mistake and becomes the
    moment we first saw the entry."""
    parsed = _own(entry, "published_parsed") or _own(entry, "updated_parsed")
    if not parsed:
        return None
    year, month, day, hour, minute, second = parsed[:6]  # feedparser normalises to UTC
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return seen if moment > seen + FUTURE_SLACK else moment


def tags(entry: Any) -> tuple[str, ...]:
    """The entry's categories (RSS <category>, <dc:subject>, Atom <category>'s term and
    its label), plain text, each once."""
    found = (text(str(tag.get(part) or "")) for tag in entry.get("tags", [])
             for part in ("term", "label"))
    return tuple(dict.fromkeys(tag for tag in found if tag))


def article(entry: Any, base: str, teaser_length: int, seen: datetime) -> Article:
    """The Article for one feedparser entry of a feed fetched from `base`."""
    link = safe_url(entry.get("link"), base)
    teaser_text = teaser(entry, teaser_length)
    headline = title(entry, teaser_text)
    return Article(key=key(entry), title=headline, link=link, teaser=teaser_text,
                   image=image(entry, link or base),
                   published=published(entry, seen), canonical=canonical(link),
                   tags=tags(entry))
