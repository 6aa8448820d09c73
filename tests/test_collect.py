"""What collect decides about entries: which are new, changed, the same story twice, or a new
feed's back catalogue; and that none of it mails anyone twice."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers import FeedServer
from support import Item, Site, digest, rows, rss

from digest import config, jobs
from digest.config import Collect
from digest.errors import DigestError
from digest.store import Store

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\n"


def site_with(site: Site, *feeds: tuple[str, str], extra: str = "") -> None:
    site.feeds = list(feeds)
    site.extra = extra
    site.write()
    site.subscribers(SUBSCRIBERS)


def rendered() -> str:
    result = digest("render", "--out", "next.html")
    assert result.exit_code == 0
    path = Path("next.html")
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_one_story_from_two_feeds_is_in_an_edition_once(site: Site, web: FeedServer) -> None:
    web.serve("/a.xml", rss(Item("Eclipse tonight", "https://News.example.com/eclipse#top",
                                 "a-1", "Look up.")))
    web.serve("/b.xml", rss(Item("Eclipse, tonight!", "https://news.example.com/eclipse"
                                 "?utm_source=rss&utm_medium=feed", "b-1", "Look up!"),
                            Item("Comet", "https://news.example.com/comet", "b-2", "Tail.")))
    site_with(site, ("Alpha", web.url("/a.xml")), ("Beta", web.url("/b.xml")),
              extra="[collect]\nfirst_run = 0\n")
    assert digest("collect").exit_code == 0
    page = rendered()
    assert "Eclipse tonight" in page and "Comet" in page
    assert "Eclipse, tonight!" not in page
    assert digest("send").exit_code == 0
    # Both rows are claimed by the edition: the twin never turns up later either.
    assert rows(site.database, "SELECT count(*) FROM edition_articles") == [(3,)]
    assert "nothing to send" in digest("send").output

    # The same story seen again later through a third feed is not news either.
    web.serve("/c.xml", rss(Item("Eclipse", "HTTPS://NEWS.example.com:443/eclipse", "c-1")))
    site_with(site, ("Alpha", web.url("/a.xml")), ("Beta", web.url("/b.xml")),
              ("Gamma", web.url("/c.xml")), extra="[collect]\nfirst_run = 0\n")
    digest("collect")
    assert "no new articles" in digest("render", "--out", "later.html").output


def test_entries_sharing_a_link_within_one_feed_are_all_mailed(
        site: Site, web: FeedServer) -> None:
    web.serve("/a.xml", rss(Item("Monday", "https://example.com/", "mon"),
                            Item("Tuesday", "https://example.com/", "tue")))
    site_with(site, ("Alpha", web.url("/a.xml")))
    digest("collect")
    page = rendered()
    assert "Monday" in page and "Tuesday" in page


def test_a_new_feed_mails_only_its_newest_entries(site: Site, web: FeedServer) -> None:
    items = [Item(f"Story {n}", f"https://example.com/{n}", f"s{n}",
                  date=f"Thu, {10 + n:02d} Nov 2026 09:00:00 +0000") for n in range(8)]
    # Listed oldest first: the guard goes by date, not by position.
    web.serve("/feed.xml", rss(*items))
    site_with(site, ("News", web.url("/feed.xml")), extra="[collect]\nfirst_run = 3\n")
    assert "collected 8 new articles" in digest("collect").output
    eligible = rows(site.database, "SELECT title FROM articles WHERE eligible ORDER BY title")
    assert eligible == [("Story 5",), ("Story 6",), ("Story 7",)]

    # Later entries of the same feed are all news, however many arrive at once.
    fresh = [Item(f"Fresh {n}", f"https://example.com/f{n}", f"f{n}") for n in range(4)]
    web.serve("/feed.xml", rss(*fresh, *items))
    digest("collect")
    assert rows(site.database, "SELECT count(*) FROM articles WHERE eligible") == [(7,)]


def test_the_guard_waits_for_a_new_feeds_first_successful_read(
        site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", "down", status=500, content_type="text/plain")
    site_with(site, ("News", web.url("/feed.xml")), extra="[collect]\nfirst_run = 2\n")
    digest("collect")
    web.serve("/feed.xml", rss(*(Item(f"Story {n}", f"https://example.com/{n}", f"s{n}")
                                 for n in range(6))))
    digest("collect")
    # All dated alike: the feed's own order (newest first) decides.
    assert rows(site.database, "SELECT title FROM articles WHERE eligible ORDER BY id") == [
        ("Story 0",), ("Story 1",)]


def test_a_changed_entry_updates_its_card_until_it_is_mailed(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(Item("Draft headline", "https://example.com/x", "x", "First.")))
    site_with(site, ("News", web.url("/feed.xml")))
    digest("collect")
    web.serve("/feed.xml", rss(Item("Final headline", "https://example.com/x", "x", "Second.",
                                    extra='<media:thumbnail url="https://img.example.com/x.jpg"'
                                          "/>")))
    assert "collected 0 new articles" in digest("collect").output
    assert rows(site.database, "SELECT title, teaser, image_url FROM articles") == [
        ("Final headline", "Second.", "https://img.example.com/x.jpg")]
    assert digest("send").exit_code == 0

    web.serve("/feed.xml", rss(Item("Corrected headline", "https://example.com/x", "x", "3.")))
    digest("collect")
    assert rows(site.database, "SELECT title FROM articles") == [("Final headline",)]
    assert "nothing to send" in digest("send").output


@pytest.mark.backends("sqlite")  # a full SQLite file (max_page_count)
def test_entries_that_cannot_be_stored_leave_no_validator_to_skip_them(
        site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(*(Item(f"Story {n}", f"https://example.com/{n}", f"s{n}",
                                      "Words on the harbour. " * 10) for n in range(40))),
              etag='"v1"')
    site_with(site, ("News", web.url("/feed.xml")), extra="[collect]\nfirst_run = 0\n")
    with Store(site.database) as store:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk fills up
        with pytest.raises(DigestError, match="cannot write"):
            jobs.collect(config.load(site.config), store)
    assert rows(site.database, "SELECT count(*) FROM articles") == [(0,)]
    assert rows(site.database, "SELECT etag FROM feeds") == [(None,)]
    assert "collected 40 new articles" in digest("collect").output
    assert "if-none-match" not in web.requests_to("/feed.xml")[-1].headers


def test_a_json_feed_served_as_text_is_still_read(site: Site, web: FeedServer) -> None:
    web.serve("/feed.json", '{"version": "https://jsonfeed.org/version/1.1", "title": "J", '
              '"items": [{"id": "1", "url": "https://example.com/1", "title": "Jay"}]}',
              content_type="text/plain")
    site_with(site, ("Json", web.url("/feed.json")))
    assert digest("collect").exit_code == 0
    assert rows(site.database, "SELECT title FROM articles") == [("Jay",)]


def test_json_that_is_not_a_feed_is_a_recorded_error(site: Site, web: FeedServer) -> None:
    web.serve("/api", '{"hello": "world"}', content_type="application/json")
    site_with(site, ("Api", web.url("/api")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/api')}: not a feed: JSON without a JSON Feed version" in result.output


def test_a_feed_moving_keeps_its_entries_identity(site: Site, web: FeedServer) -> None:
    # Bare guids would be resolved against the feed's URL by feedparser, and a move would
    # then make every entry look new.
    items = (Item("One", "https://example.com/1", "1"), Item("Two", "https://example.com/2", "2"))
    web.serve("/feed.xml", rss(*items).replace(' isPermaLink="false"', ""))
    site_with(site, ("News", web.url("/feed.xml")))
    digest("collect")
    web.serve("/v2/feed.xml", rss(*items).replace(' isPermaLink="false"', ""))
    web.redirect("/feed.xml", "/v2/feed.xml", status=301)
    assert "collected 0 new articles" in digest("collect").output
    assert rows(site.database, "SELECT key FROM articles ORDER BY key") == [("1",), ("2",)]


def test_the_example_config_documents_every_collect_key() -> None:
    example = (Path(__file__).parents[1] / "digest.example.toml").read_text()
    assert "[collect]" in example
    for item in dataclasses.fields(Collect):
        assert f"\n{item.name} =" in example, f"collect.{item.name} undocumented"


def test_collect_limits_below_one_are_refused(site: Site) -> None:
    site_with(site, extra="[collect]\nper_host = 0\n")
    result = digest("collect")
    assert result.exit_code == 2
    assert "collect.per_host must be at least 1" in result.output


def test_the_scheduler_logs_a_failing_feed_once_in_plain_words(site: Site,
                                                               web: FeedServer) -> None:
    web.serve("/a.xml", rss(Item("Eclipse tonight", "https://example.com/eclipse", "a-1")))
    site_with(site, ("Alpha", web.url("/a.xml")), ("Nowhere", "http://example.invalid/x.xml"))
    scheduler = Path(__file__).resolve().parents[1] / "scheduler.py"
    result = subprocess.run([sys.executable, str(scheduler), "--config", str(site.config),
                             "--once", "--log-format", "json"],
                            capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    told = [(line["level"], line["job"], line["message"]) for line in lines
            if "example.invalid" in json.dumps(line)]
    assert told == [("WARNING", "collect", "feed http://example.invalid/x.xml: cannot resolve "
                                           "host example.invalid")], result.stderr
    assert [line["failed"] for line in lines if line["message"] == "collected"] == [1]
