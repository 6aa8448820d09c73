"""All of digest's state in one SQLite file or one PostgreSQL database, and every query
against it.

No other module writes SQL. Both backends run the same queries: SQLite's dialect, with `?`
placeholders, which PostgreSQL is handed through a thin adapter (_Postgres); the schema is
SQLite's too, rewritten for PostgreSQL where the DDL differs (_postgres_ddl).

Writes are ordered so that a crash between any two of them is safe to repeat: articles before
the feed's validators, an edition together with its articles and its delivery rows, a
delivery's `sending` before the SMTP transaction and `sent` after the 250.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg.pq
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown

from digest.errors import DigestError
from digest.filters import Hold
from digest.records import (
    Article,
    Card,
    Copy,
    Delivery,
    Edition,
    Fate,
    Image,
    PageFacts,
    Preferences,
    Rendition,
    Result,
    Status,
    Subscriber,
    View,
)

# Each entry moves the schema one version up; PRAGMA user_version says how far a file has come.
MIGRATIONS = (
    """
    CREATE TABLE feeds (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,          -- as configured: the feed's identity
        name TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        last_ok TEXT,
        last_error TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        error_since TEXT
    );
    CREATE TABLE articles (
        id INTEGER PRIMARY KEY,
        feed_id INTEGER NOT NULL REFERENCES feeds(id),
        key TEXT NOT NULL,
        title TEXT NOT NULL,
        link TEXT,
        teaser TEXT NOT NULL,
        image_url TEXT,
        image_width INTEGER,
        image_height INTEGER,
        image_alt TEXT,
        published TEXT,
        collected_at TEXT NOT NULL,
        eligible INTEGER NOT NULL DEFAULT 1,  -- 0: seen, but never to be mailed
        UNIQUE (feed_id, key)
    );
    CREATE TABLE editions (
        id INTEGER PRIMARY KEY,
        period TEXT NOT NULL,
        cadence TEXT NOT NULL DEFAULT 'daily',
        created_at TEXT NOT NULL,
        subject TEXT NOT NULL,
        html TEXT NOT NULL,
        text TEXT NOT NULL,
        UNIQUE (cadence, period)
    );
    -- Membership has a table of its own, unique per cadence, so that a later weekly edition
    -- may carry articles a daily one already mailed.
    CREATE TABLE edition_articles (
        edition_id INTEGER NOT NULL REFERENCES editions(id),
        article_id INTEGER NOT NULL REFERENCES articles(id),
        cadence TEXT NOT NULL DEFAULT 'daily',
        position INTEGER NOT NULL,
        PRIMARY KEY (edition_id, article_id),
        UNIQUE (cadence, article_id)
    );
    CREATE TABLE deliveries (
        edition_id INTEGER NOT NULL REFERENCES editions(id),
        email TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'pending',  -- pending|sending|sent|deferred|failed|unknown
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try TEXT,
        last_response TEXT,
        updated_at TEXT,
        PRIMARY KEY (edition_id, email)
    );
    CREATE INDEX deliveries_status ON deliveries (status, edition_id);
    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,
        reason TEXT NOT NULL,              -- unsubscribed|bounced|complained
        at TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    """,
    # Feed collection that survives the real web: where a feed moved to (301/308), whether it
    # is gone (410), when its server allows the next request (429/503 Retry-After); and each
    # article's canonical link, so one story linked from two feeds is mailed once.
    """
    ALTER TABLE feeds ADD COLUMN moved_to TEXT;
    ALTER TABLE feeds ADD COLUMN disabled_at TEXT;
    ALTER TABLE feeds ADD COLUMN retry_after TEXT;
    ALTER TABLE articles ADD COLUMN canonical TEXT;
    CREATE INDEX articles_canonical ON articles (canonical);
    """,
    # Sections: subscribers who chose the same sections share one rendering (a view) of an
    # edition; '' is the whole edition, kept in `editions` itself.
    """
    CREATE TABLE edition_views (
        edition_id INTEGER NOT NULL REFERENCES editions(id),
        view TEXT NOT NULL,
        subject TEXT NOT NULL,
        html TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (edition_id, view)
    );
    ALTER TABLE deliveries ADD COLUMN view TEXT NOT NULL DEFAULT '';
    -- deliveries.status may also be 'suppressed': the address opted out before its turn.
    """,
    # The ledger looked up by address: consecutive hard bounces across editions.
    """
    CREATE INDEX deliveries_email ON deliveries (email, edition_id);
    """,
    # A send slot the scheduler decided to let pass (no new articles, fewer than min_articles):
    # remembered so that the reconcile step does not make it later after all.
    """
    CREATE TABLE skipped_periods (
        cadence TEXT NOT NULL DEFAULT 'daily',
        period TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (cadence, period)
    );
    """,
    # The web version of an edition whose mail had to leave stories out to stay under Gmail's
    # clipping size: "N more stories" links there, so it holds every card. NULL: the mail is
    # whole and is its own web version.
    """
    ALTER TABLE editions ADD COLUMN web_html TEXT;
    """,
    # What ends an edition's placeholders, drawn at random for each (see compose.Personal), so
    # no feed can write one; its views and web version share it. Editions made before all end
    # in the one fixed marker every edition used then.
    """
    ALTER TABLE editions ADD COLUMN marker TEXT NOT NULL DEFAULT '7c1f';
    """,
    # Why the last run of an edition stopped on an error (a full disk, a fault in a delivery
    # thread): `digest status` shows it until a run of that edition goes without one.
    """
    ALTER TABLE editions ADD COLUMN fault TEXT;
    """,
    # Opt-outs looked up by time: a running edition asks every second for the latest.
    """
    CREATE INDEX suppressions_at ON suppressions (at);
    """,
    # Links name an address by an opaque id (tokens.address_id), never by the address: this
    # says which address an id stands for. An address may have several, one per secret used.
    # And sign-ups waiting for their confirmation click, under the random id their link
    # carries, so that no link holds an address or a name.
    """
    CREATE TABLE link_addresses (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL
    );
    CREATE TABLE signups (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        recipient TEXT NOT NULL,           -- the address as compared (subscribers.key)
        name TEXT NOT NULL,
        sections TEXT NOT NULL,            -- a JSON list of section names
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX signups_recipient ON signups (recipient, created_at);
    """,
    # What came back (`digest inbox`): every message read, once, by its identity, with what
    # was done about it; and for each subscriber it concerned, what it said (the evidence a
    # suppression rests on, and the soft bounces counted towards one).
    """
    CREATE TABLE inbound (
        message TEXT PRIMARY KEY,          -- its Message-ID, else a hash of its bytes
        kind TEXT NOT NULL,                -- bounce|complaint|unsubscribe|auto-reply|other
        action TEXT NOT NULL,              -- suppressed|counted|ignored
        at TEXT NOT NULL
    );
    CREATE TABLE returns (
        message TEXT NOT NULL REFERENCES inbound(message),
        email TEXT NOT NULL,
        edition_id INTEGER,                -- the edition it answers, when known
        kind TEXT NOT NULL,                -- bounce|complaint|unsubscribe
        status TEXT NOT NULL DEFAULT '',   -- the enhanced status code of a bounce
        hard INTEGER NOT NULL DEFAULT 0,
        evidence TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL,
        PRIMARY KEY (message, email)
    );
    CREATE INDEX returns_email ON returns (email, kind);
    CREATE INDEX returns_edition ON returns (edition_id, kind);
    -- deliveries.status may also be 'bounced': the relay took it, the recipient's server
    -- sent it back (last_response says how).
    """,
    # What collect finds beside the feeds (enrich.py, images.py). An article page's picture
    # and description, by the article's link: read once, again (conditionally) only when a
    # day old, a failed read tried again at later collects a few times. And each card's
    # picture as downloaded, by its original URL: hosted (its two cuts, files of the state
    # folder's images/), kept (the download failed: the mail keeps the link) or dropped.
    """
    CREATE TABLE pages (
        link TEXT PRIMARY KEY,
        tried_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,   -- failed reads since the last good one
        problem TEXT,                          -- why the last read failed
        read_at TEXT,                          -- the last good read; NULL: none yet
        etag TEXT,
        last_modified TEXT,
        image_url TEXT,
        image_width INTEGER,
        image_height INTEGER,
        image_alt TEXT,
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE images (
        url TEXT PRIMARY KEY,
        fate TEXT NOT NULL,                    -- hosted|kept|dropped
        wide TEXT,                             -- the hosted cuts' file names
        wide_width INTEGER,
        wide_height INTEGER,
        square TEXT,
        square_width INTEGER,
        square_height INTEGER,
        problem TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 1,
        tried_at TEXT NOT NULL
    );
    """,
    # Feed filters (filters.py): the rule that held an article back, decided when it was first
    # stored; such an article is seen (eligible = 0), never mailed. NULL: none held it.
    """
    ALTER TABLE articles ADD COLUMN held TEXT;
    """,
    # What each subscriber chose on their preferences page, by the address as compared
    # (subscribers.key): it wins over subscribers.csv, which stays the operator's. A sign-up
    # keeps the cadence and time zone asked for, until its confirmation writes them there.
    """
    CREATE TABLE preferences (
        address TEXT PRIMARY KEY,          -- subscribers.key of the address
        sections TEXT NOT NULL,            -- a JSON list of section names; [] every section
        cadence TEXT NOT NULL,             -- daily|weekly
        timezone TEXT NOT NULL,            -- an IANA name; '' the newsletter's
        paused INTEGER NOT NULL,           -- 1: nothing mailed until they resume
        updated_at TEXT NOT NULL
    );
    ALTER TABLE signups ADD COLUMN cadence TEXT NOT NULL DEFAULT 'daily';
    ALTER TABLE signups ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
    """,
    # The editor's hold (newsletter.approval): an edition made at its slot waits, its stories
    # claimed but nothing composed and no delivery rows, until it is approved (or the approval
    # timeout sends or skips it). While it waits, the editor's choices: each story dropped or
    # pinned to the top, and the edition's intro (NULL: the configured newsletter.intro).
    """
    ALTER TABLE editions ADD COLUMN state TEXT NOT NULL DEFAULT 'mailed';
    ALTER TABLE editions ADD COLUMN held_at TEXT;
    ALTER TABLE editions ADD COLUMN intro TEXT;
    ALTER TABLE edition_articles ADD COLUMN choice TEXT;
    """,
    # Local morning (newsletter.local_time): when each delivery becomes due, its zone's own
    # slot, so one edition serves every zone and a restart mid-day offers exactly the rows
    # whose time has come. NULL: due as soon as the edition is made.
    """
    ALTER TABLE deliveries ADD COLUMN due_at TEXT;
    """,
    # Several senders on one ledger (PostgreSQL): the session that claimed a row to deliver
    # it (see Store.due), so that only a dead sender's rows in flight become `unknown`.
    """
    ALTER TABLE deliveries ADD COLUMN claimant TEXT;
    """,
)

UNDELIVERED = (Status.PENDING, Status.DEFERRED)
# Rows whose message the relay took, or may have: a bounce can answer them.
_MAILED = (Status.SENT, Status.UNKNOWN, Status.BOUNCED)
# A row to deliver at the moment given (bound twice): its due time come or unset, and
# pending, or deferred with its next try come or unset.
_DUE = (f"(coalesce(due_at, '') <= ? AND (status = '{Status.PENDING}' OR "
        f"(status = '{Status.DEFERRED}' AND (next_try IS NULL OR next_try <= ?))))")


def now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _moment(text: str | None) -> datetime | None:
    return _at(text) if text else None


def _at(text: str) -> datetime:  # from a column that always holds a moment
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class FeedState:
    id: int  # 0: no row yet, the first collect makes one
    url: str
    name: str
    etag: str | None = None
    last_modified: str | None = None
    last_ok: datetime | None = None
    last_error: str | None = None
    error_count: int = 0
    error_since: datetime | None = None
    articles: int = 0
    moved_to: str | None = None  # where a 301/308 said the feed now lives; fetched from there
    disabled_at: datetime | None = None  # when the server said 410 Gone; no longer fetched
    retry_after: datetime | None = None  # the server asked us not to come back before this

    @property
    def fetch_url(self) -> str:
        return self.moved_to or self.url


@dataclass(frozen=True)
class FeedUpdate:
    """What collect decided to record of one fetch (see jobs.decide): the feed's state after
    it, and the entries to save, those in `muted` (a new feed's back catalogue) or `held` (by
    a filter, with its rule) as seen but never to be mailed."""

    feed: FeedState
    articles: tuple[Article, ...] = ()
    muted: frozenset[str] = frozenset()
    held: Mapping[str, Hold] = field(default_factory=dict)


@dataclass(frozen=True)
class PageWanted:
    """An article page to read, with the validators of its last good read."""

    link: str
    etag: str | None = None
    last_modified: str | None = None


class State(StrEnum):
    """Where an edition stands. Only a held edition is still open to an editor's choices."""

    MAILED = "mailed"  # composed and delivered as made: no hold
    HELD = "held"  # made at its slot, waiting for approval: nothing composed, no rows
    APPROVED = "approved"  # held, then approved by an editor and delivered
    TIMED_OUT = "timed out"  # held past schedule.approval_timeout, then delivered as it was
    SKIPPED = "skipped"  # held past the timeout and let pass: its stories went back

    @property
    def mailed(self) -> bool:
        return self in (State.MAILED, State.APPROVED, State.TIMED_OUT)


class Choice(StrEnum):
    """What an editor did with one story of a held edition."""

    DROP = "drop"  # left out; back to the pool for the next edition (or discarded)
    PIN = "pin"  # first in the edition


@dataclass(frozen=True)
class EditionSummary:
    id: int
    period: str
    created_at: datetime
    subject: str
    articles: int
    counts: dict[str, int]  # delivery status -> rows
    fault: str | None = None  # why its last run stopped on an error, if it did
    state: State = State.MAILED
    held_at: datetime | None = None  # when it was made and held, if it was
    cadence: str = "daily"


@dataclass(frozen=True)
class Held:
    """An edition waiting for approval: its stories and the editor's choices so far."""

    id: int
    period: str
    held_at: datetime
    cards: tuple[Card, ...]  # in edition order, dropped ones included
    choices: dict[int, Choice] = field(default_factory=dict)  # by story (article id)
    intro: str | None = None  # the editor's intro; None: the configured newsletter.intro
    cadence: str = "daily"

    def chosen(self, choice: Choice) -> frozenset[int]:
        return frozenset(story for story, made in self.choices.items() if made is choice)


@dataclass(frozen=True)
class Archived:
    """An edition as the archive lists it."""

    id: int
    created_at: datetime
    subject: str


@dataclass(frozen=True)
class Composed:
    """An edition rendered and ready to store, under the id it was numbered with."""

    id: int
    period: str
    created_at: datetime
    whole: View
    web_html: str  # the web version: every card, and a sign-up link for the mail's footer
    marker: str  # what ends its placeholders
    cards: tuple[Card, ...]
    views: dict[str, View] = field(default_factory=dict)  # the partial views by key
    cadence: str = "daily"


@dataclass(frozen=True)
class Settled:
    """A delivery's outcome, to be committed with its connection's next `sending`."""

    delivery: Delivery
    result: Result
    next_try: datetime | None = None  # when a deferred row is due again
    offered: bool = True  # False: the relay was gone first; the row is still to do, uncounted


class Store:
    """One connection to the state: a SQLite file, or a PostgreSQL database when `location`
    is a postgresql:// URL. Used from one thread at a time."""

    def __init__(self, location: Path | str, clock: Callable[[], datetime] = now) -> None:
        # What time it is for every moment the store records or compares: the scheduler's
        # clock (a time lapse in a rehearsal), the system's otherwise.
        self.clock = clock
        self.postgres = is_postgres(location)
        self.db: Database
        self.claimant: str | None = None  # this connection's session, in PostgreSQL
        if self.postgres:
            self.db = _Postgres(str(location))
            try:
                _migrate_postgres(self.db)
                self.claimant = self.db.execute(f"SELECT {_SESSION} FROM pg_stat_activity "
                                                "WHERE pid = pg_backend_pid()").fetchone()[0]
            except BaseException:
                self.db.close()
                raise
            return
        path = Path(location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DigestError(f"{path.parent}: cannot create the state folder: "
                              f"{error.strerror}") from None
        self.path = path
        if not _exists(path):
            _create(path)
        self.db = _connect(path)
        try:
            self.db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives a process crash; only power loss may lose the
            # last few.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            _migrate(self.db)
            _mark(path)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (a full disk) may have left the transaction open or not.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # -- feeds ---------------------------------------------------------------------------------

    def feed(self, url: str, name: str) -> FeedState:
        """The feed's state, creating its row on first sight."""
        self.db.execute("INSERT INTO feeds (url, name) VALUES (?, ?) "
                        "ON CONFLICT (url) DO UPDATE SET name = excluded.name", (url, name))
        return self.feeds(url)[0]

    def feeds(self, url: str | None = None) -> list[FeedState]:
        """Every feed's state, or the one feed at `url`."""
        rows = self.db.execute(
            "SELECT feeds.*, (SELECT count(*) FROM articles WHERE feed_id = feeds.id) AS n "
            "FROM feeds WHERE ? IS NULL OR url = ? ORDER BY id", (url, url))
        return [FeedState(id=row["id"], url=row["url"], name=row["name"], etag=row["etag"],
                          last_modified=row["last_modified"], last_ok=_moment(row["last_ok"]),
                          last_error=row["last_error"], error_count=row["error_count"],
                          error_since=_moment(row["error_since"]), articles=row["n"],
                          moved_to=row["moved_to"], disabled_at=_moment(row["disabled_at"]),
                          retry_after=_moment(row["retry_after"]))
                for row in rows]

    def apply(self, update: FeedUpdate) -> int:
        """Record what collect decided for one feed (see jobs.decide), in one transaction;
        returns how many entries were new.

        Entries are written before their feed's validators, in the same commit: a crash costs
        a refetch, never an article. An entry that was already mailed keeps its row untouched:
        an edit must never make it go out twice.
        """
        # Entries come only with a successful read: collected when it was.
        new, feed, seen = 0, update.feed, _iso(update.feed.last_ok)
        with self.transaction() as db:
            for article in update.articles:
                image = article.image
                values = (article.title, article.link, article.teaser,
                          image.url if image else None, image.width if image else None,
                          image.height if image else None, image.alt if image else None,
                          _iso(article.published), article.canonical)
                if db.execute(
                        "UPDATE articles SET title = ?, link = ?, teaser = ?, image_url = ?, "
                        "image_width = ?, image_height = ?, image_alt = ?, published = ?, "
                        "canonical = ? WHERE feed_id = ? AND key = ? AND id NOT IN "
                        "(SELECT article_id FROM edition_articles)",
                        (*values, feed.id, article.key)).rowcount:
                    continue
                # Held or not is settled here, once: the UPDATE above never changes it.
                held = update.held.get(article.key)
                new += db.execute(
                    "INSERT INTO articles (title, link, teaser, image_url, image_width, "
                    "image_height, image_alt, published, canonical, feed_id, key, collected_at, "
                    "eligible, held) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (*values, feed.id, article.key, seen,
                     held is None and article.key not in update.muted, held)
                ).rowcount
            db.execute("UPDATE feeds SET etag = ?, last_modified = ?, last_ok = ?, last_error = ?, "
                       "error_count = ?, error_since = ?, moved_to = ?, disabled_at = ?, "
                       "retry_after = ? WHERE id = ?",
                       (feed.etag, feed.last_modified, _iso(feed.last_ok), feed.last_error,
                        feed.error_count, _iso(feed.error_since), feed.moved_to,
                        _iso(feed.disabled_at), _iso(feed.retry_after), feed.id))
        return new

    def held(self) -> dict[str, dict[Hold, int]]:
        """Per feed URL, how many articles each filter rule held back."""
        found: dict[str, dict[Hold, int]] = {}
        for url, rule, count in self.db.execute(
                "SELECT feeds.url, articles.held, count(*) FROM articles JOIN feeds ON "
                "feeds.id = articles.feed_id WHERE held IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"):
            found.setdefault(url, {})[Hold(rule)] = count
        return found

    def feed_enabled(self, url: str) -> bool:
        """Fetch a disabled feed again, from its configured URL. False if there is no such
        feed."""
        return bool(self.db.execute(
            "UPDATE feeds SET disabled_at = NULL, moved_to = NULL, retry_after = NULL, "
            "error_count = 0, error_since = NULL, last_error = NULL WHERE url = ?",
            (url,)).rowcount)

    # -- what collect finds beside the feeds: article pages, hosted pictures ------------------

    # The articles that may still be mailed, and the picture each would show: its own, else
    # its page's.
    _UNMAILED = ("FROM articles LEFT JOIN pages ON pages.link = articles.link WHERE "
                 "articles.feed_id = ? AND articles.eligible AND articles.id NOT IN "
                 "(SELECT article_id FROM edition_articles)")

    def pages_wanted(self, feed_id: int, at: datetime, tries: int,
                     fresh: timedelta) -> list[PageWanted]:
        """The pages to read now for the feed's articles that may still be mailed and lack a
        picture or a teaser: never read, read longer than `fresh` ago (asked again with the
        validators of that read), or failed fewer than `tries` times and not yet this run."""
        return [PageWanted(*row) for row in self.db.execute(
            f"SELECT DISTINCT articles.link, pages.etag, pages.last_modified {self._UNMAILED} "
            "AND articles.link IS NOT NULL AND (articles.image_url IS NULL OR "
            "articles.teaser = '') AND (pages.link IS NULL OR (pages.attempts = 0 AND "
            "pages.read_at < ?) OR (pages.attempts BETWEEN 1 AND ? - 1 AND "
            "pages.tried_at < ?))", (feed_id, _iso(at - fresh), tries, _iso(at)))]

    def page_read(self, link: str, facts: PageFacts | None, etag: str | None,
                  last_modified: str | None, at: datetime) -> None:
        """A good read of the page; `facts` None: it had not changed (304)."""
        if facts is None:
            self.db.execute("UPDATE pages SET read_at = ?, tried_at = ?, attempts = 0, "
                            "problem = NULL WHERE link = ?", (_iso(at), _iso(at), link))
            return
        image = facts.image
        self.db.execute(
            "INSERT INTO pages (link, tried_at, read_at, etag, last_modified, image_url, "
            "image_width, image_height, image_alt, description) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (link) DO UPDATE SET "
            "tried_at = excluded.tried_at, attempts = 0, problem = NULL, "
            "read_at = excluded.read_at, etag = excluded.etag, "
            "last_modified = excluded.last_modified, image_url = excluded.image_url, "
            "image_width = excluded.image_width, image_height = excluded.image_height, "
            "image_alt = excluded.image_alt, description = excluded.description",
            (link, _iso(at), _iso(at), etag, last_modified, image.url if image else None,
             image.width if image else None, image.height if image else None,
             image.alt if image else None, facts.description))

    def page_failed(self, link: str, problem: str, at: datetime) -> None:
        """A failed read: what an earlier good read found still stands."""
        self.db.execute("INSERT INTO pages (link, tried_at, attempts, problem) VALUES "
                        "(?, ?, 1, ?) ON CONFLICT (link) DO UPDATE SET tried_at = "
                        "excluded.tried_at, attempts = pages.attempts + 1, "
                        "problem = excluded.problem",
                        (link, _iso(at), problem))

    def pictures_wanted(self, feed_id: int, at: datetime, tries: int) -> list[str]:
        """The pictures to download now for the feed's articles that may still be mailed:
        never tried, or kept after fewer than `tries` failed downloads, none this run."""
        return [row[0] for row in self.db.execute(
            "SELECT picture FROM (SELECT DISTINCT coalesce(articles.image_url, "
            f"pages.image_url) AS picture {self._UNMAILED}) AS wanted WHERE picture IS NOT "
            "NULL AND picture NOT IN (SELECT url FROM images WHERE fate != 'kept' OR "
            "attempts >= ? OR tried_at >= ?)",
            (feed_id, tries, _iso(at)))]

    def copy_wanted(self, url: str, at: datetime, tries: int) -> bool:
        """Whether to download this one picture now (the logo): as `pictures_wanted` says
        of a card's."""
        return self.db.execute(
            "SELECT 1 FROM images WHERE url = ? AND (fate != 'kept' OR attempts >= ? "
            "OR tried_at >= ?)", (url, tries, _iso(at))).fetchone() is None

    def save_copy(self, copy: Copy, at: datetime) -> None:
        wide, square = copy.wide, copy.square
        self.db.execute(
            "INSERT INTO images (url, fate, wide, wide_width, wide_height, square, "
            "square_width, square_height, problem, tried_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET "
            "fate = excluded.fate, wide = excluded.wide, wide_width = excluded.wide_width, "
            "wide_height = excluded.wide_height, square = excluded.square, "
            "square_width = excluded.square_width, square_height = excluded.square_height, "
            "problem = excluded.problem, attempts = images.attempts + 1, "
            "tried_at = excluded.tried_at",
            (copy.url, copy.fate.value, wide and wide.name, wide and wide.width,
             wide and wide.height, square and square.name, square and square.width,
             square and square.height, copy.problem, _iso(at)))

    def pages(self, links: Iterable[str]) -> dict[str, PageFacts]:
        """What the pages at these links said, for those read well at least once."""
        found = {}
        for row in self._among("SELECT * FROM pages WHERE read_at IS NOT NULL AND link",
                               links):
            image = None
            if row["image_url"]:
                image = Image(row["image_url"], row["image_width"], row["image_height"],
                              row["image_alt"] or "")
            found[row["link"]] = PageFacts(image, row["description"])
        return found

    def copies(self, urls: Iterable[str]) -> dict[str, Copy]:
        """What became of the downloads of these pictures, for those tried."""
        found = {}
        for row in self._among("SELECT * FROM images WHERE url", urls):
            wide = square = None
            if row["wide"]:
                wide = Rendition(row["wide"], row["wide_width"], row["wide_height"])
            if row["square"]:
                square = Rendition(row["square"], row["square_width"], row["square_height"])
            found[row["url"]] = Copy(row["url"], Fate(row["fate"]), wide, square,
                                     row["problem"])
        return found

    def _among(self, sql: str, values: Iterable[str]) -> Iterator[sqlite3.Row]:
        """`sql` ending in a column, with `IN (values)` after it, a few hundred at a time
        (SQLite caps the number of parameters)."""
        listed = list(dict.fromkeys(values))
        for start in range(0, len(listed), 500):
            part = listed[start:start + 500]
            yield from self.db.execute(f"{sql} IN ({', '.join('?' * len(part))})", part)

    # -- editions ------------------------------------------------------------------------------

    def unmailed(self, feed_urls: list[str], limit: int, cadence: str = "daily",
                 caps: Mapping[str, int] | None = None, since: datetime | None = None
                 ) -> tuple[list[Card], int]:
        """Articles no edition of this cadence has carried, in feed order then newest first,
        up to `limit` and to each feed's cap in `caps` (by URL), and how many there are in all
        (the rest roll into the next edition). With `since`, only those collected then or
        later (a weekly edition's week).

        Claimed by membership and by when we collected them, never by the feeds' dates: those
        are too often missing or wrong.
        """
        order = {url: position for position, url in enumerate(feed_urls)}
        rows = self.db.execute(
            "SELECT articles.*, feeds.url AS feed_url, feeds.name AS feed_name FROM articles "
            "JOIN feeds ON feeds.id = articles.feed_id WHERE eligible AND articles.id NOT IN "
            "(SELECT article_id FROM edition_articles WHERE cadence = ?) AND "
            "articles.collected_at >= ?", (cadence, _iso(since) or "")).fetchall()
        rows = [row for row in rows if row["feed_url"] in order]
        rows.sort(key=lambda row: (order[row["feed_url"]],
                                   -_at(row["published"] or row["collected_at"]).timestamp(),
                                   row["id"]))
        mailed: dict[str, set[int]] = {}
        for canonical, feed_id in self.db.execute(
                "SELECT DISTINCT articles.canonical, articles.feed_id FROM articles JOIN "
                "edition_articles ON edition_articles.article_id = articles.id "
                "WHERE cadence = ? AND canonical IS NOT NULL", (cadence,)):
            mailed.setdefault(canonical, set()).add(feed_id)
        rows = _once(rows, mailed)
        taken: dict[str, int] = {}
        chosen = []
        for row in rows:
            url = row["feed_url"]
            if caps and url in caps and taken.get(url, 0) >= caps[url]:
                continue  # its newest fill the feed's share; the rest wait their turn
            taken[url] = taken.get(url, 0) + 1
            chosen.append(row)
        return [_card(row) for row in chosen[:limit]], len(rows)

    def create_edition(self, composed: Composed, subscribers: Iterable[Subscriber],
                       view_of: Callable[[Subscriber], str] = lambda subscriber: "",
                       due_of: Callable[[Subscriber], datetime | None] = lambda s: None
                       ) -> Edition | None:
        """The edition, under the id it was numbered with (`next_edition`), its articles, its
        views and a pending delivery for each subscriber, all at once; `view_of` says which
        view a subscriber gets ('' = the whole edition), `due_of` when their delivery becomes
        due (None: at once).

        Returns None when this period already has its edition: a re-run or a second trigger
        never makes two.
        """
        period, cadence, whole = composed.period, composed.cadence, composed.whole
        edition_id = composed.id
        with self.transaction() as db:
            if not self._numbered(db, edition_id, period, cadence):
                return None
            db.execute(
                "INSERT INTO editions (id, period, cadence, created_at, subject, html, text, "
                "web_html, marker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (edition_id, period, cadence, _iso(composed.created_at), whole.subject,
                 whole.html, whole.text, composed.web_html, composed.marker))
            self._fill(db, composed, subscribers, view_of, due_of)
        return Edition(edition_id, period, composed.created_at, whole.subject, whole.html,
                       whole.text, composed.marker)

    def latest_made(self, cadence: str) -> datetime | None:
        """When the newest edition of this cadence was made; None before the first."""
        row = self.db.execute("SELECT max(created_at) FROM editions WHERE cadence = ?",
                              (cadence,)).fetchone()
        return _moment(row[0])

    def _numbered(self, db: Database, edition_id: int, period: str,
                  cadence: str) -> bool:
        """Whether a new edition may take this id for this period: False when the period
        has its edition already; an error when another process took the id."""
        if db.execute("SELECT 1 FROM editions WHERE cadence = ? AND period = ?",
                      (cadence, period)).fetchone():
            return False
        if db.execute("SELECT 1 FROM editions WHERE id = ?", (edition_id,)).fetchone():
            raise DigestError(f"edition {edition_id} was made meanwhile by another process "
                              "(not under the state folder's lock): run again", 1)
        return True

    def _fill(self, db: Database, composed: Composed,
              subscribers: Iterable[Subscriber], view_of: Callable[[Subscriber], str],
              due_of: Callable[[Subscriber], datetime | None]) -> None:
        """A composed edition's articles, views and delivery rows."""
        edition_id, cadence = composed.id, composed.cadence
        db.executemany(
            "INSERT INTO edition_articles (edition_id, article_id, cadence, position) "
            "VALUES (?, ?, ?, ?)", [(edition_id, card.id, cadence, position)
                                    for position, card in enumerate(composed.cards)])
        # The same story from other feeds (see _once) is claimed with the card that
        # carries it, so it never turns up in a later edition either.
        db.execute(
            "INSERT INTO edition_articles (edition_id, article_id, cadence, position) "
            "SELECT ?, twin.id, ?, claimed.position FROM edition_articles AS claimed "
            "JOIN articles AS card ON card.id = claimed.article_id "
            "JOIN articles AS twin ON twin.canonical = card.canonical "
            "AND twin.feed_id != card.feed_id "
            "WHERE claimed.edition_id = ? AND twin.id NOT IN "
            "(SELECT article_id FROM edition_articles WHERE cadence = ?) "
            "ON CONFLICT DO NOTHING", (edition_id, cadence, edition_id, cadence))
        db.executemany(
            "INSERT INTO edition_views (edition_id, view, subject, html, text) "
            "VALUES (?, ?, ?, ?, ?)", [(edition_id, key, view.subject, view.html, view.text)
                                       for key, view in composed.views.items()])
        db.executemany(
            "INSERT INTO deliveries (edition_id, email, name, fields, view, due_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ((edition_id, s.email, s.name, json.dumps(s.fields), view_of(s),
              _iso(due_of(s))) for s in subscribers))
        if self.postgres:
            # The planner's figures for a table that just grew by a whole list: without them
            # each claim (see _claims) read the table from end to end.
            db.execute("ANALYZE deliveries")

    # -- the editor's hold -----------------------------------------------------------------

    def hold(self, held: Held) -> bool:
        """The edition made and held: its row (nothing composed yet) and its stories claimed,
        no delivery rows. False when this period already has its edition."""
        with self.transaction() as db:
            if not self._numbered(db, held.id, held.period, held.cadence):
                return False
            db.execute(
                "INSERT INTO editions (id, period, cadence, created_at, subject, html, text, "
                "marker, state, held_at) VALUES (?, ?, ?, ?, '', '', '', '', ?, ?)",
                (held.id, held.period, held.cadence, _iso(held.held_at), State.HELD,
                 _iso(held.held_at)))
            db.executemany(
                "INSERT INTO edition_articles (edition_id, article_id, cadence, position) "
                "VALUES (?, ?, ?, ?)", [(held.id, card.id, held.cadence, position)
                                        for position, card in enumerate(held.cards)])
        return True

    def waiting(self, cadence: str | None = None) -> list[Held]:
        """The held editions (of one cadence, or all), oldest first."""
        sql = "SELECT id FROM editions WHERE state = ?"
        found = self.db.execute(sql + (" AND cadence = ?" if cadence else "") + " ORDER BY id",
                                (State.HELD, cadence) if cadence else (State.HELD,))
        return [held for (number,) in found.fetchall()
                if (held := self.holding(number)) is not None]

    def holding(self, edition_id: int) -> Held | None:
        """The edition as it waits for approval, None when it is not held (any more);
        KeyError when there is no such edition."""
        row = self._edition_row(edition_id)
        if row["state"] != State.HELD:
            return None
        stories = self.db.execute(
            "SELECT articles.*, feeds.name AS feed_name, edition_articles.choice "
            "FROM edition_articles JOIN articles ON articles.id = edition_articles.article_id "
            "JOIN feeds ON feeds.id = articles.feed_id WHERE edition_id = ? "
            "ORDER BY position", (edition_id,)).fetchall()
        return Held(edition_id, row["period"], _at(row["held_at"]),
                    tuple(_card(story) for story in stories),
                    {story["id"]: Choice(story["choice"]) for story in stories
                     if story["choice"]}, row["intro"], row["cadence"])

    def state(self, edition_id: int) -> State:
        """Where the edition stands; KeyError when there is no such edition."""
        return State(self._edition_row(edition_id)["state"])

    def choose(self, edition_id: int, story: int, choice: Choice | None) -> bool:
        """An editor's choice for one story of a held edition (None: as it came). False when
        the edition is not held or the story is not in it."""
        return self.db.execute(
            "UPDATE edition_articles SET choice = ? WHERE edition_id = ? AND article_id = ? "
            "AND edition_id IN (SELECT id FROM editions WHERE state = ?)",
            (choice, edition_id, story, State.HELD)).rowcount == 1

    def set_intro(self, edition_id: int, intro: str) -> bool:
        """The held edition's intro, as the editor wrote it. False when it is not held."""
        return self.db.execute("UPDATE editions SET intro = ? WHERE id = ? AND state = ?",
                               (intro, edition_id, State.HELD)).rowcount == 1

    def release(self, composed: Composed, subscribers: Iterable[Subscriber],
                view_of: Callable[[Subscriber], str], state: State, intro: str | None,
                discarded: Iterable[int] = (),
                due_of: Callable[[Subscriber], datetime | None] = lambda s: None
                ) -> Edition | None:
        """A held edition, composed at last with the editor's choices, and its delivery rows,
        all at once. Its stories are the composed cards: a dropped one goes back to the pool,
        or, among `discarded`, is never mailed. None when it is not held any more (approved
        or timed out meanwhile): a held edition is released once."""
        whole, edition_id = composed.whole, composed.id
        with self.transaction() as db:
            if db.execute(
                    "UPDATE editions SET created_at = ?, subject = ?, html = ?, text = ?, "
                    "web_html = ?, marker = ?, intro = ?, state = ? WHERE id = ? AND state = ?",
                    (_iso(composed.created_at), whole.subject, whole.html, whole.text,
                     composed.web_html, composed.marker, intro, state, edition_id,
                     State.HELD)).rowcount != 1:
                return None
            db.execute("DELETE FROM edition_articles WHERE edition_id = ?", (edition_id,))
            self._fill(db, composed, subscribers, view_of, due_of)
            db.executemany("UPDATE articles SET eligible = ? WHERE id = ?",
                           [(False, story) for story in discarded])
        return Edition(edition_id, composed.period, composed.created_at, whole.subject,
                       whole.html, whole.text, composed.marker)

    def let_pass(self, edition_id: int) -> bool:
        """A held edition skipped: none of it is mailed, its stories go back to the pool.
        False when it is not held any more."""
        with self.transaction() as db:
            if db.execute("UPDATE editions SET state = ? WHERE id = ? AND state = ?",
                          (State.SKIPPED, edition_id, State.HELD)).rowcount != 1:
                return False
            db.execute("DELETE FROM edition_articles WHERE edition_id = ?", (edition_id,))
        return True

    def next_edition(self) -> int:
        """The id the next edition gets: rendered before it is stored, it prints it."""
        return int(self.db.execute("SELECT coalesce(max(id), 0) + 1 FROM editions").fetchone()[0])

    def web_page(self, edition_id: int) -> Edition:
        """The edition as its web version shows it (placeholders still in it): `html` holds
        every card it carried. KeyError for one that was never mailed (held, skipped)."""
        row = self._edition_row(edition_id)
        if not State(row["state"]).mailed:
            raise KeyError(edition_id)
        return _edition(row, row["html"] if row["web_html"] is None else row["web_html"])

    def edition(self, edition_id: int) -> Edition:
        row = self._edition_row(edition_id)
        return _edition(row, row["html"])

    def _edition_row(self, edition_id: int) -> sqlite3.Row:
        if not _storable(edition_id):
            raise KeyError(edition_id)
        row: sqlite3.Row | None = self.db.execute("SELECT * FROM editions WHERE id = ?",
                                                  (edition_id,)).fetchone()
        if row is None:
            raise KeyError(edition_id)
        return row

    def editions(self, limit: int = 10, cadence: str | None = None) -> list[EditionSummary]:
        """The newest editions (of one cadence, if given), newest first."""
        rows = self.db.execute(
            "SELECT editions.*, (SELECT count(*) FROM edition_articles WHERE edition_id = "
            "editions.id) AS n FROM editions WHERE ? IS NULL OR cadence = ? ORDER BY id DESC "
            "LIMIT ?", (cadence, cadence, limit)).fetchall()
        counts = self.delivery_counts([row["id"] for row in rows])
        return [EditionSummary(row["id"], row["period"], _at(row["created_at"]), row["subject"],
                               row["n"], {s: n for s, n in counts[row["id"]].items() if n},
                               row["fault"], State(row["state"]), _moment(row["held_at"]),
                               row["cadence"])
                for row in rows]

    def edition_views(self, edition: Edition) -> dict[str, Edition]:
        """The edition as the subscribers of each of its partial views get it, by view key."""
        return {row[0]: replace(edition, subject=row[1], html=row[2], text=row[3])
                for row in self.db.execute("SELECT view, subject, html, text FROM edition_views "
                                           "WHERE edition_id = ?", (edition.id,))}

    def archived(self, limit: int = 100) -> list[Archived]:
        """The newest editions, newest first."""
        return [Archived(row[0], _at(row[1]), row[2]) for row in self.db.execute(
            "SELECT id, created_at, subject FROM editions WHERE state IN (?, ?, ?) "
            "ORDER BY id DESC LIMIT ?", (*(s for s in State if s.mailed), limit))]

    def unfinished(self) -> list[int]:
        """Editions with deliveries still to make, oldest first."""
        return [row[0] for row in self.db.execute(
            "SELECT DISTINCT edition_id FROM deliveries WHERE status IN (?, ?) ORDER BY 1",
            UNDELIVERED)]

    def decided(self, period: str, cadence: str = "daily") -> bool:
        """Whether this period has its edition, or was let pass on purpose."""
        return self.db.execute(
            "SELECT 1 FROM editions WHERE cadence = ? AND period = ? UNION ALL "
            "SELECT 1 FROM skipped_periods WHERE cadence = ? AND period = ?",
            (cadence, period, cadence, period)).fetchone() is not None

    def skip(self, period: str, reason: str, cadence: str = "daily") -> None:
        self.db.execute("INSERT INTO skipped_periods (cadence, period, reason, at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (cadence, period, reason, _iso(self.clock())))

    def anything_due(self) -> bool:
        """Whether any edition has a delivery to make now (deferred ones once their time has
        come): the scheduler asks this every few minutes before it opens a connection."""
        moment = _iso(self.clock())
        return self.db.execute(f"SELECT 1 FROM deliveries WHERE {_DUE} LIMIT 1",
                               (moment, moment)).fetchone() is not None

    # -- deliveries: the ledger ----------------------------------------------------------------

    def recover(self) -> int:
        """Rows left `sending` by a crash are in doubt: the server may have taken the message.
        They become `unknown`, to be reported, and are never resent unless the operator asks.
        In PostgreSQL only those of senders whose session has ended: the others are live."""
        theirs = f" AND ({_CLAIMED_BY_THE_DEAD})" if self.postgres else ""
        return self.db.execute(
            f"UPDATE deliveries SET status = ?, updated_at = ? WHERE status = ?{theirs}",
            (Status.UNKNOWN, _iso(self.clock()), Status.SENDING)).rowcount

    def _claims(self, edition_id: int, batch: int = 100) -> Iterator[Delivery]:
        """due() in PostgreSQL, where several senders may work on one edition: each takes
        the due rows a batch at a time, marked with its session in one commit, FOR UPDATE
        SKIP LOCKED so that two claiming at once take different rows. A row still pending
        whose claimant's session has ended (a sender that died) is anyone's again.

        Each claim looks on from the last row it took, so a batch costs the same at the end
        of a long edition as at its start (looking from the first row, every batch stepped
        over all the rows already sent: quadratic, about 8 s of claims for 40,000 rows). Only
        when nothing is left ahead does it look once more from the start, for rows that
        another sender skipped or let go of by dying."""
        moment, after = _iso(self.clock()), 0
        while True:
            with self.transaction() as db:
                rows = sorted(db.execute(
                    "UPDATE deliveries SET claimant = ? WHERE rowid IN (SELECT rowid FROM "
                    f"deliveries WHERE edition_id = ? AND rowid > ? AND {_DUE} AND "
                    f"({_CLAIMED_BY_THE_DEAD}) ORDER BY rowid LIMIT ? FOR UPDATE SKIP LOCKED) "
                    "RETURNING rowid, edition_id, email, name, status, attempts, view, fields",
                    (self.claimant, edition_id, after, moment, moment, batch)).fetchall())
            for row in rows:
                yield Delivery(row[1], row[2], row[3], Status(row[4]), row[5], row[6],
                               json.loads(row[7]))
            if rows:
                after = rows[-1][0]
            elif after:
                after = 0  # the last look, from the start
            else:
                return

    def due(self, edition_id: int, page: int = 1000) -> Iterator[Delivery]:
        """The edition's deliveries to make now, streamed a page at a time: never the whole
        list in memory, and no cursor held open across the ledger's own writes. (In SQLite the
        pending come first, then the deferred whose time has come.)"""
        if self.postgres:
            yield from self._claims(edition_id)
            return
        moment = _iso(self.clock())
        # One status at a time, each a range of the (status, edition_id) index in rowid order:
        # a page is read off it. Asked for both at once, SQLite sorted every row still to go
        # for each page (4 s of a 100,000-row edition's delivery).
        for status in (Status.PENDING, Status.DEFERRED):
            after = 0
            while True:
                rows = self.db.execute(
                    "SELECT rowid, edition_id, email, name, status, attempts, view, fields "
                    f"FROM deliveries WHERE edition_id = ? AND status = ? AND {_DUE} AND "
                    "rowid > ? ORDER BY rowid LIMIT ?",
                    (edition_id, status, moment, moment, after, page)).fetchall()
                for row in rows:
                    yield Delivery(row[1], row[2], row[3], Status(row[4]), row[5], row[6],
                                   json.loads(row[7]))
                if len(rows) < page:
                    break
                after = rows[-1][0]

    def due_count(self, edition_id: int) -> int:
        moment = _iso(self.clock())
        return int(self.db.execute(
            f"SELECT count(*) FROM deliveries WHERE edition_id = ? AND {_DUE}",
            (edition_id, moment, moment)).fetchone()[0])

    def step(self, done: Settled | None, starting: Delivery | None) -> None:
        """One commit for a connection's previous outcome and its next `sending`.

        Safe because a connection carries one transaction at a time: when this commits, the
        next message has not been offered yet, so a crash still leaves at most one row per
        connection in doubt (the one in flight, or the one whose 250 came just before).
        """
        self.steps([(done, starting)])

    def steps(self, steps: Iterable[tuple[Settled | None, Delivery | None]]) -> None:
        """Several connections' steps (see `step`) in one commit: each connection's promise
        holds as long as none offers its next message before this returns."""
        moment = _iso(self.clock())
        with self.transaction() as db:
            for done, starting in steps:
                if done is not None:
                    db.execute("UPDATE deliveries SET status = ?, last_response = ?, "
                               "next_try = ?, updated_at = ? WHERE edition_id = ? AND email = ?",
                               (done.result.outcome.value, done.result.response,
                                _iso(done.next_try), moment, done.delivery.edition_id,
                                done.delivery.email))
                if starting is not None:
                    db.execute("UPDATE deliveries SET status = ?, attempts = attempts + 1, "
                               "updated_at = ?, claimant = ? WHERE edition_id = ? AND email = ?",
                               (Status.SENDING, moment, self.claimant, starting.edition_id,
                                starting.email))

    def note_fault(self, edition_id: int, fault: str | None) -> None:
        """Remember why a run of the edition stopped on an error (None: it went without)."""
        self.db.execute("UPDATE editions SET fault = ? WHERE id = ? AND fault IS DISTINCT FROM ?",
                        (fault, edition_id, fault))

    def sent_since(self, moment: datetime) -> int:
        """Messages the relay took since then, across editions: the hourly cap's window."""
        return int(self.db.execute("SELECT count(*) FROM deliveries WHERE status = ? AND "
                                   "updated_at >= ?", (Status.SENT, _iso(moment))).fetchone()[0])

    def expire_deferred(self, made_before: datetime) -> int:
        """Deferred rows of editions made before then give up: `failed`, reply kept."""
        return self.db.execute(
            "UPDATE deliveries SET status = ?, next_try = NULL, updated_at = ?, "
            "last_response = 'gave up: still deferred after the maximum age; last reply: ' "
            "|| coalesce(last_response, '') WHERE status = ? AND edition_id IN "
            "(SELECT id FROM editions WHERE created_at < ?)",
            (Status.FAILED, _iso(self.clock()), Status.DEFERRED, _iso(made_before))).rowcount

    def suppress_bounced(self, emails: Iterable[str], editions: int) -> list[str]:
        """Suppress each address whose last `editions` deliveries all failed; returns them."""
        suppressed = []
        for email in emails:
            statuses = [row[0] for row in self.db.execute(
                "SELECT status FROM deliveries WHERE email = ? ORDER BY edition_id DESC "
                "LIMIT ?", (email, editions))]
            if len(statuses) == editions and set(statuses) == {Status.FAILED}:
                self.suppress(email, "bounced", f"failed in {editions} editions in a row")
                suppressed.append(email)
        return suppressed

    def counts(self, edition_id: int) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM deliveries WHERE edition_id = ? "
                                    "GROUP BY status ORDER BY status", (edition_id,)).fetchall())

    def requeue(self, edition_id: int, statuses: tuple[str, ...]) -> list[str]:
        """The operator's decision: rows of these statuses go back to `pending`, except for
        suppressed addresses (an opt-out wins over a resend). Returns the addresses."""
        marks = ", ".join("?" * len(statuses))
        with self.transaction() as db:
            emails = [row[0] for row in db.execute(
                f"SELECT email FROM deliveries WHERE edition_id = ? AND status IN ({marks}) "
                "AND email NOT IN (SELECT email FROM suppressions) ORDER BY rowid",
                (edition_id, *statuses))]
            db.executemany("UPDATE deliveries SET status = ?, next_try = NULL, "
                           "updated_at = ? WHERE edition_id = ? AND email = ?",
                           ((Status.PENDING, _iso(self.clock()), edition_id, email)
                            for email in emails))
        return emails

    def requeue_address(self, edition_id: int, subscriber: Subscriber) -> None:
        """One address gets the edition (again): its row goes back to `pending`, or is added
        when the address was not on the edition's list."""
        self.db.execute(
            "INSERT INTO deliveries (edition_id, email, name, fields, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (edition_id, email) DO UPDATE SET "
            "status = excluded.status, next_try = NULL, updated_at = excluded.updated_at",
            (edition_id, subscriber.email, subscriber.name, json.dumps(subscriber.fields),
             Status.PENDING, _iso(self.clock())))

    # -- suppressions --------------------------------------------------------------------------

    def suppressed(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT email FROM suppressions")}

    def suppress(self, email: str, reason: str, source: str) -> None:
        self.db.execute("INSERT INTO suppressions (email, reason, at, source) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (email) DO NOTHING",
                        (email, reason, _iso(self.clock()), source))

    def withhold_suppressed(self, edition_id: int, since: datetime | None = None) -> list[str]:
        """Rows still to deliver whose address has opted out (since then, if given) become
        `suppressed`: an opt-out wins even over a delivery row. Returns their addresses."""
        return [row[0] for row in self.db.execute(
            "UPDATE deliveries SET status = ?, updated_at = ? WHERE edition_id = ? "
            "AND status IN (?, ?) AND lower(email) IN "
            "(SELECT lower(email) FROM suppressions WHERE at >= ?) RETURNING email",
            (Status.SUPPRESSED, _iso(self.clock()), edition_id, *UNDELIVERED,
             _iso(since) or "")).fetchall()]

    def opted_out_since(self, moment: datetime) -> set[str]:
        """Addresses suppressed since then: the cheap question (an index on `at`) that a
        running edition asks every second."""
        return {row[0] for row in self.db.execute("SELECT email FROM suppressions WHERE at >= ?",
                                                  (_iso(moment),))}

    def unsuppress(self, email: str) -> int:
        """Lift an opt-out: only ever after the address confirmed a new sign-up. Addresses
        differing only in case are the same subscriber (see subscribers.key)."""
        return self.db.execute("DELETE FROM suppressions WHERE lower(email) = lower(?)",
                               (email,)).rowcount

    # -- the ids links carry, and sign-ups awaiting confirmation --------------------------------

    def name_due(self, edition_id: int, address_id: Callable[[str], str]) -> None:
        """Record the id the links of each message still due in the edition name its address
        by: before they go out, so that every link mailed can be read back. One statement,
        streamed through SQLite, however long the list (PostgreSQL cannot call into Python:
        the addresses come here a page at a time and their ids go back)."""
        if not isinstance(self.db, sqlite3.Connection):
            moment, after = _iso(self.clock()), ""
            while emails := [row[0] for row in self.db.execute(
                    f"SELECT email FROM deliveries WHERE edition_id = ? AND {_DUE} AND "
                    "email > ? ORDER BY email LIMIT 1000", (edition_id, moment, moment, after))]:
                self.db.executemany("INSERT INTO link_addresses (id, email) VALUES (?, ?) "
                                    "ON CONFLICT DO NOTHING",
                                    [(address_id(email), email) for email in emails])
                after = emails[-1]
            return
        self.db.create_function("address_id", 1, address_id, deterministic=True)
        moment = _iso(self.clock())
        self.db.execute("INSERT INTO link_addresses (id, email) SELECT address_id(email), "
                        f"email FROM deliveries WHERE edition_id = ? AND {_DUE} "
                        "ON CONFLICT DO NOTHING", (edition_id, moment, moment))

    def name(self, address_id: str, email: str) -> None:
        """Record the id a single message's links name its address by (a test mail)."""
        self.db.execute("INSERT INTO link_addresses (id, email) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", (address_id, email))

    def named(self, address_id: str) -> str | None:
        """The address an id stands for, if any link ever named it."""
        row = self.db.execute("SELECT email FROM link_addresses WHERE id = ?",
                              (address_id,)).fetchone()
        return row[0] if row else None

    def add_signup(self, signup_id: str, signup: Subscriber, recipient: str, at: datetime,
                   expires: datetime, most: int, window: timedelta) -> bool:
        """Keep a sign-up made `at` until its confirmation link expires, unless `recipient`
        had `most` within `window` before (then False, nothing kept): a stranger's form must
        not be able to flood someone's inbox. Sign-ups past both are dropped here."""
        since = _iso(at - window)
        with self.transaction() as db:
            db.execute("DELETE FROM signups WHERE expires_at < ? AND created_at < ?",
                       (_iso(at), since))
            made = db.execute("SELECT count(*) FROM signups WHERE recipient = ? AND "
                              "created_at > ?", (recipient, since)).fetchone()[0]
            if made >= most:
                return False
            db.execute("INSERT INTO signups (id, email, recipient, name, sections, created_at, "
                       "expires_at, cadence, timezone) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (signup_id, signup.email, recipient, signup.name,
                        json.dumps(list(signup.sections)), _iso(at), _iso(expires),
                        signup.cadence, signup.timezone))
        return True

    def signup(self, signup_id: str, at: datetime) -> Subscriber | None:
        """The sign-up kept under this id, while its link is valid."""
        row = self.db.execute("SELECT email, name, sections, cadence, timezone FROM signups "
                              "WHERE id = ? AND expires_at >= ?",
                              (signup_id, _iso(at))).fetchone()
        return Subscriber(row[0], row[1], {}, tuple(json.loads(row[2])), row[3],
                          row[4]) if row else None

    def drop_signup(self, signup_id: str) -> None:
        """Forget a sign-up whose confirmation mail never left: nobody holds its link."""
        self.db.execute("DELETE FROM signups WHERE id = ?", (signup_id,))

    # -- what subscribers chose on their preferences page -----------------------------------

    def preferences(self) -> dict[str, Preferences]:
        """Every choice made, by address key: few rows (only those who used the page), read
        once per send."""
        return {row[0]: _preferences(row) for row in self.db.execute(
            "SELECT address, sections, cadence, timezone, paused FROM preferences")}

    def preference(self, address: str) -> Preferences | None:
        """What the subscriber with this address key chose, if they ever saved the page."""
        row = self.db.execute("SELECT address, sections, cadence, timezone, paused FROM "
                              "preferences WHERE address = ?", (address,)).fetchone()
        return _preferences(row) if row else None

    def prefer(self, address: str, chosen: Preferences) -> None:
        """Keep what the subscriber with this address key chose, in place of any before."""
        self.db.execute(
            "INSERT INTO preferences (address, sections, cadence, timezone, paused, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET "
            "sections = excluded.sections, cadence = excluded.cadence, "
            "timezone = excluded.timezone, paused = excluded.paused, "
            "updated_at = excluded.updated_at",
            (address, json.dumps(list(chosen.sections)), chosen.cadence, chosen.timezone,
             int(chosen.paused), _iso(self.clock())))

    # -- what came back ------------------------------------------------------------------------

    def inbound(self, message: str) -> bool:
        """Whether a message with this identity was read and acted on before."""
        return self.db.execute("SELECT 1 FROM inbound WHERE message = ?",
                               (message,)).fetchone() is not None

    def spelling(self, email: str) -> str | None:
        """How the ledger spells an address it mailed, compared as subscribers.key compares
        (reports write local parts in any case): exact first, on the index."""
        for sql in ("SELECT email FROM deliveries WHERE email = ? LIMIT 1",
                    "SELECT email FROM deliveries WHERE lower(email) = lower(?) LIMIT 1"):
            row = self.db.execute(sql, (email,)).fetchone()
            if row is not None:
                return str(row[0])
        return None

    def mailed(self, email: str) -> list[int]:
        """The editions that went to `email`, newest first."""
        return [row[0] for row in self.db.execute(
            "SELECT edition_id FROM deliveries WHERE email = ? AND status IN (?, ?, ?) "
            "ORDER BY edition_id DESC", (email, *_MAILED))]

    def soft_bounced(self, email: str) -> set[int]:
        """The editions in which `email` soft-bounced."""
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT edition_id FROM returns WHERE email = ? AND kind = 'bounce' "
            "AND NOT hard AND edition_id IS NOT NULL", (email,))}

    def record_inbound(self, inbound: Inbound) -> None:
        """A message read, in one commit: what it said about whom, the ledger rows it answers
        marked `bounced`, the suppressions it calls for. A second read of the same message
        changes nothing."""
        moment = _iso(self.clock())
        with self.transaction() as db:
            if db.execute("INSERT INTO inbound (message, kind, action, at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT DO NOTHING",
                          (inbound.message, inbound.kind, inbound.action, moment)).rowcount == 0:
                return
            for said in inbound.said:
                db.execute("INSERT INTO returns (message, email, edition_id, kind, status, "
                           "hard, evidence, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT DO NOTHING",
                           (inbound.message, said.email, said.edition_id, inbound.kind,
                            said.status, said.hard, said.evidence, moment))
                if inbound.kind == "bounce" and said.edition_id is not None:
                    db.execute("UPDATE deliveries SET status = ?, last_response = ?, "
                               "updated_at = ? WHERE edition_id = ? AND email = ? AND status "
                               "IN (?, ?, ?)",
                               (Status.BOUNCED, f"bounced {said.status or '(no code)'} "
                                f"{'hard' if said.hard else 'soft'}: {said.evidence}", moment,
                                said.edition_id, said.email, *_MAILED))
            for email, reason, evidence in inbound.suppress:
                db.execute("INSERT INTO suppressions (email, reason, at, source) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (email) DO NOTHING",
                           (email, reason, moment, evidence))

    def returned(self, edition_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per edition: its hard and soft bounces and its complaints, one per address."""
        found: dict[int, dict[str, int]] = {number: {"hard": 0, "soft": 0, "complaints": 0}
                                            for number in edition_ids}
        marks = ", ".join("?" * len(edition_ids)) or "NULL"  # PostgreSQL has no IN ()
        for edition_id, kind, hard, count in self.db.execute(
                "SELECT edition_id, kind, max(hard), 1 FROM returns WHERE edition_id IN "
                f"({marks}) AND kind IN ('bounce', 'complaint') GROUP BY edition_id, email, kind",
                edition_ids):
            key = "complaints" if kind == "complaint" else "hard" if hard else "soft"
            found[edition_id][key] += count
        return found

    def refusals(self, edition_ids: list[int]) -> list[Refusals]:
        """Per edition and recipient domain, the permanent failures that were not the
        address's fault (soft bounces with a 5.x.x code): the provider refused the sending."""
        marks = ", ".join("?" * len(edition_ids)) or "NULL"  # PostgreSQL has no IN ()
        return [Refusals(*row) for row in self.db.execute(
            "SELECT edition_id, lower(substr(email, instr(email, '@') + 1)) AS domain, "
            "count(DISTINCT email), max(status) FROM returns WHERE edition_id IN "
            f"({marks}) AND kind = 'bounce' AND NOT hard AND status LIKE '5.%' "
            "GROUP BY edition_id, domain ORDER BY edition_id DESC, 3 DESC", edition_ids)]

    def suppressed_by_reason(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT reason, count(*) FROM suppressions GROUP BY reason "
                                    "ORDER BY reason").fetchall())

    # -- what /metrics reads at each scrape (metrics.py) --------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see one moment of the state, while senders go on writing (WAL): a
        scrape's numbers add up even in the middle of a run."""
        self.db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def delivery_counts(self, edition_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per edition, its rows by status, every status (zeros too): a seek into the
        (status, edition_id) index for each status, never a row read, however long the list
        (a count grouped by edition reads every row of it)."""
        found: dict[int, dict[str, int]] = {number: dict.fromkeys(Status, 0)
                                            for number in edition_ids}
        marks = ", ".join("?" * len(edition_ids)) or "NULL"  # PostgreSQL has no IN ()
        for status in Status:
            for edition_id, count in self.db.execute(
                    "SELECT edition_id, count(*) FROM deliveries WHERE status = ? AND "
                    f"edition_id IN ({marks}) GROUP BY edition_id", (status, *edition_ids)):
                found[edition_id][status] = count
        return found

    def in_flight(self) -> int:
        """Rows `sending`, across editions: offered to the relay, its answer not recorded."""
        return int(self.db.execute("SELECT count(*) FROM deliveries WHERE status = ?",
                                   (Status.SENDING,)).fetchone()[0])

    def sent_per_second(self, edition_id: int) -> list[tuple[datetime, int]]:
        """The edition's messages the relay took, counted per second of the ledger's time
        (a row's updated_at is whole seconds), newest first."""
        return [(datetime.fromisoformat(row[0]), row[1]) for row in self.db.execute(
            "SELECT updated_at, count(*) FROM deliveries WHERE status = ? AND "
            "edition_id = ? AND updated_at IS NOT NULL GROUP BY updated_at ORDER BY 1 DESC",
            (Status.SENT, edition_id))]


@dataclass(frozen=True)
class Said:
    """What a message said about one subscriber."""

    email: str
    edition_id: int | None
    status: str = ""
    hard: bool = False
    evidence: str = ""


@dataclass(frozen=True)
class Inbound:
    """A message read by `digest inbox`, as the store keeps it."""

    message: str
    kind: str
    action: str
    said: tuple[Said, ...] = ()
    suppress: tuple[tuple[str, str, str], ...] = ()  # (email, reason, evidence)


@dataclass(frozen=True)
class Refusals:
    edition_id: int
    domain: str
    addresses: int
    status: str  # one of the codes given


class Scratch:
    """A subscriber list's rows as its first walk found them, and the line where each address
    was first seen, in a private SQLite database on disk (SQLite unlinks it at once, and it
    vanishes when closed): a list of a million rows is checked for duplicates without a
    million keys in memory (as a set, ~150 MB), and walked again without reading and
    validating the file again. Nothing in it needs to survive a crash: no journal."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary database: a file in TMPDIR, its cache bounded;
        # a fault of that disk is named like one of the state's.
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False,
                                  factory=_Connection)
        self.db.path = Path(tempfile.gettempdir())
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -8000")  # KiB: most of a 100,000-row list
        # A row's key is its address's (subscribers.key); a rejected row has none.
        self.db.execute("CREATE TABLE found (line INTEGER PRIMARY KEY, key TEXT UNIQUE, "
                        "row BLOB NOT NULL)")
        # One transaction, never committed: no write per row, only pages the cache spills.
        self.db.execute("BEGIN")

    def keep(self, line: int, row: bytes, key: str | None = None) -> int:
        """Keep what the walk found on a line, unless a line before holds the same key:
        returns the first line with the key, `line` itself when it is the first (or it has
        none). One statement for nearly every row; a walk broken off and begun again finds
        its lines again."""
        if self.db.execute("INSERT INTO found (line, key, row) VALUES (?, ?, ?) "
                           "ON CONFLICT DO NOTHING", (line, key, row)).rowcount or key is None:
            return line
        return int(self.db.execute("SELECT line FROM found WHERE key = ?",
                                   (key,)).fetchone()[0])

    def kept(self) -> Iterator[bytes]:
        """What was kept, in the order of the lines, streamed."""
        for (row,) in self.db.execute("SELECT row FROM found ORDER BY line"):
            yield row


class Rows(Protocol):
    """What a statement gives back, from either backend."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection to either backend, as the queries use it."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, parameters: Any = (), /) -> Rows: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows: ...
    def close(self) -> None: ...


POSTGRES = ("postgresql://", "postgres://")


def is_postgres(location: Path | str) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES)


