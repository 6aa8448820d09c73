"""Every hand-written fixture feed, collected over HTTP, gives exactly these cards; and none of
the hostile markup in them reaches the rendered email."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from feed_fixtures import FIXTURES, HOSTILE
from hostile import hostile_markup_in
from servers import FeedServer
from support import Item, Site, digest, rows, rss

LINE = "今日は晴れです。"
# (key, title, link, teaser, image url, width, height, alt, published); "{base}" is the server.
EXPECTED: dict[str, list[tuple]] = {
    "rss20": [("h-1", "Harbour & quay", "https://example.com/harbour",
               "Boats return at dawn. Crowds cheer.", "https://img.example.com/h.jpg", 640, 360,
               "", "2026-11-26T08:00:00+00:00")],
    "rss091": [("https://example.com/old", "Old school", "https://example.com/old",
                "Plain words.", None, None, None, None, None)],
    "rss10": [("https://example.com/rdf", "Resource", "https://example.com/rdf", "Described.",
               None, None, None, None, "2026-11-25T08:30:00+00:00")],
    "atom10": [("urn:entry:1", "Relative paths", "https://example.org/blog/posts/one.html",
                "See here.", "https://example.org/blog/img/one.png", 300, 200, "A dial",
                "2026-11-26T10:00:00+00:00")],
    "atom03": [("tag:example.com,2026:a03", "Early Atom", "https://example.com/a03",
                "Summed up.", None, None, None, None, "2026-11-20T00:00:00+00:00")],
    "json11": [("j1", "Jason", "https://example.com/j1", "Hello JSON world.",
                "https://img.example.com/j1.png", None, None, "",
                "2026-11-24T10:00:00+00:00"),
               ("2", "No title here, only some text <b>.", "{base}/j2",
                "No title here, only some text <b>.", "https://img.example.com/j2.jpg", None,
                None, "", None)],
    "json10": [("k1", "Kay", "https://example.com/k1", "Short & sweet.", None, None, None, None,
                "2026-11-23T00:00:00+00:00")],
    "bozo": [("https://example.com/salt", "Salt & pepper", "https://example.com/salt",
              "Seasoned well", None, None, None, None, None)],
    "latin1": [("https://example.com/cafe", "Café crème", "https://example.com/cafe",
                "Naïve façade", None, None, None, None, None)],
    "mislabelled": [("https://example.com/quotes", "Smart “quotes”",
                     "https://example.com/quotes", "", None, None, None, None, None)],
    "bom": [("https://example.com/bom", "Byte order ✓", "https://example.com/bom", "", None,
             None, None, None, None)],
    "cdata": [("https://example.com/tj", "Tom & Jerry <3", "https://example.com/tj",
               "Café & crème — 😀 done", None, None, None, None, None)],
    "world": [("jp", "東京の天気", "https://example.jp/tenki", LINE * 25, None, None, None,
               None, None),
              ("he", "שלום עולם", "https://example.il/shalom", "טקסט בעברית", None, None, None,
               None, None),
              ("emoji", "Party 🎉👩\u200d👩\u200d👧", "https://example.com/emoji", "Fun 🎈", None,
               None, None, None, None)],
    "identity": [("https://example.com/linked", "Linked only", "https://example.com/linked", "",
                  None, None, None, None, None),
                 ("sha256:79b955e94df570d9cb7ece824eb1cd19b2a27dc77266748dc515a087bb19502f",
                  "Nothing but a title", None, "", None, None, None, None,
                  "2026-11-25T10:00:00+00:00"),
                 ("twin", "First of twins", "https://example.com/twin-a", "", None, None, None,
                  None, None),
                 ("home-1", "Home one", "https://example.com/", "", None, None, None, None,
                  None),
                 ("home-2", "Home two", "https://example.com/", "", None, None, None, None,
                  None)],
    "images": [("i1", "Content image", "https://example.com/i1", "",
                "https://img.example.com/i1.jpg", 800, None, "", None),
               ("i2", "Enclosure", "https://example.com/i2", "", "https://img.example.com/i2.png",
                None, None, "", None),
               ("i3", "Inline", "https://example.com/i3", "Text.",
                "https://example.com/pics/i3.webp", None, None, "Three & more", None),
               ("i4", "Script image", "https://example.com/i4", "", None, None, None, None,
                None)],
    "hostile": [("bad-1", "Click me", None, "Read this now. vbdEnd.", "{base}/x", None, None,
                 "", None),
                ("bad-2", "Style attack", "https://example.com/style%22onclick=%22x",
                 "Read this now. vbdEnd.", "https://example.com/x", None, None, "",
                 None)],
    "wordpress": [("wp", "WP post", "https://blog.example.com/wp", "Real words here.", None,
                   None, None, None, None),
                  ("wp2", "An entry without a headline still reads well enough to be listed "
                   "among the…", "https://blog.example.com/untitled", "An entry without a "
                   "headline still reads well enough to be listed among the others", None,
                   None, None, None, None)],
    "dates": [("https://example.com/future", "From the future", "https://example.com/future",
               "", None, None, None, None, "{seen}"),
              ("https://example.com/upd", "Updated only", "https://example.com/upd", "", None,
               None, None, None, "2026-11-22T07:00:00+00:00"),
              ("https://example.com/undated", "Undated", "https://example.com/undated", "",
               None, None, None, None, None)],
}


@pytest.fixture
def collected(site: Site, web: FeedServer) -> tuple[Site, str]:
    for fixture in FIXTURES:
        web.serve(f"/{fixture.name}.xml", fixture.body, content_type=fixture.content_type)
    site.feeds = [(fixture.name, web.url(f"/{fixture.name}.xml")) for fixture in FIXTURES]
    site.extra = "[collect]\nfirst_run = 0\n"
    roomy(site)
    result = digest("collect")
    assert result.exit_code == 0, result.output
    return site, web.url("/").rstrip("/")


def roomy(site: Site) -> None:
    """The site's configuration, with room for every card in one edition."""
    config = site.write()
    config.write_text(config.read_text().replace("[newsletter]\n",
                                                 "[newsletter]\nmax_articles = 100000\n"))


