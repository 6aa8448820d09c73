"""A checker for rendered editions: anything in them that could run, restyle or phone home on
a feed's behalf."""

from __future__ import annotations

import collections
import html.parser


class Markup(html.parser.HTMLParser):
    """Every element (counted) and attribute, and every URL in an href or src."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: collections.Counter[str] = collections.Counter()
        self.attributes: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            self.attributes.add(name)
            if name in ("href", "src", "action", "data", "background") and value:
                self.urls.append(value)


def markup(page: str) -> Markup:
    parser = Markup()
    parser.feed(page)
    return parser


def hostile_markup_in(page: str) -> list[str]:
    """What in a rendered edition could run, restyle or phone home on a feed's behalf."""
    found = markup(page)
    problems = [f"<{tag}>" for tag in found.tags.keys() & {
        "script", "iframe", "form", "input", "svg", "object", "embed", "link", "base",
        "frame", "frameset", "applet", "button", "textarea", "select"}]
    problems += [f"{name}=" for name in found.attributes if name.startswith("on")]
    problems += [url for url in found.urls
                 if not url.startswith(("https://", "http://", "mailto:", "#"))
                 and "DIGEST-PERSONAL" not in url]
    # The template's own <meta> tags are in the head; a feed's would be in the body.
    body = page[page.find("<body"):]
    problems += ["<meta> in body"] if "<meta" in body else []
    problems += ["<style> in body"] if "<style" in body else []
    return problems
