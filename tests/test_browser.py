"""The rendered digest as a subscriber's browser shows it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page
from servers import FeedServer
from support import Item, Site, digest, picture, rss, twenty_stories

from digest import config as configuration
from digest import jobs
from digest.compose import Composer
from digest.records import Card

WHEN = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
# The twenty-story edition at 375 px on the layout before the lead and the compact cards (each
# story a full-width picture, a kicker and a button): `python bench/height.py --templates
# <those templates>`, which renders this same edition.
BEFORE_375 = 10_591


def open_next_edition(site: Site, page: Page, width: int) -> None:
    """Collect, render the next edition and open it at `width`: it must fit with no sideways
    scrolling."""
    digest("collect")
    assert digest("render", "--out", "edition.html").exit_code == 0
    page.set_viewport_size({"width": width, "height": 900})
    page.goto((site.root / "edition.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", [320, 375, 600])
def test_sample_edition_fits_the_screen_without_horizontal_scrolling(
        site: Site, page: Page, artifacts: Path, width: int) -> None:
    open_next_edition(site, page, width)
    assert page.evaluate("[...document.images].every(i => i.hasAttribute('alt'))")
    page.screenshot(path=str(artifacts / f"edition-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", [320, 375, 600])
def test_wide_content_still_fits_the_screen_and_a_lead_without_image_stays_a_card(
        site: Site, page: Page, artifacts: Path, width: int) -> None:
    feed = site.root / "wide.xml"
    feed.write_text(rss(
        Item("Donaudampfschifffahrtsgesellschaftskapitänsmützenfabrikarbeiter" * 2,
             "https://example.com/" + "long-path-" * 20, "w1",
             "https://example.com/" + "unbroken" * 30,
             extra='<media:thumbnail url="https://img.example.com/big.jpg" width="1600" '
                   'height="900"/>'),
        Item("No picture here", "https://example.com/plain", "w2", "Just words.",
             date="Fri, 27 Nov 2026 06:00:00 +0000")))
    site.feeds = [("Wide", str(feed))]
    site.write()
    open_next_edition(site, page, width)
    assert page.evaluate("[...document.images].every(i => i.hasAttribute('alt'))")
    # The picture-less lead keeps its accent rule: it looks meant, not broken.
    assert page.evaluate("getComputedStyle(document.querySelector('.lead.noimg'))"
                         ".borderTopWidth") == "4px"
    # The big picture of a compact card is a thumbnail, inside its card.
    box = page.evaluate("(() => { const r = document.querySelector('.th')"
                        ".getBoundingClientRect(); return [r.width, r.height, r.right]; })()")
    assert box[:2] == [96, 54] and box[2] <= width
    page.screenshot(path=str(artifacts / f"wide-{width}.png"), full_page=True)


@pytest.fixture
def pictures() -> Iterator[FeedServer]:
    """A loopback host with the twenty stories' pictures."""
    with FeedServer() as server:
        for number in range(20):
            server.serve(f"/img/{number}.svg", picture(800, 450),
                         content_type="image/svg+xml")
        yield server


def show(page: Page, site: Site, cards: list[Card], width: int, language: str = "en") -> None:
    """The edition of these cards, as anyone sees it, open at `width` with no sideways
    scrolling."""
    config = configuration.load(None)
    config = dataclasses.replace(config, newsletter=dataclasses.replace(
        config.newsletter, language=language))
    rendered = Composer(config).render(cards, 42, WHEN)
    path = site.root / "edition.html"
    path.write_text(jobs.as_anyone(config, rendered.html, rendered.marker), encoding="utf-8")
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(path.as_uri(), wait_until="load")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_twenty_stories_on_a_phone_are_at_most_half_as_tall_as_before(
        site: Site, page: Page, pictures: FeedServer, artifacts: Path) -> None:
    show(page, site, twenty_stories(lambda n: pictures.url(f"/img/{n}.svg")), 375)
    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"twenty stories at 375 px: {height} px tall (before: {BEFORE_375} px)")
    assert height <= BEFORE_375 / 2
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / "twenty-375.png"), full_page=True)


CARD_BOXES = """[...document.querySelectorAll('.lead, .item, img')].map(e => {
    const r = e.getBoundingClientRect(); return [e.className, r.x, r.y, r.width, r.height]; })"""


