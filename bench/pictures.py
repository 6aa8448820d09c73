"""The share of cards with a picture, before and after collect reads article pages.

    python bench/pictures.py [--feeds 60] [--entries 10] [--hosts 8] [--seed 1]

A mixed set of feeds is served from loopback (127.0.0.1, 127.0.0.2, ...: one publisher per
address, so the per-host limit applies as across real ones) with the article pages their
entries link to.
About 37% of the feeds give a picture with every entry (132 of 355 real-world feeds had one on
any entry); the others give none. The pages name their picture as pages do: Open Graph on most,
Twitter's card or JSON-LD alone on some (a Yoast @graph among them), none on some; a few fail
(404, not HTML, too slow). Each picture is a real JPEG.

"Before" collects with `enrich = false` and no hosting (the cards as feeds make them); "after"
with pages read and pictures hosted. Both count the cards an edition would carry.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import FeedServer

from digest import jobs
from digest.config import Collect, Config, Feed, Images, Newsletter, Paths
from digest.store import Store

FEEDS_WITH_PICTURES = 132 / 355
# What the article pages of feeds without pictures do, and how often (weights).
PAGES = {"og": 60, "twitter": 6, "json-ld": 10, "graph": 6, "nothing": 10, "missing": 3,
         "not html": 3, "slow": 2}


def jpeg(seed: int) -> bytes:
    image = Image.linear_gradient("L").resize((1200, 700)).convert("RGB")
    image.paste((seed * 37 % 255, 90, 160), (100, 100, 400, 400))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def article(kind: str, picture: str) -> str:
    head = {"og": f'<meta property="og:image" content="{picture}">',
            "twitter": f'<meta name="twitter:image" content="{picture}">'}.get(kind, "")
    if kind == "json-ld":
        head = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle",
                           "image": {"@type": "ImageObject", "url": picture}})
    elif kind == "graph":
        head = json.dumps({"@context": "https://schema.org", "@graph": [
            {"@type": "ImageObject", "@id": "#primary", "contentUrl": picture},
            {"@type": "BlogPosting", "image": {"@id": "#primary"}}]})
    if kind in ("json-ld", "graph"):
        head = f'<script type="application/ld+json">{head}</script>'
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head>"
            "<body><p>The story.</p></body></html>")


def serve(servers: list[FeedServer], feeds: int, entries: int, seed: int) -> list[Feed]:
    draw = random.Random(seed)
    configured = []
    for number in range(feeds):
        web = servers[number % len(servers)]
        pictured = draw.random() < FEEDS_WITH_PICTURES
        items = []
        for n in range(entries):
            picture = f"/pic/{number}/{n}.jpg"
            web.serve(picture, jpeg(number * entries + n), content_type="image/jpeg")
            link = web.url(f"/story/{number}/{n}")
            kind = draw.choices(list(PAGES), list(PAGES.values()))[0]
            if kind == "missing":
                pass  # nothing there: 404
            elif kind == "not html":
                web.serve(f"/story/{number}/{n}", b"%PDF-1.4", content_type="application/pdf")
            else:
                web.serve(f"/story/{number}/{n}", article(kind, picture),
                          content_type="text/html", delay=3 if kind == "slow" else 0)
            thumbnail = (f'<media:thumbnail url="{web.url(picture)}" width="1200" '
                         'height="700"/>' if pictured else "")
            items.append(f"<item><title>Story {number}.{n}</title><link>{link}</link>"
                         f"<guid>{number}-{n}</guid><description>Words.</description>"
                         f"{thumbnail}</item>")
        web.serve(f"/feed/{number}.xml", (
            "<?xml version='1.0'?><rss version='2.0' xmlns:media='http://search.yahoo.com/"
            f"mrss/'><channel><title>Feed {number}</title>{''.join(items)}</channel></rss>"))
        configured.append(Feed(web.url(f"/feed/{number}.xml"), f"Feed {number}"))
    return configured


def run(feeds: list[Feed], after: bool, folder: Path) -> tuple[int, int, int, float]:
    """Cards, those with a picture, those with a hosted one; and the collect's seconds."""
    config = Config(
        newsletter=Newsletter(public_url="https://news.example.com", max_articles=100_000),
        feeds=tuple(Feed(feed.url, feed.name, enrich=after) for feed in feeds),
        collect=Collect(first_run=0, timeout=1, deadline=30),
        images=Images(host=after), paths=Paths(state=folder))
    with Store(config.paths.database) as store:
        started = time.perf_counter()
        jobs.collect(config, store)
        seconds = time.perf_counter() - started
        chosen, _ = store.unmailed([feed.url for feed in feeds], 100_000)
        shown = jobs.dressed(config, store, chosen)
    pictured = [card for card in shown if card.image]
    hosted = [card for card in pictured if card.image.url.startswith(config.images_url)]
    return len(shown), len(pictured), len(hosted), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=60)
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as temporary:
        servers = [stack.enter_context(FeedServer(f"127.0.0.{n}"))
                   for n in range(1, args.hosts + 1)]
        feeds = serve(servers, args.feeds, args.entries, args.seed)
        for label, after in (("before", False), ("after", True)):
            cards, pictured, hosted, seconds = run(feeds, after, Path(temporary) / label)
            print(f"{label:>6}: {pictured}/{cards} cards with a picture "
                  f"({pictured / cards:.0%}), {hosted} hosted; collect {seconds:.1f} s")


if __name__ == "__main__":
    main()
