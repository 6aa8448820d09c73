"""A picture for every story: feeds without pictures, article pages on a loopback site that
name theirs (Open Graph, Twitter, JSON-LD), and pages that fail in every way a page can."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pictures import JPEG, images_in, ld_json, page, picture
from PIL import Image
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest import config, jobs
from digest.store import Store

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\n"
HOSTED = "https://news.example.com/img/"


def html(path: str, *parts: str) -> tuple[str, str]:
    return path, page(*parts)


def site_of_articles(web: FeedServer) -> dict[str, str]:
    """Pages that name their picture in each of the ways pages do, their pictures, and a
    feed that names none. Returns each story's title and the picture it should get."""
    web.serve("/pics/og.jpg", picture((1600, 900)), content_type=JPEG)
    web.serve("/pics/tw.png", picture((1000, 1000), "PNG"), content_type="image/png")
    web.serve("/pics/ld.webp", picture((1200, 800), "WEBP"), content_type="image/webp")
    web.serve("/pics/graph.gif", picture((800, 600), "GIF"), content_type="image/gif")
    web.serve("/pics/feed.jpg", picture((900, 500)), content_type=JPEG)
    for other in ("/pics/author.jpg", "/pics/logo.png"):
        web.serve(other, picture((300, 300)), content_type=JPEG)
    pages = [
        html("/story/og", '<meta property="og:image" content="/pics/og.jpg">'
             '<meta property="og:image:width" content="1600">'
             '<meta property="og:image:height" content="900">'
             '<meta property="og:description" content="What the page says &amp; shows.">'),
        html("/story/twitter", f'<meta name="twitter:image" content="{web.url("/pics/tw.png")}">'),
        # A news article's own image; its author's portrait is not the story's picture.
        html("/story/ld", "", ld_json({
            "@context": "https://schema.org", "@type": "NewsArticle",
            "author": {"@type": "Person", "image": web.url("/pics/author.jpg")},
            "image": [{"@type": "ImageObject", "url": web.url("/pics/ld.webp"),
                       "width": 1200, "height": 800}]})),
        # Yoast's @graph: references by @id, the publisher's logo listed first.
        html("/story/graph", ld_json({"@context": "https://schema.org", "@graph": [
            {"@type": "Organization", "@id": "#org", "image": web.url("/pics/logo.png")},
            {"@type": "WebPage", "@id": "#page", "primaryImageOfPage": {"@id": "#primary"}},
            {"@type": "ImageObject", "@id": "#primary", "contentUrl": "/pics/graph.gif",
             "width": 800, "height": 600},
            {"@type": "Article", "isPartOf": {"@id": "#page"}, "image": {"@id": "#primary"}},
        ]})),
        # The feed gives a picture but no teaser: the page gives the teaser, not its picture.
        html("/story/teaser", '<meta property="og:image" content="/pics/og.jpg">'
             '<meta name="description" content="A teaser from the page.">'),
    ]
    for path, body in pages:
        web.serve(path, body, content_type="text/html; charset=utf-8")
    feed_picture = f'<media:thumbnail url="{web.url("/pics/feed.jpg")}" width="900" height="500"/>'
    web.serve("/feed.xml", rss(
        Item("Open Graph", web.url("/story/og"), "og"),
        Item("Twitter card", web.url("/story/twitter"), "tw", "Its own teaser."),
        Item("Linked data", web.url("/story/ld"), "ld", "Its own teaser."),
        Item("Graph", web.url("/story/graph"), "graph", "Its own teaser."),
        Item("Feed picture", web.url("/story/teaser"), "teaser", extra=feed_picture)))
    return {"Open Graph": web.url("/pics/og.jpg"), "Twitter card": web.url("/pics/tw.png"),
            "Linked data": web.url("/pics/ld.webp"), "Graph": web.url("/pics/graph.gif"),
            "Feed picture": web.url("/pics/feed.jpg")}


def configure(site: Site, web: FeedServer, extra: str = "", hosting: bool = True) -> None:
    site.feeds = [("News", web.url("/feed.xml"))]
    site.enrich, site.hosting = True, hosting
    site.extra = "[collect]\nfirst_run = 0\n" + extra
    site.write()
    site.subscribers(SUBSCRIBERS)


def rendered() -> str:
    result = digest("render", "--out", "next.html")
    assert result.exit_code == 0, result.output
    return Path("next.html").read_text(encoding="utf-8")


def test_every_card_gets_its_picture_from_its_page(site: Site, web: FeedServer) -> None:
    expected = site_of_articles(web)
    configure(site, web, hosting=False)
    assert digest("collect").exit_code == 0
    markup = rendered()
    found = [tag["src"] for tag in images_in(markup)]
    assert sorted(found) == sorted(expected.values())
    assert web.requests_to("/pics/author.jpg") == web.requests_to("/pics/logo.png") == []
    # The page's description fills the teaser the feed left empty; a feed's own stays.
    assert "What the page says &amp; shows." in markup and "A teaser from the page." in markup
    assert markup.count("Its own teaser.") == 3
    # The page's size for its picture reaches the mail: 1600×900, shown in its proportions.
    og = next(tag for tag in images_in(markup) if tag["src"] == expected["Open Graph"])
    assert og["width"] and og["height"]
    assert round(int(og["width"]) * 900 / 1600) == int(og["height"])


