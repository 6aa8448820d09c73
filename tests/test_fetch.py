"""Fetching feeds from a real HTTP server on loopback: conditional GET, redirects, errors,
timeouts, size caps, Retry-After, compression, and how `digest status` reports each; and the
bounds a hostile server cannot push us past (bombs, trickles, private addresses)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import brotli
import pytest
from servers import FeedServer, free_port
from support import Item, Site, digest, rows, rss

from digest import __version__, jobs
from digest import config as configuration
from digest.store import Store

pytestmark = pytest.mark.backends

A = Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return.")
B = Item("Bridge closes", "https://example.com/bridge", "h2", "Cars wait.")
QUICK = "[collect]\ntimeout = 1\ndeadline = 2\nfirst_run = 0\n"


def configure(site: Site, *feeds: tuple[str, str], extra: str = QUICK) -> None:
    site.feeds = list(feeds)
    site.extra = extra
    site.write()


def status(name: str) -> dict:
    report = json.loads(digest("status", "--json").output)
    return next(feed for feed in report["feeds"] if feed["name"] == name)


def test_304_costs_no_parse_and_keeps_the_validators(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(A), etag='"v1"', last_modified="Thu, 26 Nov 2026 09:00:00 GMT")
    configure(site, ("News", web.url("/feed.xml")))
    assert digest("collect").exit_code == 0
    # Same validators, different body: a client that parsed anyway would store B.
    web.serve("/feed.xml", rss(B, A), etag='"v1"',
              last_modified="Thu, 26 Nov 2026 09:00:00 GMT")
    result = digest("collect")
    assert result.exit_code == 0 and "collected 0 new articles" in result.output
    second = web.requests_to("/feed.xml")[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Thu, 26 Nov 2026 09:00:00 GMT"
    assert rows(site.database, "SELECT title FROM articles") == [("Harbour opens",)]
    assert rows(site.database, "SELECT etag, last_modified FROM feeds") == [
        ('"v1"', "Thu, 26 Nov 2026 09:00:00 GMT")]
    # A third run still asks conditionally: the 304 did not wipe what it did not repeat.
    digest("collect")
    assert web.requests_to("/feed.xml")[2].headers["if-none-match"] == '"v1"'


def test_new_validators_replace_the_old_once_the_entries_are_stored(
        site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(A), etag='"v1"')
    configure(site, ("News", web.url("/feed.xml")))
    digest("collect")
    web.serve("/feed.xml", rss(B, A), etag='"v2"')
    assert "collected 1 new articles" in digest("collect").output
    assert rows(site.database, "SELECT etag FROM feeds") == [('"v2"',)]


def test_301_is_recorded_and_the_new_url_used_from_then_on(site: Site, web: FeedServer) -> None:
    web.redirect("/old.xml", "/new.xml", status=301)
    web.serve("/new.xml", rss(A))
    configure(site, ("News", web.url("/old.xml")))
    result = digest("collect")
    assert result.exit_code == 0
    assert rows(site.database, "SELECT count(*) FROM articles") == [(1,)]
    assert status("News")["moved_to"] == web.url("/new.xml")
    assert f"moved to {web.url('/new.xml')}" in digest("status").output
    digest("collect")
    assert len(web.requests_to("/old.xml")) == 1
    assert len(web.requests_to("/new.xml")) == 2


def test_308_counts_as_permanent_too(site: Site, web: FeedServer) -> None:
    web.redirect("/old.xml", "/new.xml", status=308)
    web.serve("/new.xml", rss(A))
    configure(site, ("News", web.url("/old.xml")))
    digest("collect")
    assert status("News")["moved_to"] == web.url("/new.xml")


def test_302_is_followed_but_not_recorded(site: Site, web: FeedServer) -> None:
    web.redirect("/feed.xml", "/today.xml", status=302)
    web.serve("/today.xml", rss(A))
    configure(site, ("News", web.url("/feed.xml")))
    assert digest("collect").exit_code == 0
    assert rows(site.database, "SELECT count(*) FROM articles") == [(1,)]
    assert status("News")["moved_to"] is None
    digest("collect")
    assert len(web.requests_to("/feed.xml")) == 2


def test_a_permanent_hop_behind_a_temporary_one_is_not_recorded(
        site: Site, web: FeedServer) -> None:
    web.redirect("/feed.xml", "/hop.xml", status=307)
    web.redirect("/hop.xml", "/final.xml", status=301)
    web.serve("/final.xml", rss(A))
    configure(site, ("News", web.url("/feed.xml")))
    digest("collect")
    assert rows(site.database, "SELECT count(*) FROM articles") == [(1,)]
    assert status("News")["moved_to"] is None


def test_410_disables_the_feed_with_a_warning(site: Site, web: FeedServer) -> None:
    web.serve("/gone.xml", "gone", status=410, content_type="text/plain")
    web.serve("/good.xml", rss(A))
    configure(site, ("Gone", web.url("/gone.xml")), ("Good", web.url("/good.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/gone.xml')}: HTTP 410 Gone: disabled" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(1,)]
    assert status("Gone")["disabled_at"] is not None
    assert "disabled: gone since" in digest("status").output

    again = digest("collect")
    assert len(web.requests_to("/gone.xml")) == 1  # never asked again
    assert "feed skipped" in again.output and "gone (HTTP 410)" in again.output

    web.serve("/gone.xml", rss(B))
    assert digest("enable", web.url("/gone.xml")).exit_code == 0
    assert digest("collect").exit_code == 0
    assert status("Gone")["disabled_at"] is None and status("Gone")["articles"] == 1


def test_enable_names_an_unknown_feed(site: Site) -> None:
    configure(site)
    result = digest("enable", "https://nowhere.example/feed.xml")
    assert result.exit_code == 2
    assert "https://nowhere.example/feed.xml: no such feed" in result.output


def test_500_is_recorded_counted_and_cleared_by_a_success(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", "oops", status=500, content_type="text/plain")
    configure(site, ("News", web.url("/feed.xml")))
    assert digest("collect").exit_code == 1
    first = status("News")
    digest("collect")
    second = status("News")
    assert second["last_error"] == "HTTP 500 Internal Server Error"
    assert second["error_count"] == 2
    assert second["error_since"] == first["error_since"] is not None
    assert second["last_ok"] is None

    web.serve("/feed.xml", rss(A))
    assert digest("collect").exit_code == 0
    healed = status("News")
    assert (healed["error_count"], healed["last_error"], healed["error_since"]) == (0, None, None)
    assert healed["last_ok"] is not None


def test_a_server_that_stalls_past_the_timeout_fails_alone(site: Site, web: FeedServer) -> None:
    web.serve("/slow.xml", rss(A), delay=3)
    web.serve("/good.xml", rss(B))
    configure(site, ("Slow", web.url("/slow.xml")), ("Good", web.url("/good.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/slow.xml')}: timed out (no answer within 1s)" in result.output
    assert rows(site.database, "SELECT title FROM articles") == [("Bridge closes",)]


def test_a_server_that_drips_its_body_is_cut_off_at_the_deadline(
        site: Site, web: FeedServer) -> None:
    # Each piece comes within the read timeout, but the whole would take about 20 s.
    web.serve("/drip.xml", rss(A, B), chunk_delay=0.5, chunk_size=20)
    configure(site, ("Drip", web.url("/drip.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert "too slow: not complete after 2s" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(0,)]


def test_a_body_over_the_cap_is_refused(site: Site, web: FeedServer) -> None:
    big = rss(*(Item(f"Story {n}", f"https://example.com/{n}", summary="x" * 200)
                for n in range(20)))
    web.serve("/big.xml", big)
    configure(site, ("Big", web.url("/big.xml")), extra=QUICK + "max_bytes = 2000\n")
    result = digest("collect")
    assert result.exit_code == 1
    assert "larger than 2,000 bytes" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(0,)]


def test_retry_after_is_honoured_until_it_passes(site: Site, web: FeedServer) -> None:
    web.serve("/busy.xml", "slow down", status=429, content_type="text/plain",
              headers={"Retry-After": "3600"})
    configure(site, ("Busy", web.url("/busy.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert "HTTP 429 Too Many Requests, asked to wait until" in result.output
    assert status("Busy")["retry_after"] is not None
    assert "waiting until" in digest("status").output

    web.serve("/busy.xml", rss(A))
    skipped = digest("collect")
    assert skipped.exit_code == 0 and "asked us to wait until" in skipped.output
    assert len(web.requests_to("/busy.xml")) == 1

    # Once the time has come (here: moved into the past), the feed is fetched again.
    rows(site.database, "UPDATE feeds SET retry_after = '2000-01-01T00:00:00+00:00'")
    assert digest("collect").exit_code == 0
    assert status("Busy")["retry_after"] is None and status("Busy")["articles"] == 1


def test_retry_after_as_an_http_date_on_503(site: Site, web: FeedServer) -> None:
    web.serve("/down.xml", "maintenance", status=503, content_type="text/plain",
              headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"})
    configure(site, ("Down", web.url("/down.xml")))
    digest("collect")
    # Far-off dates are capped: a wrong header must not silence a feed for good.
    waited = status("Down")["retry_after"]
    assert waited is not None and not waited.startswith("2100")
    digest("collect")
    assert len(web.requests_to("/down.xml")) == 1


def test_gzip_is_asked_for_and_decoded(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(A, B), gzip=True)
    configure(site, ("News", web.url("/feed.xml")))
    assert digest("collect").exit_code == 0
    accepted = web.requests_to("/feed.xml")[0].headers["accept-encoding"]
    assert {"gzip", "deflate", "br"} <= {part.strip() for part in accepted.split(",")}
    assert sorted(rows(site.database, "SELECT title FROM articles")) == [
        ("Bridge closes",), ("Harbour opens",)]


def test_user_agent_names_the_project_version_and_newsletter(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", rss(A))
    configure(site, ("News", web.url("/feed.xml")))
    digest("collect")
    agent = web.requests_to("/feed.xml")[0].headers["user-agent"]
    assert agent == f"digest/{__version__} (+https://news.example.com)"


def test_a_page_that_is_not_a_feed_is_a_recorded_parse_error(site: Site, web: FeedServer) -> None:
    web.serve("/page", "<html><body><p>Hello</p></body></html>", content_type="text/html")
    configure(site, ("Page", web.url("/page")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/page')}: not a feed" in result.output
    assert status("Page")["error_count"] == 1


class _Counting(http.server.ThreadingHTTPServer):
    """Answers every path with a small feed after a pause, counting requests in flight."""

    daemon_threads = True

    def __init__(self, host: str, tally: dict[str, int], lock: threading.Lock) -> None:
        self.tally, self.lock = tally, lock
        super().__init__((host, 0), _CountingHandler)


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    server: _Counting

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        tally, host = self.server.tally, self.server.server_address[0]
        with self.server.lock:
            tally[host] += 1
            tally["all"] += 1
            tally[f"max {host}"] = max(tally[f"max {host}"], tally[host])
            tally["max all"] = max(tally["max all"], tally["all"])
        time.sleep(0.4)
        body = rss(Item(self.path, f"https://example.com{self.path}")).encode()
        with self.server.lock:
            tally[host] -= 1
            tally["all"] -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def counting(*hosts: str) -> Iterator[tuple[dict[str, int], list[_Counting]]]:
    lock = threading.Lock()
    tally = {key: 0 for host in hosts for key in (host, f"max {host}")} | {"all": 0, "max all": 0}
    servers = [_Counting(host, tally, lock) for host in hosts]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield tally, servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_feeds_are_fetched_concurrently_but_at_most_two_per_host(site: Site) -> None:
    with counting("127.0.0.1", "127.0.0.2") as (tally, servers):
        feeds = [(f"{host} {n}", f"http://{host}:{server.server_address[1]}/{n}.xml")
                 for server in servers for host in [server.server_address[0]] for n in range(4)]
        configure(site, *feeds, extra=QUICK + "concurrency = 3\nper_host = 2\n")
        result = digest("collect")
    assert result.exit_code == 0, result.output
    assert "collected 8 new articles" in result.output
    assert tally["max 127.0.0.1"] == tally["max 127.0.0.2"] == 2
    assert tally["max all"] == 3


def test_a_redirect_away_from_http_is_refused(site: Site, web: FeedServer) -> None:
    web.redirect("/feed.xml", "file:///etc/passwd", status=301)
    configure(site, ("News", web.url("/feed.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert "HTTP 301 redirects to 'file:///etc/passwd', not http(s)" in result.output
    assert status("News")["moved_to"] is None


def test_a_malformed_url_is_an_error_of_that_feed_alone(site: Site, web: FeedServer) -> None:
    web.serve("/good.xml", rss(A))
    configure(site, ("Broken", "http://[::1/feed.xml"), ("Good", web.url("/good.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert "http://[::1/feed.xml: invalid URL" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(1,)]


def test_a_tls_failure_is_recorded_on_the_feed(site: Site, web: FeedServer) -> None:
    # The server speaks plain HTTP: the TLS handshake fails.
    web.serve("/feed.xml", rss(A))
    url = web.url("/feed.xml").replace("http://", "https://")
    configure(site, ("Secure", url))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"feed failed: {url}: " in result.output
    assert status("Secure")["error_count"] == 1


# Runs the command given, then writes the peak resident memory of that child, in KiB, to the
# file named first. A child's peak counts the memory of the process it was started from (Linux
# keeps it across exec): from this small one, not from pytest, it is the command's own.
_PEAK = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
signal.signal(signal.SIGALRM, lambda *_: child.kill())
signal.alarm(100)
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(*args: str, cwd: Path) -> tuple[int, str, int]:
    """`digest ARGS` as a process of its own: its exit status, its output and its peak
    resident memory in bytes."""
    peak = cwd / "peak.kib"
    result = subprocess.run([sys.executable, "-c", _PEAK, str(peak), sys.executable, "-m",
                             "digest", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    return result.returncode, result.stdout, int(peak.read_text()) * 1024


@functools.cache
def bomb(coding: str, size: int) -> bytes:
    """`size` zero bytes compressed with `coding`, a mebibyte at a time: small on the wire,
    huge once inflated (brotli: 1 GiB in about 1.6 KB)."""
    zeros = bytes(1 << 20)
    if coding == "br":
        packer = brotli.Compressor(quality=5)
        return b"".join([*(packer.process(zeros) for _ in range(size >> 20)), packer.finish()])
    wrapper = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}[coding]
    squeezer = zlib.compressobj(9, zlib.DEFLATED, wrapper)
    return b"".join([*(squeezer.compress(zeros) for _ in range(size >> 20)), squeezer.flush()])


# Big enough that a decoder inflating one network read at once (64 KiB in) holds far more than
# the bound: over a gibibyte for brotli, some 64 MiB for gzip and deflate.
BOMBS = {"br": 1 << 30, "gzip": 128 << 20, "deflate": 128 << 20}
MEMORY_BOUND = 150 * 1024 * 1024


@pytest.mark.parametrize("coding", list(BOMBS))
def test_a_compression_bomb_is_refused_before_it_fills_the_memory(
        site: Site, web: FeedServer, coding: str) -> None:
    web.serve("/bomb.xml", bomb(coding, BOMBS[coding]), headers={"Content-Encoding": coding})
    web.serve("/good.xml", rss(A))
    configure(site, ("Bomb", web.url("/bomb.xml")), ("Good", web.url("/good.xml")),
              extra="[collect]\nfirst_run = 0\n")
    status, output, peak = run("collect", cwd=site.root)
    assert peak < MEMORY_BOUND, f"peak RSS {peak / 2**20:.0f} MB"
    assert status == 1, output
    assert (f"{web.url('/bomb.xml')}: larger than 10,485,760 bytes once decompressed"
            in output)
    assert rows(site.database, "SELECT title FROM articles") == [("Harbour opens",)]


@pytest.mark.parametrize(("coding", "packed"), [
    ("br", brotli.compress),
    ("deflate", zlib.compress),
    # Raw deflate, without zlib's wrapper: against RFC 9110, but some servers send it.
    ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
    ("gzip, br", lambda data: brotli.compress(zlib.compress(data, wbits=zlib.MAX_WBITS | 16))),
])
def test_every_compression_offered_is_read(site: Site, web: FeedServer, coding: str,
                                           packed: Callable[[bytes], bytes]) -> None:
    web.serve("/feed.xml", packed(rss(A, B).encode()), headers={"Content-Encoding": coding})
    configure(site, ("News", web.url("/feed.xml")))
    assert digest("collect").exit_code == 0
    assert sorted(rows(site.database, "SELECT title FROM articles")) == [
        ("Bridge closes",), ("Harbour opens",)]


def test_corrupt_compressed_data_is_an_error_of_that_feed(site: Site, web: FeedServer) -> None:
    web.serve("/feed.xml", b"\x1f\x8b not gzip at all", headers={"Content-Encoding": "gzip"})
    configure(site, ("News", web.url("/feed.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/feed.xml')}: cannot decompress: not valid gzip data" in result.output


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(
        site: Site, web: FeedServer) -> None:
    # A byte every 0.2 s never trips the 1 s read timeout; the headers alone would take 30 s.
    web.serve("/trickle.xml", rss(A), trickle=0.2)
    configure(site, ("Trickle", web.url("/trickle.xml")))
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/trickle.xml')}: too slow: not complete after 2s" in result.output
    sent, total = web.trickled("/trickle.xml")
    headers = total - len(rss(A).encode())
    assert sent < headers, f"{sent} of {headers} header bytes sent before the client gave up"


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "feed.fifo")
    return root / "feed.fifo"


def _folder(root: Path) -> Path:
    (root / "feeds").mkdir()
    return root / "feeds"


@pytest.mark.parametrize("made", [_fifo, lambda root: Path("/dev/zero"), _folder],
                         ids=["fifo", "device", "folder"])
def test_a_local_feed_that_is_not_a_regular_file_is_refused(
        site: Site, made: Callable[[Path], Path]) -> None:
    path = made(site.root)
    configure(site, ("Local", str(path)))
    # A process of its own: read as a file, /dev/zero never ends and a FIFO never starts.
    status, output, _ = run("collect", cwd=site.root)
    assert status == 1, output
    assert f"feed failed: {path}: not a regular file" in output


def test_a_large_local_feed_is_capped_like_one_over_http(site: Site) -> None:
    path = site.root / "big.xml"
    path.write_text(rss(*(Item(f"Story {n}", f"https://example.com/{n}", summary="x" * 200)
                          for n in range(20))))
    configure(site, ("Big", str(path)), extra=QUICK + "max_bytes = 2000\n")
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{path}: larger than 2,000 bytes" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(0,)]


@pytest.fixture
def inside() -> Iterator[FeedServer]:
    """A server at another loopback address, with something a feed elsewhere must not read."""
    with FeedServer("127.0.0.2") as server:
        server.serve("/memo.xml", rss(Item("Internal memo", "https://intranet.example/memo")))
        yield server


@pytest.fixture
def inside6() -> Iterator[FeedServer]:
    with FeedServer("::1") as server:
        server.serve("/memo.xml", rss(Item("Internal memo", "https://intranet.example/memo")))
        yield server


def test_a_redirect_to_another_private_address_is_refused_unasked(
        site: Site, web: FeedServer, inside: FeedServer, inside6: FeedServer) -> None:
    # The feed's own host vouches for its own address, and for no other: these servers are
    # on loopback as well, yet nothing ever reaches them.
    targets = {"/v4.xml": (inside.url("/memo.xml"), "127.0.0.2 is a loopback address"),
               "/v6.xml": (inside6.url("/memo.xml"), "::1 is a loopback address"),
               "/lan.xml": ("http://10.0.0.1/admin", "10.0.0.1 is a private address"),
               "/cloud.xml": ("http://169.254.169.254/latest/meta-data/",
                              "169.254.169.254 is a link-local address")}
    for path, (target, _) in targets.items():
        web.redirect(path, target, status=302)
    configure(site, *((path, web.url(path)) for path in targets))
    result = digest("collect")
    assert result.exit_code == 1
    for path, (target, why) in targets.items():
        assert f"{web.url(path)}: refused a redirect to {target}: {why}" in result.output
    assert inside.requests == [] and inside6.requests == []
    assert rows(site.database, "SELECT count(*) FROM articles") == [(0,)]
    assert "Internal memo" not in result.output


def test_a_feed_configured_at_a_private_address_is_read(
        site: Site, web: FeedServer, inside: FeedServer) -> None:
    inside.redirect("/feed.xml", "/memo.xml", status=302)  # within its own host: followed
    configure(site, ("Inside", inside.url("/feed.xml")))
    assert digest("collect").exit_code == 0
    assert rows(site.database, "SELECT title FROM articles") == [("Internal memo",)]


def test_an_error_status_is_told_in_our_words_not_the_servers(site: Site,
                                                             web: FeedServer) -> None:
    web.serve("/feed.xml", "upstream said no", status=503, content_type="text/plain",
              reason="db.internal:5432 password authentication failed for user feeds")
    configure(site, ("News", web.url("/feed.xml")))
    result = digest("collect")
    assert f"{web.url('/feed.xml')}: HTTP 503 Service Unavailable" in result.output
    assert "password" not in result.output and "password" not in status("News")["last_error"]


def test_bad_feeds_are_reported_once_each_in_plain_words(site: Site, web: FeedServer) -> None:
    web.serve("/page.html", "<html>\n<head>\n<title>Shop</title>\n</head>\n<body>\n"
              "<p>Sale</p>\n<div></p>\n</body>\n</html>\n", content_type="text/html")
    port = free_port()  # nobody listens there
    expected = {"http://example.invalid/feed.xml": "cannot resolve host example.invalid",
                web.url("/page.html"): "not a feed: XML error at line 7",
                "ftp://example.com/feed.xml": "unsupported scheme 'ftp'",
                f"http://127.0.0.1:{port}/feed.xml":
                    f"cannot connect to 127.0.0.1 port {port}: connection refused"}
    configure(site, *((f"Feed {n}", url) for n, url in enumerate(expected)))
    result = digest("collect")
    assert result.exit_code == 1
    for url, words in expected.items():
        said = [line for line in result.output.splitlines() if url in line]
        assert len(said) == 1 and said[0].startswith(f"feed failed: {url}: {words}"), said
    assert "Errno" not in result.output


def test_invalid_utf8_reads_as_replacement_characters(site: Site, web: FeedServer) -> None:
    xml = rss(Item("Bad XX utf8 YY(", "https://example.com/bad"),
              Item("Café crème", "https://example.com/cafe")).encode()
    web.serve("/feed.xml", xml.replace(b"XX", b"\xff\xfe").replace(b"YY", b"\xc3"))
    web.serve("/feed.json", b'{"version": "https://jsonfeed.org/version/1.1", "items": '
              b'[{"id": "j", "url": "https://example.com/j", "title": "Na\xefve caf\xc3\xa9"}]}',
              content_type="application/feed+json")
    configure(site, ("Xml", web.url("/feed.xml")), ("Json", web.url("/feed.json")))
    assert digest("collect").exit_code == 0
    assert sorted(rows(site.database, "SELECT title FROM articles")) == [
        ("Bad \ufffd\ufffd utf8 \ufffd(",), ("Café crème",), ("Na\ufffdve café",)]


MOMENT = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def test_retry_after_counts_from_the_moment_of_the_run(site: Site, web: FeedServer) -> None:
    web.serve("/busy.xml", "slow down", status=429, content_type="text/plain",
              headers={"Retry-After": "600"})
    web.serve("/down.xml", "maintenance", status=503, content_type="text/plain",
              headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"})
    configure(site, ("Busy", web.url("/busy.xml")), ("Down", web.url("/down.xml")))
    config = configuration.load(str(site.config))
    with Store(config.paths.database) as store:
        collected = jobs.collect(config, store, clock=lambda: MOMENT)
    assert [feed.error for feed in collected.failed] == [
        "HTTP 429 Too Many Requests, asked to wait until 2026-11-27 07:10 UTC",
        "HTTP 503 Service Unavailable, asked to wait until 2026-11-28 07:00 UTC"]
    assert {name: datetime.fromisoformat(status(name)["retry_after"])
            for name in ("Busy", "Down")} == {"Busy": MOMENT + timedelta(minutes=10),
                                             "Down": MOMENT + timedelta(days=1)}
