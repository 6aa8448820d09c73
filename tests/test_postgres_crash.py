"""Beyond one machine, on a real PostgreSQL server: two senders on one edition while one of
them is killed again and again, and two schedulers sharing one state."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import PostgresServer
from servers import FeedServer, SmtpServer
from support import Item, Site, rows, rss
from test_crash import KILLS, assert_accounted, crash_site, received, relay_process, sender
from test_scheduler import Scheduler, logged, until

# Real processes, real signals and real seconds: left out of a quick loop by -m 'not slow'.
pytestmark = pytest.mark.slow


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Slow enough (20 ms a message) that two senders take some seconds over 2,000: there is
    time to kill one five times."""
    with relay_process(tmp_path, 0.02) as relayed:
        yield relayed


def test_two_senders_on_one_edition_one_killed_five_times_never_mail_twice(
        site: Site, relay: tuple[int, Path], postgres: PostgresServer) -> None:
    port, log = relay
    site.store = postgres.database()
    emails, seed = crash_site(site, port)
    chance = random.Random(seed)

    # The first makes the edition; the second, started once mail flows, works on it too.
    senders = [sender(site)]
    until(lambda: sum(received(log).values()) > 0, what="the first messages")
    senders.append(sender(site))
    for kill in range(KILLS):
        before = sum(received(log).values())
        deadline = time.monotonic() + 20
        while sum(received(log).values()) <= before + 20:  # mid-send, not during start-up
            assert all(p.poll() is None for p in senders), (
                f"a sender ended before kill {kill + 1} (seed {seed})")
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(chance.uniform(0, 0.3))
        victim = chance.randrange(2)
        senders[victim].send_signal(signal.SIGKILL)
        senders[victim].wait()
        other = senders[1 - victim]
        assert other.poll() is None, f"the other sender stopped with the kill (seed {seed})"
        going = sum(received(log).values())
        until(lambda going=going: sum(received(log).values()) > going + 5, timeout=20,
              what="the other sender to carry on alone")
        senders[victim] = sender(site)  # restarted: it recovers only the dead one's rows
    for process in senders:
        assert process.wait(120) in (0, 1), f"seed {seed}"
    assert sender(site).wait(60) in (0, 1)  # whatever is still in doubt is marked so

    assert_accounted(site, log, emails, seed)


def test_two_schedulers_on_one_state_make_one_edition_per_slot_and_the_standby_takes_over(
        site: Site, web: FeedServer, smtp: SmtpServer, postgres: PostgresServer) -> None:
    site.store = postgres.database()
    web.serve("/feed.xml", rss(Item("Harbour opens", "https://example.com/harbour", "h1")))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = ('[schedule]\ncollect = "1s"\njitter = "0s"\nsend = "*/2 * * * * *"\n'
                  'reconcile = "1s"\n')
    site.write()
    site.subscribers("email,name\nann@example.com,Ann\nbob@example.org,Bob\n")
    first, second = Scheduler(site), Scheduler(site)
    try:
        smtp.wait_for(2, timeout=30)
        # One of them holds the state's lock and works; the other waits as a standby.
        working, standby = ((first, second) if logged(first, "scheduler started")
                            else (second, first))
        assert not logged(standby, "scheduler started")
        web.serve("/feed.xml", rss(Item("Bridge repaired", "https://example.com/bridge", "h2"),
                                   Item("Harbour opens", "https://example.com/harbour", "h1")))
        smtp.wait_for(4, timeout=30)
        working.process.send_signal(signal.SIGKILL)  # its machine died
        working.process.wait(10)
        until(lambda: logged(standby, "scheduler started"), what="the standby to take over")
        web.serve("/feed.xml", rss(Item("Lighthouse relit", "https://example.com/light", "h3"),
                                   Item("Bridge repaired", "https://example.com/bridge", "h2"),
                                   Item("Harbour opens", "https://example.com/harbour", "h1")))
        smtp.wait_for(6, timeout=30)
        until(lambda: logged(standby, "edition made"), what="an edition by the standby")
        assert standby.stop() == 0
    finally:
        first.kill()
        second.kill()
    # Each new story made one edition, by one of them, mailed once to each.
    assert rows(site.database, "SELECT count(*) FROM editions") == [(3,)]
    assert [line["edition"] for line in logged(standby, "edition made")] == [3]
    assert smtp.recipients() == {"ann@example.com": 3, "bob@example.org": 3}