def _storable(number: int) -> bool:
    """Whether SQLite can hold the integer: one beyond 64 bits (typed into a URL or a
    command) names no row, and binding it would raise OverflowError."""
    return -(2**63) <= number < 2**63


# Beside the database, once it exists: a state folder that held one is never silently given
# a new, empty one (which would forget every opt-out and mail an edition again).
MARKER = ".created"
_RESTORE = "restore it from a backup (see the README, Backups)"


def _exists(path: Path) -> bool:
    """Whether there is a database to open; False when one is to be made. Raises when the
    folder shows that one existed and it is gone or empty."""
    marker = path.with_name(path.name + MARKER)
    if path.exists():
        if path.is_file() and path.stat().st_size == 0:
            # Never one of ours: a database is made whole before it takes its name.
            raise DigestError(f"{path} is empty (0 bytes): the database is damaged, not new; "
                              f"{_RESTORE}", 2)
        return True
    if marker.exists():
        raise DigestError(f"{path} is missing, yet {marker} shows a database was made here: "
                          f"{_RESTORE}; to start afresh on purpose, remove {marker}", 2)
    return False


def _create(path: Path) -> None:
    """A new database is made and migrated under a name of its own, then linked into place:
    so it is never seen half made, and of two processes making it at once one wins and the
    other opens that one."""
    # Named for the thread too: the scheduler's first jobs may open a new state together.
    draft = path.with_name(f"{path.name}.new-{os.getpid()}-{threading.get_ident()}")
    draft.unlink(missing_ok=True)
    try:
        db = _connect(draft)
        try:
            _migrate(db)
        finally:
            db.close()
        with suppress(FileExistsError):
            os.link(draft, path)
    except OSError as error:
        raise DigestError(f"{path}: cannot create the database: {error.strerror}") from None
    finally:
        draft.unlink(missing_ok=True)