@pytest.mark.parametrize("width", [320, 375, 600])
def test_blocked_images_keep_the_layout_and_every_image_its_declared_size(
        site: Site, page: Page, pictures: FeedServer, artifacts: Path, width: int) -> None:
    cards = twenty_stories(lambda n: pictures.url(f"/img/{n}.svg"))
    show(page, site, cards, width)
    loaded = page.evaluate(CARD_BOXES)
    sizes = page.evaluate("""[...document.images].map(i => [i.className,
        i.getBoundingClientRect().width, i.getBoundingClientRect().height,
        +i.getAttribute('width'), +i.getAttribute('height')])""")
    assert len(sizes) == 20
    for kind, shown_width, shown_height, declared_width, declared_height in sizes:
        if kind == "th" or width == 600:  # the lead's picture is fluid below 600 px
            assert abs(shown_width - declared_width) < 1
            assert abs(shown_height - declared_height) < 1
        else:
            assert abs(shown_height / shown_width - declared_height / declared_width) < 0.01
    page.route("**/img/*", lambda route: route.abort())
    page.reload(wait_until="load")
    assert page.evaluate("[...document.images].every(i => i.naturalWidth === 0)")
    blocked = page.evaluate(CARD_BOXES)
    # The same boxes, but for the lead's height rounded to whole pixels in its attributes.
    assert [kind for kind, *_ in blocked] == [kind for kind, *_ in loaded]
    assert all(abs(a - b) < 1 for one, two in zip(blocked, loaded, strict=True)
               for a, b in zip(one[1:], two[1:], strict=True))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(artifacts / f"blocked-{width}.png"), full_page=True)


def test_right_to_left_stories_align_right_whatever_the_edition_language(
        site: Site, page: Page, artifacts: Path) -> None:
    hebrew = Card(1, "שלום עולם", "https://example.il/shalom", "טקסט בעברית ארוך מספיק", None,
                  WHEN, "News")
    english = Card(2, "Harbour opens", "https://example.com/harbour", "Boats return.", None,
                   WHEN, "News")
    ways = """[...document.querySelectorAll('.lead, .item')].map(e => [
        e.getAttribute('dir'), e.getAttribute('align'), getComputedStyle(e).direction,
        getComputedStyle(e.querySelector('h3')).textAlign])"""
    show(page, site, [hebrew, english], 375)
    assert page.evaluate(ways) == [["rtl", "right", "rtl", "right"],
                                   ["ltr", "left", "ltr", "left"]]
    show(page, site, [english, hebrew], 375, language="ar")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    assert page.evaluate(ways) == [["ltr", "left", "ltr", "left"],
                                   ["rtl", "right", "rtl", "right"]]
    assert page.evaluate("getComputedStyle(document.querySelector('.mast')).textAlign") == "right"
    page.screenshot(path=str(artifacts / "rtl-ar-375.png"), full_page=True)


def luminance(rgb: str) -> float:
    """WCAG's relative luminance of a computed "rgb(r, g, b)" colour."""
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1:-1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_dark_mode_client_gets_light_text_on_dark_cards_under_a_masthead_apart(
        site: Site, page: Page, artifacts: Path) -> None:
    digest("collect")
    assert digest("render", "--out", "edition.html").exit_code == 0
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 375, "height": 900})
    page.goto((site.root / "edition.html").as_uri())
    colours = page.evaluate("""() => {
        const look = s => getComputedStyle(document.querySelector(s));
        return [look('.card').backgroundColor, look('.hl').color, look('.tz').color,
                look('.body').backgroundColor, look('.mast').backgroundColor];
    }""")
    assert colours[:4] == ["rgb(26, 32, 41)", "rgb(243, 244, 246)", "rgb(229, 231, 235)",
                           "rgb(15, 19, 24)"]
    # The masthead is a panel of its own, not a patch of the page's near-black (WCAG's
    # contrast ratio of the two surfaces: 1.00 before, 1.80 now).
    masthead, body = luminance(colours[4]), luminance(colours[3])
    assert (masthead + 0.05) / (body + 0.05) >= 1.5
    page.screenshot(path=str(artifacts / "edition-dark-375.png"), full_page=True)
