"""Feeds nobody here wrote: feedparser's own test suite and the W3C feed validator's cases,
each collected and rendered through the same path as a configured feed. No traceback, no
hang, no hostile markup in the email, and a card for every entry feedparser finds."""

from __future__ import annotations

import re
from pathlib import Path

import feedparser
import pytest
from hostile import hostile_markup_in, markup
from support import SHARED, Site, digest, rows

from digest.store import Store

CORPORA = SHARED / "corpora"
FOLDERS = ("feedparser", "conformance/feedvalidator")
BATCH = 400  # feeds per store and per rendered edition: big enough to be quick, small
# enough that one edition stays a sane size for premailer

pytestmark = pytest.mark.skipif(not CORPORA.is_dir(),
                                reason=f"the shared corpora are not beside this clone "
                                       f"({CORPORA})")


def corpus() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (CORPORA / folder).rglob("*")
                  if path.is_file())


def expected_entries(path: Path) -> int:
    """Entries feedparser finds in the file, counting those with the same identity once (the
    entry's id, else its link, else its title, date and link together): a feed repeating a
    guid means one entry."""
    parsed = feedparser.parse(path.read_bytes(),
                              response_headers={"content-type": "application/xml"})
    seen, count = set(), 0
    for entry in parsed.entries:
        identity = entry.get("id") or entry.get("link") or (
            entry.get("title", ""), entry.get("published", "") or entry.get("updated", ""))
        if identity in seen:
            continue
        seen.add(identity)
        count += 1
    return count


def batches() -> list[list[Path]]:
    files = corpus()
    return [files[start:start + BATCH] for start in range(0, len(files), BATCH)]


def test_the_corpora_are_all_there() -> None:
    assert len(corpus()) == 2107 + 623


@pytest.mark.parametrize("batch", range(len(batches()) if CORPORA.is_dir() else 0))
def test_every_corpus_feed_collects_and_renders_cleanly(batch: int, site: Site) -> None:
    files = batches()[batch]
    site.feeds = [(str(path.relative_to(CORPORA)), str(path)) for path in files]
    site.extra = "[collect]\nfirst_run = 0\n"
    config = site.write()
    config.write_text(config.read_text().replace("[newsletter]\n",
                                                 "[newsletter]\nmax_articles = 1000000\n"))
    digest("collect")  # some corpus feeds are broken on purpose: exit status 1

    found = dict(rows(site.database, "SELECT feeds.url, count(articles.id) FROM feeds LEFT "
                      "JOIN articles ON articles.feed_id = feeds.id GROUP BY feeds.id"))
    missing = {}
    for path in files:
        wanted = expected_entries(path)
        got = found[str(path)]
        # feedparser 6 reads no JSON Feed; we do, so there we find more.
        if got != wanted and not (path.suffix == ".json" and got > wanted):
            missing[str(path.relative_to(CORPORA))] = (wanted, got)
    assert missing == {}, "feed: (entries feedparser finds, articles collected)"

    with Store(site.database) as store:
        _, claimable = store.unmailed([str(path) for path in files], 1_000_000)
    assert digest("render", "--out", "edition.html").exit_code == 0
    page = Path("edition.html").read_text(encoding="utf-8") if claimable else ""
    assert hostile_markup_in(page) == []
    # The clipping-size guard may leave cards for the web version: "N more stories".
    more = re.search(r"(\d+) more stories", page)
    assert markup(page).tags["h3"] + (int(more[1]) if more else 0) == claimable
