"""How long collect takes: a first collect of many feeds, then a second where every feed answers
304 Not Modified, and the parse cost per MB of feed.

    python bench/collect.py [--feeds 200] [--entries 50] [--hosts 8]

The feeds are served from loopback by several small HTTP servers (127.0.0.1, 127.0.0.2, ...:
the whole 127/8 block is loopback on Linux), so the per-host politeness limit applies as it
would across real publishers. The 304 round is measured against the first round of the same
run, the baseline; it should cost under 5% of it.
"""

from __future__ import annotations

import argparse
import http.server
import multiprocessing
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from digest import cards, feeds, jobs
from digest.config import Collect, Config, Feed, Paths
from digest.store import Store

TARGET = 0.05  # the 304 round must cost under 5% of the first
CONTENT_TYPE = "application/rss+xml; charset=utf-8"


def feed(number: int, entries: int) -> bytes:
    """An RSS 2.0 feed shaped like a news site's: HTML descriptions, an image per item."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    items = []
    for n in range(entries):
        description = escape(
            f"<p>Story {n} of feed {number}: <b>council</b> votes on the harbour plan, "
            "with <a href='https://example.com/more'>more</a> to follow. "
            + "The debate ran late into the evening as residents spoke. " * 6 + "</p>"
            f"<img src='https://img.example.com/{number}/{n}.jpg' width='640' height='360'>")
        items.append(
            f"<item><title>Feed {number} story {n}: the harbour &amp; the town</title>"
            f"<link>https://news{number}.example.com/{n}?utm_source=rss</link>"
            f"<guid isPermaLink='false'>feed-{number}-{n}</guid>"
            f"<pubDate>{format_datetime(start + timedelta(hours=n))}</pubDate>"
            f"<description>{description}</description>"
            f"<media:thumbnail url='https://img.example.com/{number}/{n}-t.jpg' width='320' "
            "height='180'/></item>")
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0' "
            "xmlns:media='http://search.yahoo.com/mrss/'><channel>"
            f"<title>Feed {number}</title><link>https://news{number}.example.com/</link>"
            + "".join(items) + "</channel></rss>").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.server.bodies[self.path]
        etag = f'"{len(body)}-{self.path}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        super().__init__((host, 0), Handler)


def serve(bodies: dict[str, bytes], hosts: int, addresses: multiprocessing.Queue) -> None:
    servers = [Server(f"127.0.0.{n + 1}", bodies) for n in range(hosts)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        addresses.put(server.server_address[:2])
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--hosts", type=int, default=8)
    args = parser.parse_args()

    bodies = {f"/{n}.xml": feed(n, args.entries) for n in range(args.feeds)}
    # The servers run in a process of their own, as publishers' servers do: sharing ours, their
    # threads would take the interpreter from the collect being measured.
    addresses: multiprocessing.Queue = multiprocessing.Queue()
    publishers = multiprocessing.Process(target=serve, args=(bodies, args.hosts, addresses),
                                         daemon=True)
    publishers.start()
    hosts = [addresses.get(timeout=30) for _ in range(args.hosts)]
    urls = [f"http://{hosts[n % args.hosts][0]}:{hosts[n % args.hosts][1]}/{n}.xml"
            for n in range(args.feeds)]
    size = sum(len(body) for body in bodies.values())

    with tempfile.TemporaryDirectory() as folder:
        config = Config(feeds=tuple(Feed(url, f"Feed {n}") for n, url in enumerate(urls)),
                        collect=Collect(first_run=0), paths=Paths(state=Path(folder)))
        with Store(config.paths.database) as store:
            started = time.perf_counter()
            first = jobs.collect(config, store)
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            second = jobs.collect(config, store)
            second_seconds = time.perf_counter() - started
    publishers.terminate()
    assert not first.failed and not second.failed, (first.failed, second.failed)
    assert first.new == args.feeds * args.entries and second.new == 0

    # Parsing alone, as collect does it: feedparser, then the cards.
    seen = datetime.now(UTC)
    started = time.perf_counter()
    for path, body in bodies.items():
        parsed = feeds.parse(feeds.Fetched(f"https://example.com{path}", body,
                                           {"content-type": CONTENT_TYPE}))
        for entry in parsed.entries:
            cards.article(entry, f"https://example.com{path}", 200, seen)
    parse_seconds = time.perf_counter() - started

    ratio = second_seconds / first_seconds
    print(f"feeds: {args.feeds} x {args.entries} entries on {args.hosts} loopback hosts, "
          f"{size / 1e6:.1f} MB in all")
    print(f"first collect:    {first_seconds:7.2f} s  ({first.new} new articles)")
    print(f"all-304 collect:  {second_seconds:7.2f} s")
    print(f"parse + cards:    {parse_seconds / (size / 1e6):7.2f} s per MB "
          f"({parse_seconds:.2f} s for {size / 1e6:.1f} MB)")
    print(f"304 round / first round: {ratio:.1%} (target under {TARGET:.0%}): "
          + ("ok" if ratio < TARGET else "TOO SLOW"))


if __name__ == "__main__":
    main()