def test_every_fixture_is_covered() -> None:
    assert set(EXPECTED) == {fixture.name for fixture in FIXTURES}


def test_each_fixture_gives_exactly_its_cards(collected: tuple[Site, str]) -> None:
    site, base = collected
    for fixture in FIXTURES:
        found = rows(site.database, "SELECT key, title, link, teaser, image_url, image_width, "
                     "image_height, image_alt, published, collected_at FROM articles JOIN feeds "
                     "ON feeds.id = feed_id WHERE feeds.name = ? ORDER BY articles.id",
                     fixture.name)
        expected = [tuple(value.format(base=base, seen=row[-1]) if isinstance(value, str)
                          else value for value in card)
                    for card, row in zip(EXPECTED[fixture.name], found, strict=False)]
        assert [row[:-1] for row in found] == expected, fixture.name


def test_an_unsafe_link_leaves_the_headline_unlinked(collected: tuple[Site, str]) -> None:
    html = render(collected[0])
    assert "Click me</h3>" in html or re.search(r">\s*Click me\s*</h3>", html)
    assert not re.search(r"<a [^>]*>\s*Click me", html)


def render(site: Site) -> str:
    rows(site.database, "UPDATE articles SET published = NULL")  # keep the order stable
    assert digest("render", "--out", "out.html").exit_code == 0
    return Path("out.html").read_text(encoding="utf-8")


def test_no_hostile_markup_survives_into_the_rendered_email(
        collected: tuple[Site, str]) -> None:
    page = render(collected[0])
    assert "Style attack" in page and "Read this now." in page  # the hostile cards are there
    assert hostile_markup_in(page) == []
    for needle in ("alert(", "steal()", "evil.example", "msgbox", "display:none}"):
        assert needle not in page, needle
    text = Path("out.txt")
    assert digest("render", "--out", str(text), "--text").exit_code == 0
    assert "alert(" not in text.read_text(encoding="utf-8")


def test_the_hostile_fixture_is_hostile() -> None:
    """The checker finds what it is meant to find, so a clean result means something."""
    page = f"<html><head></head><body>{HOSTILE}</body></html>"
    problems = hostile_markup_in(page)
    for expected in ("<script>", "<iframe>", "<form>", "<svg>", "onclick=", "onload=",
                     "javascript:alert(1)", "<meta> in body", "<style> in body"):
        assert expected in problems, expected


