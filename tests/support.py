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


def rows(database: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(sql, params).fetchall()


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

    @property
    def config(self) -> Path:
        return self.root / "digest.toml"

    @property
    def database(self) -> Path:
        return self.root / "state" / "digest.db"

    def subscribers(self, text: str) -> Path:
        path = self.root / "subscribers.csv"
        path.write_text(text, encoding="utf-8")
        return path

    def write(self) -> Path:
        # [images] first: `extra` goes on with the last table written, as it always has.
        lines = ["[images]", f"host = {str(self.hosting).lower()}",
                 '[newsletter]', 'name = "Test Digest"', 'from = "Test Digest <news@example.com>"',
                 'public_url = "https://news.example.com"']
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
