"""Feed filters and caps end to end: feeds served over loopback HTTP, collected into a real
SQLite file, editions made by `digest send`, counted by `digest status` (the rules one by
one, over every input hypothesis finds: test_decide.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from servers import FeedServer
from support import Item, Site, digest, rows, rss

from digest import config, jobs
from digest.store import Store

pytestmark = pytest.mark.backends

# Collect is handed this moment, so that max_age never depends on the day the tests run.
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def date(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%a, %d %b %Y %H:%M:%S +0000")


def setup(site: Site, web: FeedServer, alpha: str, beta: str = "") -> None:
    """Alpha (filtered as `alpha` says) and Beta (as `beta` says), every entry new news."""
    site.extra = ("[collect]\nfirst_run = 0\n"
                  f'[[feeds]]\nname = "Alpha"\nurl = "{web.url("/a.xml")}"\nenrich = false\n'
                  f"{alpha}\n"
                  f'[[feeds]]\nname = "Beta"\nurl = "{web.url("/b.xml")}"\nenrich = false\n'
                  f"{beta}\n")
    site.write()
    site.subscribers("email,name\nann@example.com,Ann\n")


def collect(site: Site) -> None:
    with Store(site.database) as store:
        collected = jobs.collect(config.load(site.config), store, clock=lambda: NOW)
    assert not collected.failed


def editions(site: Site) -> list[list[str]]:
    """Each edition's stories, in the order it shows them."""
    found: dict[int, list[str]] = {}
    for edition, title in rows(site.database,
                               "SELECT edition_id, title FROM edition_articles JOIN articles "
                               "ON articles.id = article_id ORDER BY edition_id, position"):
        found.setdefault(edition, []).append(title)
    return list(found.values())


def held(name: str) -> dict[str, int]:
    report = json.loads(digest("status", "--json").stdout)
    return next(feed["held"] for feed in report["feeds"] if feed["name"] == name)


ALPHA = (Item("Rust 2.0 is out", "https://example.com/rust", "a1", date=date(1)),
         # Matched by its category alone.
         Item("A garden of snakes", "https://example.com/garden", "a2", date=date(1),
              extra="<category>PYTHON</category>"),
         Item("Rust jobs", "https://example.com/jobs", "a3", "Sponsored by Acme", date=date(1)),
         Item("Cooking tonight", "https://example.com/cook", "a4", date=date(1)),
         Item("Python in 1991", "https://example.com/1991", "a5", date=date(30)),
         # Undated: as old as the moment it is first seen, so never too old.
         Item("Python without a date", "https://example.com/undated", "a6", date=""))
RULES = 'include = ["rust", "\\\\bpython\\\\b"]\nexclude = ["^sponsored"]\nmax_age = "7d"'


def test_filters_and_caps_choose_each_editions_stories(site: Site, web: FeedServer) -> None:
    web.serve("/a.xml", rss(*ALPHA))
    web.serve("/b.xml", rss(*(Item(f"Beta {n}", f"https://example.org/{n}", f"b{n}",
                                   date=date(n / 24)) for n in range(5))))
    setup(site, web, RULES, "max_per_edition = 2")
    collect(site)
    for _ in range(3):
        assert digest("send").exit_code == 0
    assert "nothing to send" in digest("send").output
    # Beta's newest two in each edition, the rest rolled on; Alpha only what its rules pass.
    assert editions(site) == [
        # Undated, Alpha's newest: dated when it was first seen.
        ["Python without a date", "Rust 2.0 is out", "A garden of snakes", "Beta 0", "Beta 1"],
        ["Beta 2", "Beta 3"], ["Beta 4"]]
    assert held("Alpha") == {"include": 1, "exclude": 1, "max_age": 1}
    assert held("Beta") == {"include": 0, "exclude": 0, "max_age": 0}
    said = digest("status").output
    assert "held back, never mailed: 1 by include, 1 by exclude, 1 by max_age" in said


def test_a_rule_changed_later_never_resurrects_a_story(site: Site, web: FeedServer) -> None:
    web.serve("/a.xml", rss(*ALPHA))
    web.serve("/b.xml", rss())
    setup(site, web, RULES)
    collect(site)
    assert digest("send").exit_code == 0
    first = editions(site)

    # The rules turned around: what they held stays held, what went out stays in its edition.
    setup(site, web, 'exclude = ["rust", "python"]')
    web.serve("/a.xml", rss(*ALPHA, Item("Rust 3.0", "https://example.com/rust3", "a7",
                                         date=date(0)),
                            Item("Weather", "https://example.com/weather", "a8", date=date(0))))
    collect(site)
    assert digest("send").exit_code == 0
    assert editions(site) == [*first, ["Weather"]]
    assert held("Alpha") == {"include": 1, "exclude": 2, "max_age": 1}
    assert rows(site.database, "SELECT title, held FROM articles WHERE held IS NOT NULL "
                               "ORDER BY id") == [
        ("Rust jobs", "exclude"), ("Cooking tonight", "include"), ("Python in 1991", "max_age"),
        ("Rust 3.0", "exclude")]


def test_a_bad_pattern_is_one_line_naming_the_feed_and_the_key(
        site: Site, web: FeedServer) -> None:
    setup(site, web, "", 'exclude = ["fine", "(unclosed"]')
    result = digest("collect")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {site.config}: feeds[2] ({web.url('/b.xml')}): exclude[2] '(unclosed' is "
        "not a regular expression: missing ), unterminated subpattern at position 0"]


def test_a_cap_or_an_age_that_makes_no_sense_is_refused(site: Site, web: FeedServer) -> None:
    setup(site, web, "max_per_edition = 0")
    result = digest("collect")
    assert (result.exit_code, "feeds[1]" in result.output,
            "max_per_edition must be at least 1" in result.output) == (2, True, True)
    setup(site, web, 'max_age = "a week"')
    result = digest("collect")
    assert result.exit_code == 2
    assert "feeds[1]" in result.output and "max_age must be a duration" in result.output


def test_categories_of_atom_and_json_feeds_are_matched(site: Site, web: FeedServer) -> None:
    web.serve("/a.xml", '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">'
              "<title>A</title><id>urn:a</id><updated>2026-11-26T09:00:00Z</updated>"
              + "".join(f"<entry><id>urn:{n}</id><title>Entry {n}</title>"
                        f'<link href="https://example.com/{n}"/>'
                        f"<updated>2026-11-26T09:00:00Z</updated>{category}</entry>"
                        for n, category in (("term", '<category term="astro"/>'),
                                            ("label", '<category term="x1" label="Astro &amp; '
                                                      'space"/>'),
                                            ("none", '<category term="gardening"/>'))),
              content_type="application/atom+xml")
    web.serve("/b.xml", json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "B",
                                    "items": [{"id": "1", "url": "https://example.org/1",
                                               "title": "Tagged", "tags": ["Astro"]},
                                              {"id": "2", "url": "https://example.org/2",
                                               "title": "Untagged"}]}),
              content_type="application/feed+json")
    setup(site, web, 'include = ["^astro"]', 'include = ["^astro"]')
    collect(site)
    assert rows(site.database, "SELECT title FROM articles WHERE eligible ORDER BY title") == [
        ("Entry label",), ("Entry term",), ("Tagged",)]
