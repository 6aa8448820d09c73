"""kill -9 in the middle of a send, five times over: nobody gets two copies, nobody is lost
without a trace, and the ledger agrees with what the relay received."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Site, digest, rows

SERVERS = Path(__file__).with_name("servers.py")
SUBSCRIBERS = 2000
CONNECTIONS = 4
KILLS = 5


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The SMTP server in a process of its own: it outlives every killed sender."""
    out = tmp_path / "received"
    server = subprocess.Popen(
        [sys.executable, str(SERVERS), "smtp", "--port", "0", "--out", str(out),
         "--delay", "0.004"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line.startswith("ready "), line
    try:
        yield int(line.split()[1]), out / "recipients.log"
    finally:
        server.terminate()
        server.wait(10)


def received(log: Path) -> collections.Counter[str]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(log.read_text().split())


def sender(site: Site) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "digest", "--config", str(site.config),
                             "send"], cwd=site.root, env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_senders_never_mail_twice_and_account_for_everyone(
        site: Site, relay: tuple[int, Path]) -> None:
    port, log = relay
    site.smtp_port = port
    site.extra = f"connections = {CONNECTIONS}\nretry_backoff = 0.01\n"
    site.write()
    emails = [f"reader{n}@example.org" for n in range(SUBSCRIBERS)]
    site.subscribers("email,name\n" + "".join(f"{e},Reader\n" for e in emails))
    assert digest("collect").exit_code == 0  # the bundled sample feed
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)

    for kill in range(KILLS):
        before = sum(received(log).values())
        process = sender(site)
        deadline = time.monotonic() + 20
        while sum(received(log).values()) <= before:  # mid-send, not during start-up
            assert process.poll() is None, f"sender ended before kill {kill + 1} (seed {seed})"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(chance.uniform(0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = sender(site)
    assert final.wait(60) == 1  # done, with the unknown rows reported

    got = received(log)
    ledger = dict(rows(site.database, "SELECT email, status FROM deliveries"))
    assert len(ledger) == SUBSCRIBERS
    assert [email for email, n in got.items() if n > 1] == [], f"seed {seed}"
    unknown = {email for email, status in ledger.items() if status == "unknown"}
    assert set(ledger.values()) <= {"sent", "unknown"}, f"seed {seed}"
    assert {email for email, status in ledger.items() if status == "sent"} <= set(got)
    assert set(emails) - set(got) <= unknown  # not received: in doubt, never silently lost
    assert len(unknown) <= CONNECTIONS * KILLS, f"seed {seed}"

    status = json.loads(digest("status", "--json").output)
    counts = status["editions"][0]["deliveries"]
    assert counts.get("unknown", 0) == len(unknown)
    # Every `sent` is on the relay; the rest of what it holds is among the `unknown`.
    assert counts["sent"] + len(unknown & set(got)) == len(got)
