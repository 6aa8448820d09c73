"""How tall an edition is on a phone: the length a reader scrolls through.

    python bench/height.py [--templates DIR] [--width 375 ...]

Renders the twenty-story edition the browser tests measure (three sections, a picture of
800×450 on every card, 200-character teasers) through the templates in DIR (default: the
bundled ones), opens it in headless Chromium (/usr/bin/chromium) at each width with its
pictures served from loopback, and prints the page's height in CSS pixels. To compare with an
older layout, extract its templates first, e.g.
`git archive <commit> templates | tar -x -C /tmp/old` and pass `--templates /tmp/old/templates`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

# The edition and the picture server are the browser tests' own, so both measure the same.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from playwright.sync_api import sync_playwright
from servers import FeedServer
from support import picture, twenty_stories

from digest import config as configuration
from digest import jobs
from digest.compose import Composer

WHEN = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def heights(templates: Path, widths: list[int]) -> dict[int, int]:
    with FeedServer() as images, tempfile.TemporaryDirectory() as scratch:
        cards = twenty_stories(lambda n: images.url(f"/img/{n}.svg"))
        for n in range(len(cards)):
            images.serve(f"/img/{n}.svg", picture(800, 450), content_type="image/svg+xml")
        config = configuration.load(None)
        config = dataclasses.replace(config, paths=dataclasses.replace(
            config.paths, templates=templates))
        rendered = Composer(config).render(cards, 1, WHEN)
        page_file = Path(scratch) / "edition.html"
        page_file.write_text(jobs.as_anyone(config, rendered.html, rendered.marker),
                             encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            found = {}
            for width in widths:
                page.set_viewport_size({"width": width, "height": 900})
                page.goto(page_file.as_uri(), wait_until="load")
                found[width] = page.evaluate("document.documentElement.scrollHeight")
            browser.close()
        return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=Path, default=configuration.bundled("templates"))
    parser.add_argument("--width", type=int, action="append", dest="widths")
    arguments = parser.parse_args()
    for width, height in heights(arguments.templates, arguments.widths or [375]).items():
        print(f"{arguments.templates}: {width} px wide, {height:,} px tall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
