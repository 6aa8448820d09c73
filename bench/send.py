"""How fast an edition goes out, against raw smtplib and Postfix's C smtp-source pushing the same
bytes.

    python bench/send.py [--subscribers N] [--connections C]

Starts Postfix's `smtp-sink` (Debian package postfix; only its smtp-sink and smtp-source
binaries, never the mail daemon) on a loopback port, then in one run:

  ours      `digest collect` of a 20-card feed, then `jobs.send`: roster, render + inline
            once, the edition and its N ledger rows, the pool of C connections on one event
            loop and its ledger commits; timed from the start of send to the last commit.
  baseline  raw smtplib on C threads, each on one reused connection, sending one pre-built
            copy of the same message N/C times.
  yardstick Postfix's C `smtp-source` sending the same message (from a file) N times on C
            parallel sessions, each kept open (-d), to the same sink.

Prints messages/s for the three, the ratios ours/smtplib and ours/smtp-source, the peak RSS
of this process (ours runs first) and the time to compose one edition. Targets at
N = 100,000: >= 0.5 of smtp-source, peak RSS < 200 MB, compose < 100 ms. (Peak RSS of a
real `digest send` against the list size: bench/memory.py.)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from digest import config as configuration
from digest import deliver, jobs
from digest.compose import Composer, Letter
from digest.store import Store, now

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
IMAGE = "https://images.example.com/{n}/photo-of-the-story-{n}.jpg"
TEASER = ("The council met late into the evening to settle the harbour question, and by the "
          "time the lights went out along the quay the plan had changed twice: first the ferry "
          "schedule, then the fish market's hours, and at last the route of the new tram line")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def feed(count: int) -> str:
    items = "".join(
        f"<item><title>Story number {n}: the harbour, the tram and the market</title>"
        f"<link>https://news.example.com/2026/11/27/story-{n}-the-harbour-the-tram</link>"
        f"<guid>story-{n}</guid><description>{TEASER} ({n}).</description>"
        f"<media:thumbnail url=\"{IMAGE.format(n=n)}\" width=\"560\" height=\"315\"/>"
        f"<pubDate>Thu, 26 Nov 2026 {n % 24:02d}:00:00 +0000</pubDate></item>"
        for n in range(count))
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Bench</title>'
            f"<link>https://news.example.com/</link>{items}</channel></rss>")


def site(root: Path, port: int, subscribers: int, connections: int) -> Path:
    (root / "feed.xml").write_text(feed(20), encoding="utf-8")
    with open(root / "subscribers.csv", "w", encoding="utf-8") as out:
        out.write("email,name\n")
        for n in range(subscribers):
            out.write(f"reader{n}@example.org,Reader {n}\n")
    path = root / "digest.toml"
    path.write_text(f"""
[newsletter]
name = "Bench Digest"
from = "Bench Digest <news@example.com>"
public_url = "https://news.example.com"
[[feeds]]
name = "News"
url = "{root / 'feed.xml'}"
[delivery]
transport = "smtp"
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = {connections}
[collect]
first_run = 0
""", encoding="utf-8")
    return path


def ours(path: Path) -> tuple[float, float, int, tuple[float, float], bytes]:
    """(seconds of send, seconds of delivery alone, messages sent, compose seconds (first,
    then typical), one message's bytes)"""
    config = configuration.load(path)
    with Store(config.paths.database) as store:
        jobs.collect(config, store)
        cards, _ = store.unmailed([f.url for f in config.feeds], 20)
        composer = Composer(config)
        times = []
        for _ in range(5):  # the first includes loading and compiling the templates
            started = time.perf_counter()
            composer.render(cards, 1, now())
            times.append(time.perf_counter() - started)
        compose = (times[0], sorted(times[1:])[1])
        started = time.perf_counter()
        sent = jobs.send(config, store, deliver.transport(config))
        seconds = time.perf_counter() - started
        edition = store.edition(sent.edition.id)  # type: ignore[union-attr]
        delivery = next(iter(store.db.execute(
            "SELECT edition_id, email, name, status, attempts FROM deliveries LIMIT 1")))
    from digest.records import Delivery
    sample = Letter(config, edition, lambda email: "https://news.example.com/unsubscribe/x"
                    ).bytes_for(Delivery(*delivery))
    return (seconds, sum(t.seconds for t in sent.tallies),
            sum(t.counts["sent"] for t in sent.tallies), compose, sample)


def baseline(port: int, message: bytes, total: int, connections: int) -> float:
    def one(count: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            for _ in range(count):
                client.sendmail("news@example.com", ["reader@example.org"], message)

    shares = [total // connections + (n < total % connections) for n in range(connections)]
    threads = [threading.Thread(target=one, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def yardstick(port: int, message: bytes, total: int, connections: int, root: Path) -> float:
    """smtp-source takes the message with bare LF line ends and sends each line with CRLF,
    doubling leading dots: on the wire, the same bytes as ours."""
    path = root / "message.eml"
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    started = time.perf_counter()
    subprocess.run([SOURCE, "-d", "-m", str(total), "-s", str(connections), "-F", str(path),
                    "-f", "news@example.com", "-t", "reader@example.org", "-M", "localhost",
                    f"127.0.0.1:{port}"], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    options = parser.parse_args()
    for program in (SINK, SOURCE):
        if not Path(program).exists():
            print(f"{program} not found: apt-get install postfix (only smtp-sink and "
                  "smtp-source are started)")
            return 2
    os.environ.setdefault("DIGEST_SECRET", "bench")
    port = free_port()
    sink = subprocess.Popen([SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"])
    root = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        time.sleep(0.3)
        path = site(root, port, options.subscribers, options.connections)
        seconds, delivering, sent, compose, sample = ours(path)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        raw = baseline(port, sample, options.subscribers, options.connections)
        native = yardstick(port, sample, options.subscribers, options.connections, root)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(root)
    n, c = options.subscribers, options.connections
    ours_rate, raw_rate, native_rate = sent / seconds, n / raw, n / native
    print(f"{n} subscribers, {c} connections, message {len(sample) / 1024:.0f} KB")
    print(f"compose one edition     {compose[1] * 1000:8.1f} ms  (the first, templates "
          f"loading: {compose[0] * 1000:.1f} ms)")
    print(f"ours (send, ledger)     {ours_rate:8.0f} msg/s  ({sent} sent in {seconds:.1f} s)")
    print(f"  of which delivery     {sent / delivering:8.0f} msg/s  (pool + ledger, "
          f"{delivering:.1f} s; the rest is roster, render and the ledger rows)")
    print(f"baseline (raw smtplib)  {raw_rate:8.0f} msg/s  ({n} in {raw:.1f} s)")
    print(f"smtp-source (C)         {native_rate:8.0f} msg/s  ({n} in {native:.1f} s)")
    print(f"ratio ours/smtplib      {ours_rate / raw_rate:8.2f}")
    print(f"ratio ours/smtp-source  {ours_rate / native_rate:8.2f}")
    print(f"peak RSS                {rss:8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
