"""The records that flow between the stages: feeds → store → edition → messages → transport.

Plain frozen dataclasses: each stage takes some and returns others, so every stage can be
tested alone and nothing reaches back up the pipeline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Image:
    url: str  # always http(s)
    width: int | None = None  # in pixels of the file, when known
    height: int | None = None
    alt: str = ""
    # A hosted picture (images.py) is cut twice: `url` is the wide cut (for the lead story)
    # and this the square one (for a compact card's thumbnail). None when not hosted.
    thumbnail: Image | None = None


@dataclass(frozen=True)
class Article:
    """One feed entry as collected: sanitised, cut, ready to store."""

    key: str  # entry id, else link, else a hash of title + raw date + link: stable across runs
    title: str
    link: str | None  # None when the feed gave no safe http(s) link
    teaser: str  # plain text, already cut: after a whole sentence, or at a word with "…"
    image: Image | None
    published: datetime | None  # None when the feed gave no usable date
    # The link with case, fragment and tracking parameters normalised away: the same story
    # reached through two feeds has one canonical link, and goes into an edition once.
    canonical: str | None = None
    # The entry's categories or tags, as plain text: what feed filters match besides title
    # and teaser. Not stored: the filters decide when the entry is first seen.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Card:
    """One article as a subscriber sees it in an edition."""

    id: int
    title: str
    link: str | None
    teaser: str
    image: Image | None
    published: datetime
    section: str  # the name of its section, which is the name of the feed it came from
    source = property(lambda self: self.section)  # its name in templates written before


@dataclass(frozen=True)
class Section:
    name: str
    cards: tuple[Card, ...]


# How often a subscriber is mailed: each cadence has editions of its own.
CADENCES = ("daily", "weekly")


@dataclass(frozen=True)
class Subscriber:
    email: str  # normalised
    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    sections: tuple[str, ...] = ()  # the sections chosen; empty means every section
    cadence: str = "daily"  # one of CADENCES: which editions this subscriber gets
    timezone: str = ""  # an IANA zone name; empty means the newsletter's own


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chose on their preferences page: it wins over the list's row for
    their address, as an opt-out does, and the operator's file is never rewritten."""

    sections: tuple[str, ...] = ()  # empty means every section
    cadence: str = "daily"  # one of CADENCES
    timezone: str = ""  # an IANA zone name; empty means the newsletter's own
    paused: bool = False  # nothing is mailed to them until they resume


@dataclass(frozen=True)
class Edition:
    """What was composed once and is mailed to everyone; stored so that a resend or the
    archive shows exactly what went out."""

    id: int
    period: str
    created_at: datetime
    subject: str
    html: str  # personal values still as placeholders (see compose.Personal)
    text: str
    marker: str  # what ends those placeholders: random, drawn for this edition


@dataclass(frozen=True)
class View:
    """One rendering of an edition: the whole, or the sections some subscribers chose."""

    subject: str
    html: str  # personal values still as placeholders, as in the Edition
    text: str


class Status(enum.StrEnum):
    """Where a row of the delivery ledger stands."""

    PENDING = "pending"  # to be sent
    SENDING = "sending"  # committed before its transaction: in doubt if a crash leaves it
    SENT = "sent"
    DEFERRED = "deferred"  # to be tried again from next_try on
    FAILED = "failed"  # refused, or deferred too long: never retried unless the operator asks
    UNKNOWN = "unknown"  # left `sending` by a crash: resent only when the operator asks
    SUPPRESSED = "suppressed"  # the address opted out before its turn
    BOUNCED = "bounced"  # the relay took it, the recipient's server sent it back


class Outcome(enum.Enum):
    SENT = Status.SENT  # the server said 250
    DEFERRED = Status.DEFERRED  # 4xx or connection lost before the reply: try again later
    FAILED = Status.FAILED  # 5xx for this address: do not retry


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    response: str  # the server's words, kept in the ledger for the operator


@dataclass(frozen=True)
class Delivery:
    """A row of the ledger: one edition to one address, and what makes that copy theirs."""

    edition_id: int
    email: str
    name: str = ""
    status: Status = Status.PENDING
    attempts: int = 0
    view: str = ""  # the rendering they get: '' the whole edition (see jobs.view)
    fields: dict[str, str] = field(default_factory=dict)  # their custom CSV columns


# -- what collect finds beside the feeds: article pages and hosted pictures (enrich, images) --

@dataclass(frozen=True)
class PageFacts:
    """What an article's own page says about it (og:, twitter:, JSON-LD), for a card whose
    entry lacks a picture or a teaser."""

    image: Image | None
    description: str = ""  # plain text, not yet cut; '' when the page gives none


@dataclass(frozen=True)
class Rendition:
    """One hosted cut of a picture: a file of the state folder's images/, served at /img/."""

    name: str  # <content hash>.<ext>
    width: int
    height: int


class Fate(enum.StrEnum):
    HOSTED = "hosted"  # cut and re-encoded: the mail shows our copies
    KEPT = "kept"  # the download failed: the mail keeps the original link (tried again later)
    DROPPED = "dropped"  # not a picture, too many pixels, or where we may not go: no image


@dataclass(frozen=True)
class Copy:
    """What became of one picture's download, by its original URL."""

    url: str
    fate: Fate
    wide: Rendition | None = None
    square: Rendition | None = None
    problem: str = ""  # why it is not hosted, in words for the operator
