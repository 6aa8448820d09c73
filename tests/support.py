"""What the tests build for themselves: feeds, a working folder, the command run in process."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import psycopg
import uvicorn
from click.testing import CliRunner, Result
from servers import free_port

from digest.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"


def digest(*args: str) -> Result:
    """The command line, in process, as a user would call it. Its output holds standard
    error too, so a traceback our code logs is in it; an exception that escapes the command
    is not printed there by click, so it is raised here: any traceback fails the test, and
    no test needs to look for one in the output."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def rows(database: Path | str, sql: str, *params: object) -> list[tuple]:
    """A statement run on the state as it is, on either backend (`site.database`): a SQLite
    file, or a postgresql:// URL (`?` placeholders all the same)."""
    if isinstance(database, str):
        with psycopg.connect(database, autocommit=True) as pg:
            cursor = pg.execute(sql.replace("%", "%%").replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    with sqlite3.connect(database) as db:
        return db.execute(sql, params).fetchall()


def sessions_ended(database: Path | str, keep: int = 0, timeout: float = 10) -> None:
    """Wait until no more than `keep` connections are open on the state (PostgreSQL: a
    closed connection's server process ends a moment later, and until then its session is
    live)."""
    if not isinstance(database, str):
        return
    deadline = time.monotonic() + timeout
    while rows(database, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
               "current_database() AND pid <> pg_backend_pid()")[0][0] > keep:
        assert time.monotonic() < deadline, "sessions still open on the state"
        time.sleep(0.02)


@dataclass(frozen=True)
class Item:
    title: str
    link: str
    guid: str | None = None
    summary: str = ""
    date: str = "Thu, 26 Nov 2026 09:00:00 +0000"
    extra: str = ""  # raw XML inside <item>


def rss(*items: Item, title: str = "Test feed") -> str:
    body = "".join(
        f"<item><title>{escape(i.title)}</title><link>{escape(i.link)}</link>"
        + (f"<guid isPermaLink=\"false\">{escape(i.guid)}</guid>" if i.guid else "")
        + f"<description>{escape(i.summary)}</description><pubDate>{i.date}</pubDate>"
        + f"{i.extra}</item>" for i in items)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
            f"<title>{escape(title)}</title><link>https://example.com/</link>{body}"
            "</channel></rss>")


@dataclass
class Site:
    """A working folder with its digest.toml, subscribers.csv and state."""

    root: Path
    feeds: list[tuple[str, str]] = field(default_factory=list)  # (name, url)
    smtp_port: int | None = None
    extra: str = ""
    # Off unless a test is about them: other tests' entries link to pages that do not exist,
    # and no test reaches past loopback.
    enrich: bool = False  # read article pages for missing pictures
    hosting: bool = False  # download and host the cards' pictures
    logo: str = ""  # newsletter.logo
    store: str = ""  # [store] url: a PostgreSQL database's; empty: SQLite in state/

    @property
    def config(self) -> Path:
        return self.root / "digest.toml"

    @property
    def database(self) -> Path | str:
        """The state: its PostgreSQL database's URL, else its SQLite file."""
        return self.store or self.root / "state" / "digest.db"

    def subscribers(self, text: str) -> Path:
        path = self.root / "subscribers.csv"
        path.write_text(text, encoding="utf-8")
        return path

    def write(self) -> Path:
        # [images] first: `extra` goes on with the last table written, as it always has.
        lines = [*(["[store]", f"url = {self.store!r}"] if self.store else []),
                 "[images]", f"host = {str(self.hosting).lower()}",
                 '[newsletter]', 'name = "Test Digest"', 'from = "Test Digest <news@example.com>"',
                 'public_url = "https://news.example.com"', f"logo = {self.logo!r}"]
        for name, url in self.feeds:
            lines += ["[[feeds]]", f"name = {name!r}", f"url = {url!r}",
                      f"enrich = {str(self.enrich).lower()}"]
        if self.smtp_port is not None:
            lines += ["[delivery]", 'transport = "smtp"', "[smtp]", 'host = "127.0.0.1"',
                      f"port = {self.smtp_port}", 'security = "none"', "timeout = 5"]
        self.config.write_text("\n".join(lines) + "\n" + self.extra, encoding="utf-8")
        return self.config


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """An ASGI app served by a real uvicorn server on a free loopback port; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


# -- a realistic edition for the layout's measurements (tests/test_browser.py, bench/height.py) --

_HEADLINES = (
    "Harbour reopens after a winter of repairs",
    "Council votes to keep the night ferry running until the new bridge is finished",
    "Tram line to the market: what changes on Monday",
    "A lantern maker's last season",
    "Storm warning for the north coast as the first winter gale approaches",
)
_TEASER = ("The council met late into the evening to settle the harbour question, and by the "
           "time the lights went out along the quay the plan had changed twice: first the "
           "ferry schedule, then the fish market's hours, and at last the tram's route")
SECTIONS_OF_20 = ("World", "Science", "Culture")


def twenty_stories(image: Any) -> list[Any]:
    """Twenty cards in three sections as a send would claim them, each with an 800×450
    picture at `image(n)` (a URL), headlines of one to two lines and 200-character teasers."""
    from datetime import UTC, datetime

    from digest.cards import cut
    from digest.records import Card, Image

    return [Card(n, f"{_HEADLINES[n % len(_HEADLINES)]} ({n})",
                 f"https://news.example.com/2026/11/27/story-{n}", cut(_TEASER, 200),
                 Image(image(n), 800, 450, ""), datetime(2026, 11, 27, 6, n, tzinfo=UTC),
                 SECTIONS_OF_20[n * len(SECTIONS_OF_20) // 20]) for n in range(20)]


def picture(width: int, height: int) -> str:
    """An SVG picture of that size: an image every browser loads, made without an imaging
    library."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="{width}" height="{height}" fill="#7a8ca3"/></svg>')
