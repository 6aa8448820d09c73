"""The editor's hold (newsletter.approval): an edition made at its slot waits for an editor,
who drops or pins stories and writes an intro in the preview (real Chromium) or with
`digest approve`, over a real SMTP relay, in the real scheduler process."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss, serving
from test_scheduler import logged, running, until

from digest import config, jobs
from digest.store import State, Store
from digest.web import preview

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
STORIES = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return.",
                date="Thu, 26 Nov 2026 09:00:00 +0000"),
           Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows.",
                date="Thu, 26 Nov 2026 08:00:00 +0000"),
           Item("Lighthouse relit", "https://example.com/light", "h3", "Ships see it.",
                date="Thu, 26 Nov 2026 07:00:00 +0000"))
LATER = Item("Market moves", "https://example.com/market", "h4", "Stalls shift.",
             date="Fri, 27 Nov 2026 07:00:00 +0000")
# Editor text that would be markup, or one of our placeholders, were it not escaped.
INTRO = "Good <b>morning</b> & welcome, DIGEST-PERSONAL-NAME-7c1f"


def setup(site: Site, web: FeedServer, smtp: SmtpServer, newsletter: str = "",
          schedule: str = "", *items: Item) -> None:
    web.serve("/feed.xml", rss(*(items or STORIES)))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = "[schedule]\n" + schedule
    site.write()
    site.config.write_text(site.config.read_text().replace(
        "[newsletter]\n", "[newsletter]\napproval = true\n" + newsletter, 1))
    site.subscribers(SUBSCRIBERS)


def story_ids(site: Site, edition: int) -> dict[str, int]:
    return dict(rows(site.database, "SELECT articles.title, articles.id FROM edition_articles "
                     "JOIN articles ON articles.id = article_id WHERE edition_id = ? "
                     "ORDER BY position", edition))


def ids(site: Site) -> dict[str, int]:
    return dict(rows(site.database, "SELECT title, id FROM articles"))


def headlines(message: EmailMessage) -> list[str]:
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return [re.sub(r"<[^>]+>", "", found) for found in re.findall(
        r'<h3 class="h3[^"]*"[^>]*>(.*?)</h3>', page, re.S)]


def state(site: Site, edition: int) -> str:
    return rows(site.database, "SELECT state FROM editions WHERE id = ?", edition)[0][0]


def test_send_holds_the_edition_and_approve_mails_it_with_the_choices(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    held = digest("send")
    assert held.exit_code == 0, held.output
    assert "edition 1: 3 articles held for approval" in held.output
    assert state(site, 1) == "held"
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(0,)]
    assert smtp.messages == []
    # While it waits, no second edition of the cadence: the next send says why.
    again = digest("send")
    assert "edition 1 is held for approval" in again.output
    assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]

    shown = digest("status")
    assert shown.exit_code == 1
    assert "edition 1 held for approval since" in shown.output
    assert "it waits (no schedule.approval_timeout)" in shown.output
    found = ids(site)
    for title, number in found.items():
        assert re.search(rf"{number}\s.*{title}", shown.output), title
    # The archive knows nothing of it yet.
    with Store(site.database) as store:
        assert store.archived() == []

    approved = digest("approve", "1", "--drop", str(found["Bridge repaired"]),
                      "--pin", str(found["Lighthouse relit"]), "--intro", INTRO)
    assert approved.exit_code == 0, approved.output
    assert "edition 1 approved" in approved.output
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    for received in smtp.messages:
        message = received.message
        assert headlines(message) == ["Lighthouse relit", "Harbour opens"]
        page = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert "Bridge repaired" not in page and "Bridge repaired" not in text
        assert "Good &lt;b&gt;morning&lt;/b&gt; &amp; welcome" in page
        assert "<b>morning" not in page
        # Printed as written, never spliced: no subscriber's name in its place.
        assert "DIGEST-PERSONAL-NAME-7c1f" in page and "DIGEST-PERSONAL-NAME-7c1f" in text
        assert text.index("Good <b>morning</b> & welcome") < text.index("Lighthouse relit")
        assert page.index("Good &lt;b&gt;") < page.index('class="h3')
    assert state(site, 1) == "approved"
    with Store(site.database) as store:
        assert [e.id for e in store.archived()] == [1]
        assert "Lighthouse relit" in store.web_page(1).html
    assert digest("status").exit_code == 0

    # The dropped story went back to the pool: the next edition carries it.
    web.serve("/feed.xml", rss(LATER, *STORIES))
    assert digest("collect").exit_code == 0
    assert "edition 2: 2 articles held for approval" in digest("send").output
    assert list(story_ids(site, 2)) == ["Market moves", "Bridge repaired"]
    assert digest("approve", "2").exit_code == 0
    assert "Bridge repaired" in headlines(smtp.messages[-1].message)


def test_discarded_stories_are_never_mailed(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    bridge = ids(site)["Bridge repaired"]
    approved = digest("approve", "1", "--drop", str(bridge), "--discard")
    assert approved.exit_code == 0, approved.output
    assert all("Bridge repaired" not in headlines(m.message) for m in smtp.messages)

    web.serve("/feed.xml", rss(LATER, *STORIES))
    assert digest("collect").exit_code == 0
    assert "edition 2: 1 articles held for approval" in digest("send").output
    assert list(story_ids(site, 2)) == ["Market moves"]


def test_bad_approvals_are_one_line_and_exit_2(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    found = ids(site)
    for args, said in (
            (("7",), "edition 7 does not exist"),
            (("1", "--drop", "99"), "story 99 is not in edition 1"),
            (("1", "--pin", "0"), "story 0 is not in edition 1"),
            (("1", "--drop", str(found["Harbour opens"]), "--pin",
              str(found["Harbour opens"])), "both --drop and --pin"),
            (("1", *[arg for number in found.values() for arg in ("--drop", str(number))]),
             "every story is dropped")):
        result = digest("approve", *args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.output and len(result.output.strip().splitlines()) == 1, args
    assert smtp.messages == [] and state(site, 1) == "held"

    assert digest("approve", "1").exit_code == 0
    twice = digest("approve", "1")
    assert twice.exit_code == 2
    assert "edition 1 is not held for approval (it is approved)" in twice.output
    assert len(twice.output.strip().splitlines()) == 1
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