def _mark(path: Path) -> None:
    marker = path.with_name(path.name + MARKER)
    if not marker.exists():
        with suppress(OSError):  # a missing marker only weakens the guard above
            marker.write_text(f"{path.name} was made in this folder on {_iso(now())}. If it "
                              "is ever missing or empty, restore it from a backup rather "
                              "than start afresh.\n", encoding="utf-8")


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], version + 1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")


def _connect(path: Path) -> _Connection:
    # Delivery threads share one connection under deliver's lock: one writer, no
    # busy-waiting between connections of the same process.
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False,
                             factory=_Connection)
    except sqlite3.DatabaseError as error:
        _file_fault(path, error)
        raise
    db.path = path
    db.row_factory = sqlite3.Row
    return db


class _Connection(sqlite3.Connection):
    """Every statement passes here, so a fault of the file itself (damage, a full disk, no
    permission) is one line naming the file, wherever it shows; our own mistakes (bad SQL)
    stay exceptions with their traceback. (A plain try, not a context manager: this is on
    the path of every message.)"""

    path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as error:
            _file_fault(self.path, error)
            raise

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as error:
            _file_fault(self.path, error)
            raise

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.DatabaseError as error:
            _file_fault(self.path, error)
            raise


def _file_fault(path: Path, error: sqlite3.DatabaseError) -> None:
    """Raises the file's fault in words, with the exit status: 2 for what the operator must
    mend (a damaged file, permissions), 1 for what may pass (a full disk, a lock held too
    long). Returns for anything else: the caller lets the error go on as it is."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        raise DigestError(f"{path} is damaged ({error}): {_RESTORE}", 2) from error
    if code == sqlite3.SQLITE_FULL:
        raise DigestError(f"{path}: cannot write: {error}; free some space on its disk",
                          1) from error
    if code == sqlite3.SQLITE_IOERR:
        raise DigestError(f"{path}: {error}: check the disk it is on", 1) from error
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        raise DigestError(f"{path}: {error}: another process kept it busy too long",
                          1) from error
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        raise DigestError(f"{path}: {error} (check the path and its permissions)",
                          2) from error


def _once(rows: list[sqlite3.Row], mailed: dict[str, set[int]]) -> list[sqlite3.Row]:
    """One row per story: a canonical link already taken by a row of another feed, in this
    edition or an earlier one (`mailed`: canonical link -> feeds that carried it), drops the
    row. Within one feed, entries sharing a link stay apart: some feeds point every entry at
    their home page, and their ids tell the entries apart."""
    owners = {canonical: set(feeds) for canonical, feeds in mailed.items()}
    kept = []
    for row in rows:
        canonical = row["canonical"]
        if canonical:
            feeds = owners.setdefault(canonical, {row["feed_id"]})
            if row["feed_id"] not in feeds:
                continue
        kept.append(row)
    return kept


def _preferences(row: sqlite3.Row) -> Preferences:
    return Preferences(tuple(json.loads(row[1])), row[2], row[3], bool(row[4]))


def _edition(row: sqlite3.Row, html: str) -> Edition:
    return Edition(row["id"], row["period"], _at(row["created_at"]), row["subject"], html,
                   row["text"], row["marker"])


def _card(row: sqlite3.Row) -> Card:
    image = None
    if row["image_url"]:
        image = Image(row["image_url"], row["image_width"], row["image_height"],
                      row["image_alt"] or "")
    published = _moment(row["published"]) or _at(row["collected_at"])
    return Card(row["id"], row["title"], row["link"], row["teaser"], image, published,
                row["feed_name"])


# -- PostgreSQL --------------------------------------------------------------------------------

# The schema as SQLite's migrations write it, rewritten where PostgreSQL's DDL differs, in
# order: SQLite's integers are 64 bits and an INTEGER PRIMARY KEY numbers itself; its flags
# are 0/1 where PostgreSQL wants truth values (`WHERE eligible`); and its deliveries keep the
# list's order in their rowid, which PostgreSQL rows have no such thing as.
_POSTGRES_DDL: tuple[tuple[str, str], ...] = (
    (r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (r"\b(eligible|hard) INTEGER NOT NULL DEFAULT 1\b", r"\1 BOOLEAN NOT NULL DEFAULT true"),
    (r"\b(eligible|hard) INTEGER NOT NULL DEFAULT 0\b", r"\1 BOOLEAN NOT NULL DEFAULT false"),
    (r"\bINTEGER\b", "BIGINT"),
    (r"\bCREATE TABLE deliveries \(",
     "CREATE TABLE deliveries (rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE, "),
)

# Made once in a new database, before the first migration: where the schema's version is
# kept (SQLite's PRAGMA user_version), and the two functions of SQLite's that the queries use
# and PostgreSQL spells otherwise.
_POSTGRES_START = """
    CREATE TABLE schema_version (version BIGINT NOT NULL);
    INSERT INTO schema_version VALUES (0);
    CREATE FUNCTION instr(haystack text, needle text) RETURNS integer
        LANGUAGE sql IMMUTABLE AS 'SELECT strpos(haystack, needle)';
    CREATE AGGREGATE max(boolean) (SFUNC = boolor_statefunc, STYPE = boolean);
