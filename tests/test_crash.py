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
from contextlib import contextmanager
from pathlib import Path

import pytest
from servers import SmtpServer
from support import Site, digest, rows

# Real processes, real signals and real seconds: left out of a quick loop by -m 'not slow'.
pytestmark = pytest.mark.slow

SERVERS = Path(__file__).with_name("servers.py")
SUBSCRIBERS = 2000
CONNECTIONS = 4
KILLS = 5


@contextmanager
def relay_process(tmp_path: Path, delay: float) -> Iterator[tuple[int, Path]]:
    """The SMTP server in a process of its own, taking `delay` seconds a message: it outlives
    every killed sender. Its port, and the log of every recipient it accepted."""
    out = tmp_path / "received"
    server = subprocess.Popen(
        [sys.executable, str(SERVERS), "smtp", "--port", "0", "--out", str(out),
         "--delay", str(delay)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line.startswith("ready "), line
    try:
        yield int(line.split()[1]), out / "recipients.log"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with relay_process(tmp_path, 0.004) as relayed:
        yield relayed


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
    emails, seed = crash_site(site, port)
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

    assert_accounted(site, log, emails, seed)


def crash_site(site: Site, port: int) -> tuple[list[str], int]:
    """A list of SUBSCRIBERS sent over CONNECTIONS to the relay at `port`, the bundled feed
    collected; the addresses, and the seed of the kill points (printed, to replay a failure
    with DIGEST_CRASH_SEED=<seed>)."""
    site.smtp_port = port
    site.extra = f"connections = {CONNECTIONS}\nretry_backoff = 0.01\n"
    site.write()
    emails = [f"reader{n}@example.org" for n in range(SUBSCRIBERS)]
    site.subscribers("email,name\n" + "".join(f"{e},Reader\n" for e in emails))
    assert digest("collect").exit_code == 0  # the bundled sample feed
    seed = int(os.environ.get("DIGEST_CRASH_SEED") or random.randrange(1 << 30))
    print(f"kill points from DIGEST_CRASH_SEED={seed}")
    return emails, seed


def assert_accounted(site: Site, log: Path, emails: list[str], seed: int) -> None:
    """After the kills: nobody got two copies, everyone was received or is `unknown` (at
    most one per connection per kill), and `status` agrees with the relay."""
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
    assert len(status["editions"]) == 1
    counts = status["editions"][0]["deliveries"]
    assert counts.get("unknown", 0) == len(unknown)
    # Every `sent` is on the relay; the rest of what it holds is among the `unknown`.
    assert counts["sent"] + len(unknown & set(got)) == len(got)


def _sending_site(site: Site, smtp: SmtpServer, count: int) -> list[str]:
    site.smtp_port = smtp.port
    site.extra = f"connections = {CONNECTIONS}\n"
    site.write()
    emails = [f"reader{n:03d}@example.org" for n in range(count)]
    site.subscribers("email,name\n" + "".join(f"{e},Reader\n" for e in emails))
    assert digest("collect").exit_code == 0
    return emails


def _send(site: Site) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "digest", "--config", str(site.config),
                             "send"], cwd=site.root, env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _statuses(site: Site) -> dict[str, int]:
    return dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=lambda n: n.name)
def test_a_signal_during_send_finishes_the_messages_in_flight_and_sums_up(
        site: Site, smtp: SmtpServer, number: signal.Signals) -> None:
    emails = _sending_site(site, smtp, 300)
    smtp.delay("DATA", 0.02)
    process = _send(site)
    smtp.wait_for(20, timeout=60)
    process.send_signal(number)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + number, err
    assert "Aborted!" not in err and "Traceback" not in err
    counts = _statuses(site)
    assert set(counts) == {"sent", "pending"}  # nothing left in doubt
    assert counts["sent"] == len(smtp.messages) < 300
    assert f"sent {counts['sent']}, deferred 0, failed 0, unknown 0;" in err
    assert f"stopped by {number.name}" in err and "stay pending for the next run" in err

    smtp.clear_faults()
    assert _send(site).wait(60) == 0
    assert smtp.recipients() == dict.fromkeys(emails, 1)


def test_a_second_signal_during_send_exits_at_once_leaving_one_row_per_connection_in_doubt(
        site: Site, smtp: SmtpServer) -> None:
    stuck = "reader020@example.org"
    _sending_site(site, smtp, 300)
    smtp.delay("DATA", 30, times=1, match=stuck)  # its relay hangs: the first signal waits
    process = _send(site)
    deadline = time.monotonic() + 30
    while rows(site.database, "SELECT status FROM deliveries WHERE email = ?", stuck) != [
            ("sending",)]:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert process.poll() is None  # finishing the message in flight, which hangs
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=5)  # at once, not after the relay's 30 s
    assert process.returncode == 128 + signal.SIGINT
    in_doubt = rows(site.database, "SELECT email FROM deliveries WHERE status = 'sending'")
    assert (stuck,) in in_doubt and len(in_doubt) <= CONNECTIONS