def test_hosted_every_card_shows_our_copy_with_its_size(site: Site, web: FeedServer) -> None:
    site_of_articles(web)
    configure(site, web)
    assert digest("collect").exit_code == 0
    tags = images_in(rendered())
    assert len(tags) == 5
    folder = site.root / "state" / "images"
    for tag in tags:
        assert tag["src"].startswith(HOSTED)
        with Image.open(folder / tag["src"].removeprefix(HOSTED)) as copy:
            assert copy.format == "JPEG"
            assert abs(copy.width / copy.height - int(tag["width"]) / int(tag["height"])) < 0.01
        # The square cut is there for the compact cards too.
    assert len(list(folder.iterdir())) == 10
    assert rows(site.database, "SELECT DISTINCT fate FROM images") == [("hosted",)]


def test_a_page_that_fails_leaves_its_card_without_a_picture_and_the_send_goes_on(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    web.serve("/pics/fine.jpg", picture(), content_type=JPEG)
    og = '<meta property="og:image" content="{}">'
    with FeedServer("127.0.0.2") as inside:
        inside.serve("/secret.jpg", picture(), content_type=JPEG)
        web.serve("/story/fine", page(og.format("/pics/fine.jpg")), content_type="text/html")
        web.serve("/story/slow", page(og.format("/pics/fine.jpg")), content_type="text/html",
                  delay=4)
        web.serve("/story/huge", page(body="<p>words</p>" * 250_000 + og.format(
            "/pics/fine.jpg")), content_type="text/html")
        web.serve("/story/pdf", b"%PDF-1.4 " + og.format("/pics/fine.jpg").encode(),
                  content_type="application/pdf")
        web.serve("/story/inside", page(og.format(inside.url("/secret.jpg"))),
                  content_type="text/html")
        stories = ("fine", "slow", "huge", "pdf", "inside")
        web.serve("/feed.xml", rss(*(Item(f"Story {name}", web.url(f"/story/{name}"), name,
                                          "Words.") for name in stories)))
        site.smtp_port = smtp.port
        configure(site, web, "timeout = 1\ndeadline = 2\n")
        collected = digest("collect")
        assert collected.exit_code == 0, collected.output  # the feed itself is fine
        sent = digest("send")
        assert sent.exit_code == 0, sent.output
        assert inside.requests == []  # never reached, though it answers
    [mail] = smtp.messages
    markup = mail.message.get_body(("html",)).get_content()
    assert all(f"Story {name}" in markup for name in stories)
    [shown] = images_in(markup)
    assert shown["src"].startswith(HOSTED)
    problems = dict(rows(site.database, "SELECT link, problem FROM pages WHERE problem "
                                        "IS NOT NULL"))
    assert problems == {
        web.url("/story/slow"): "timed out (no answer within 1s)",
        web.url("/story/huge"): "larger than 2,097,152 bytes",
        web.url("/story/pdf"): "not an HTML page but application/pdf"}
    assert rows(site.database, "SELECT url, fate, problem FROM images ORDER BY fate DESC") == [
        (web.url("/pics/fine.jpg"), "hosted", ""),
        (inside.url("/secret.jpg"), "dropped", "refused: 127.0.0.2 is a loopback address")]


def test_a_feed_can_say_not_to_read_its_pages(site: Site, web: FeedServer) -> None:
    web.serve("/story", page('<meta property="og:image" content="/pic.jpg">'),
              content_type="text/html")
    web.serve("/feed.xml", rss(Item("Story", web.url("/story"), "s")))
    site.extra = (f"[[feeds]]\nname = \"News\"\nurl = \"{web.url('/feed.xml')}\"\n"
                  "enrich = false\n")
    site.write()
    site.subscribers(SUBSCRIBERS)
    assert digest("collect").exit_code == 0
    assert web.requests_to("/story") == []
    assert images_in(rendered()) == []


@pytest.fixture
def one_story(site: Site, web: FeedServer) -> config.Config:
    web.serve("/pic.jpg", picture(), content_type=JPEG)
    web.serve("/feed.xml", rss(Item("Story", web.url("/story"), "s")))
    configure(site, web, hosting=False)
    return config.load(site.config)


def collect_at(settings: config.Config, *moments: datetime) -> None:
    with Store(settings.paths.database) as store:
        for moment in moments:
            jobs.collect(settings, store, clock=lambda moment=moment: moment)


MORNING = datetime(2026, 11, 26, 8, tzinfo=UTC)


def test_a_page_is_read_once_and_a_day_later_asked_only_if_changed(
        one_story: config.Config, web: FeedServer) -> None:
    web.serve("/story", page('<meta property="og:image" content="/pic.jpg">'),
              content_type="text/html", etag='"v1"')
    collect_at(one_story, MORNING, MORNING + timedelta(hours=1))
    assert len(web.requests_to("/story")) == 1
    collect_at(one_story, MORNING + timedelta(days=1, hours=2))
    again = web.requests_to("/story")
    assert len(again) == 2 and again[1].headers["if-none-match"] == '"v1"'  # a 304
    assert [tag["src"] for tag in images_in(rendered())] == [web.url("/pic.jpg")]


def test_a_failing_page_is_tried_three_times_then_left(one_story: config.Config,
                                                       web: FeedServer) -> None:
    web.serve("/story", "down", status=503, content_type="text/plain")
    collect_at(one_story, *(MORNING + timedelta(hours=hour) for hour in range(5)))
    assert len(web.requests_to("/story")) == 3
    assert images_in(rendered()) == []