@pytest.mark.parametrize("pixel", [
    'width="0" height="0"', 'width="1.0" height="1.0"', 'width="1px" height="1px"',
    'style="width:1px;height:1px"', 'style="width: 0; height: 0 !important" width="600"',
    'height="1"'])
def test_a_tracking_pixel_is_never_the_cards_picture(site: Site, web: FeedServer,
                                                     pixel: str) -> None:
    web.serve("/feed.xml", rss(Item(
        "Pixel", "https://example.com/p", "p",
        f'<p><img src="https://track.example.com/open.gif" {pixel}>Story.</p>'
        '<img src="https://img.example.com/photo.jpg" width="640.0" height="360">')))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.write()
    assert digest("collect").exit_code == 0
    assert rows(site.database, "SELECT image_url, image_width, image_height FROM articles") == [
        ("https://img.example.com/photo.jpg", 640, 360)]


# The Guardian's descriptions: a standfirst paragraph, then a list of links to related
# stories, then "Continue reading…". Flattened, they read "…about events of January 6
# Ivanka Trump testified…".
STANDFIRST = ("Former president’s daughter tells the committee she accepted the attorney "
              "general’s view that there was no evidence of fraud, in testimony about events "
              "of January 6")
GUARDIAN = (f"<p>{STANDFIRST}</p><ul><li><p><a href=\"https://example.com/live\">Ivanka "
            "Trump testified she accepted Barr’s view – live</a></p></li><li><p><a "
            "href=\"https://example.com/ukraine\">‘Barbarians’: Russian troops accused at the "
            "UN</a></p></li></ul> <a href=\"https://example.com/more\">Continue reading...</a>")


@pytest.mark.parametrize(("summary", "teaser"), [
    (GUARDIAN, STANDFIRST),
    # A short first paragraph (a byline) is joined by the next; the links stay out.
    ("<p>By Ann Lee</p><p>Boats return at dawn after the winter.</p><ul><li><a "
     "href='https://example.com/r'>Related: the winter</a></li></ul>",
     "By Ann Lee · Boats return at dawn after the winter."),
    # Headings and captions are not the story; a list that is not links is, when it is all.
    ("<h2>Key points</h2><figure><figcaption>Photo: the quay</figcaption></figure>"
     "<ul><li>Ferries return</li><li>The market opens later</li></ul>",
     "Ferries return · The market opens later"),
    # Two breaks end a paragraph as a </p> does.
    ("Council meets tonight.<br><br>Tram plans are on the agenda, with the ferry times.",
     "Council meets tonight. Tram plans are on the agenda, with the ferry times."),
])
def test_a_teaser_keeps_the_feeds_structure(site: Site, web: FeedServer, summary: str,
                                            teaser: str) -> None:
    web.serve("/feed.xml", rss(Item("Story", "https://example.com/s", "s", summary)))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.write()
    assert digest("collect").exit_code == 0
    assert rows(site.database, "SELECT teaser FROM articles") == [(teaser,)]


LONG_FIRST = ("The harbour reopened on Monday after a winter of repairs. Fishing boats that "
              "had waited in the river for months came back on the morning tide. Crowds "
              "lined the quay, and the mayor spoke of a new start for the old town and its "
              "market, which now opens two hours later than it used to")


def test_a_cut_teaser_ends_at_a_sentence_when_one_ends_near_the_limit_else_at_a_word() -> None:
    from digest.cards import clip

    assert clip(LONG_FIRST, 200) == ("The harbour reopened on Monday after a winter of "
                                     "repairs. Fishing boats that had waited in the river for "
                                     "months came back on the morning tide.")
    # No sentence ends late enough: a word, then "…", never an opening quote or bracket.
    assert clip("le maire a dit « un nouveau départ » pour la ville", 16) == "le maire a dit…"
    assert clip("今日は「東京の天気」です", 4) == "今日は…"
    assert clip("The U.S. and Mr. Smith agreed on a plan for the harbour and its market "
                "again", 60) == "The U.S. and Mr. Smith agreed on a plan for the harbour and…"
