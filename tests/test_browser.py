"""The rendered digest as a subscriber's browser shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page
from support import Site, digest


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
def test_wide_content_still_fits_the_screen_and_card_without_image_stays_a_card(
        site: Site, page: Page, artifacts: Path, width: int) -> None:
    from support import Item, rss

    feed = site.root / "wide.xml"
    feed.write_text(rss(
        Item("Donaudampfschifffahrtsgesellschaftskapitänsmützenfabrikarbeiter" * 2,
             "https://example.com/" + "long-path-" * 20, "w1",
             "https://example.com/" + "unbroken" * 30,
             extra='<media:thumbnail url="https://img.example.com/big.jpg" width="1600" '
                   'height="900"/>'),
        Item("No picture here", "https://example.com/plain", "w2", "Just words.")))
    site.feeds = [("Wide", str(feed))]
    site.write()
    open_next_edition(site, page, width)
    assert page.evaluate("[...document.images].every(i => i.hasAttribute('alt'))")
    # The image-less card keeps its accent rule: it looks meant, not broken.
    assert page.evaluate("getComputedStyle(document.querySelector('.noimg')).borderTopWidth"
                         ) == "4px"
    page.screenshot(path=str(artifacts / f"wide-{width}.png"), full_page=True)


def test_dark_mode_client_gets_light_text_on_dark_cards(
        site: Site, page: Page, artifacts: Path) -> None:
    digest("collect")
    assert digest("render", "--out", "edition.html").exit_code == 0
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 375, "height": 900})
    page.goto((site.root / "edition.html").as_uri())
    colours = page.evaluate("""() => {
        const look = s => getComputedStyle(document.querySelector(s));
        return [look('.card').backgroundColor, look('.hl').color, look('.tz').color,
                look('.body').backgroundColor];
    }""")
    assert colours == ["rgb(26, 32, 41)", "rgb(243, 244, 246)", "rgb(229, 231, 235)",
                       "rgb(15, 19, 24)"]
    page.screenshot(path=str(artifacts / "edition-dark-375.png"), full_page=True)