"""

# The advisory lock that lets one process at a time migrate a database (two schedulers
# starting together on a new one). Its number is digest's own: "dgst".
_MIGRATING = 0x64677374


def _postgres_ddl(script: str) -> str:
    for pattern, replacement in _POSTGRES_DDL:
        script = re.sub(pattern, replacement, script)
    return script


def _migrate_postgres(db: _Postgres) -> None:
    """Every migration not yet run, each in its transaction with the version it reaches; all
    under the migration lock, so a second process waits and then finds nothing to do."""
    db.execute("SELECT pg_advisory_lock(?)", (_MIGRATING,))
    try:
        if db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            db.script(f"BEGIN; {_POSTGRES_START}; COMMIT;")
        version = db.execute("SELECT version FROM schema_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            db.script(f"BEGIN; {_postgres_ddl(script)}; "
                      f"UPDATE schema_version SET version = {number}; COMMIT;")
    finally:
        db.execute("SELECT pg_advisory_unlock(?)", (_MIGRATING,))


class _Row(tuple[Any, ...]):
    """A row read by position, by name (as sqlite3.Row is) or unpacked."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            key = self.names[key]
        return super().__getitem__(key)


def _rows(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], _Row]:
    names = {column.name: number for number, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> _Row:
        row = _Row(values)
        row.names = names
        return row

    return make


# SQLite's BEGIN IMMEDIATE takes the write lock at once: a transaction that reads, then
# writes what it read (a sign-up counted against the limit, an edition against its period)
# has the state to itself. In PostgreSQL a lock of the database's own (_WRITING) does that,
# for the transaction's duration; statements outside one lock only the rows they write. A
# snapshot (BEGIN DEFERRED) is a repeatable read: the scrape sees one moment.
_WRITING = _MIGRATING + 2
_BEGIN = {"BEGIN IMMEDIATE": ("BEGIN", f"SELECT pg_advisory_xact_lock({_WRITING})"),
          "BEGIN DEFERRED": ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",)}


@functools.lru_cache(maxsize=1024)
def _postgres_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _Text(StrDumperUnknown):
    """A string parameter, with any NUL (which SQLite keeps and PostgreSQL's text cannot
    hold) as U+FFFD: a forged token or a feed's stray byte is one more string that matches
    nothing, not a fault of the database."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


class _Postgres:
    """A PostgreSQL connection that takes the statements written for SQLite: `?`
    placeholders, rows as sqlite3.Row gives them, a statement its own transaction outside an
    explicit BEGIN, and the server's faults in one line naming the database.

    Parameters are bound on the client (psycopg's ClientCursor): a literal takes its type
    from where it stands, as in SQLite, so `? IS NULL` and `? - 1` need no casts."""

    def __init__(self, url: str) -> None:
        self.url = url  # never with a password in it: the configuration refuses one
        try:
            self.connection = psycopg.connect(
                url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                application_name=f"digest (PID {os.getpid()})", connect_timeout=10)
        except psycopg.Error as error:
            raise DigestError(f"{url}: cannot connect: {_said(error)}", 2) from None
        self.connection.row_factory = _rows
        self.connection.adapters.register_dumper(str, _Text)

    @property
    def in_transaction(self) -> bool:
        return self.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Any = (), /) -> Rows:
        try:
            if sql in _BEGIN:
                for statement in _BEGIN[sql]:
                    cursor = self.connection.execute(statement.encode())
                return cursor
            return self.connection.execute(_postgres_sql(sql), parameters)
        except psycopg.OperationalError as error:
            raise DigestError(f"{self.url}: {_said(error)}", 1) from error

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows:
        cursor = self.connection.cursor()
        try:
            cursor.executemany(_postgres_sql(sql), parameters)
        except psycopg.OperationalError as error:
            raise DigestError(f"{self.url}: {_said(error)}", 1) from error
        return cursor

    def script(self, sql: str) -> None:
        """Statements with no parameters, as written: the schema's. A failure (a role that
        may not create tables) is the operator's to mend."""
        try:
            self.connection.execute(sql.encode())
        except psycopg.Error as error:
            if self.in_transaction:
                self.connection.execute(b"ROLLBACK")
            raise DigestError(f"{self.url}: cannot set up the schema: {_said(error)}",
                              2) from error

    def copy(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        """COPY ... FROM STDIN, the rows streamed: each value as text, which every column
        type reads (a SQLite flag's 1 or 0 too)."""
        with self.connection.cursor().copy(statement.encode()) as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self.connection.close()


# Who claimed a row (Store.due): a PostgreSQL session, by its server process and the moment it
# began (a process number alone may come again).
_SESSION = "pid || '/' || extract(epoch FROM backend_start)"
_CLAIMED_BY_THE_DEAD = (f"claimant IS NULL OR claimant NOT IN (SELECT {_SESSION} FROM "
                        "pg_stat_activity)")
# The state's lock (lock.py) when the state is in PostgreSQL: an advisory lock of the
# database, held by a connection of its own for as long as the work lasts. The server drops
# it when that connection ends, however its process ends, as the kernel drops an flock.
_STATE_LOCK = _MIGRATING + 1


@contextmanager
def advisory(url: str, shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold the state's lock: alone, or `shared` with other holders that share it. Fails at
    once naming a holder, or with `wait` tries again every second until it is free."""
    db = _Postgres(url)
    try:
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        while not db.execute(f"SELECT {take}(?)", (_STATE_LOCK,)).fetchone()[0]:
            if not wait:
                raise DigestError(f"another digest process (PID {_holder(db) or 'unknown'}) "
                                  f"is working on {url}: it holds the state's lock", 1)
            time.sleep(1)
        yield
    finally:
        db.close()


def advisory_holder(url: str) -> int | None:
    """The PID of a process holding the state's lock (0: one whose PID is unknown), None
    when nobody does."""
    db = _Postgres(url)
    try:
        return _holder(db)
    finally:
        db.close()


def _holder(db: _Postgres) -> int | None:
    row = db.execute(
        "SELECT activity.application_name FROM pg_locks JOIN pg_stat_activity AS activity "
        "ON activity.pid = pg_locks.pid WHERE pg_locks.locktype = 'advisory' AND "
        "pg_locks.objid = ? AND pg_locks.granted AND pg_locks.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        (_STATE_LOCK,)).fetchone()
    if row is None:
        return None
    found = re.search(r"PID (\d+)", row[0] or "")
    return int(found[1]) if found else 0


def copy_state(source: Store, target: Store) -> dict[str, int]:
    """Every table of a SQLite state into an empty PostgreSQL one, in one transaction: the
    tables as the schema lists them (in the order they were made, so a row's references come
    first), each row's columns as the target has them; each identity column then numbers on
    from the highest copied. Returns the rows per table, counted again in the target: any
    difference undoes the whole copy."""
    if not (isinstance(source.db, sqlite3.Connection) and isinstance(target.db, _Postgres)):
        raise DigestError("only a SQLite state can be copied, and only into PostgreSQL")
    tables = [row[0] for row in source.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid")]
    columns: dict[str, list[str]] = {}
    for table, column in target.db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE "
            "table_schema = current_schema() ORDER BY table_name, ordinal_position"):
        columns.setdefault(table, []).append(column)
    missing = [table for table in tables if table not in columns]
    if missing:
        raise DigestError(f"{target.db.url} has no table {', '.join(missing)}: its schema is "
                          "not this digest's", 2)
    for table in columns.keys() - {"schema_version"}:
        if target.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise DigestError(f"{target.db.url} is not empty ({table} has rows): migrate "
                              "copies into an empty database only", 2)
    copied = {}
    with target.transaction():
        for table in tables:
            names = ", ".join(columns[table])
            target.db.copy(f"COPY {table} ({names}) FROM STDIN", source.db.execute(
                f"SELECT {names} FROM {table} ORDER BY rowid"))
            copied[table] = int(target.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            expected = int(source.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            if copied[table] != expected:
                raise DigestError(f"{table}: {expected} rows in the SQLite state, "
                                  f"{copied[table]} in {target.db.url}: nothing copied", 1)
        for table, column in target.db.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE "
                "table_schema = current_schema() AND is_identity = 'YES'").fetchall():
            target.db.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), "
                              f"coalesce(max({column}), 0) + 1, false) FROM {table}",
                              (table, column))
    return copied


def _said(error: psycopg.Error) -> str:
    return " ".join(str(error).split())
