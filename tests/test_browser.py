"""The rendered digest as a subscriber's browser shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page
from support import Site, digest


@pytest.mark.parametrize("width", [320, 375, 600])
def test_sample_edition_fits_the_screen_without_horizontal_scrolling(
        site: Site, page: Page, artifacts: Path, width: int) -> None:
    digest("collect")
    assert digest("render", "--out", "edition.html").exit_code == 0
    page.set_viewport_size({"width": width, "height": 900})
    page.goto((site.root / "edition.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("[...document.images].every(i => i.hasAttribute('alt'))")
    page.screenshot(path=str(artifacts / f"edition-{width}.png"), full_page=True)
