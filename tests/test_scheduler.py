"""`python scheduler.py` as operators run it: a real process, a loopback feed, a real SMTP
server, signals, a second instance, state left by earlier runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, rows, rss

from digest import scheduling
from digest.records import View
from digest.store import Composed, Store, now

# Real processes, real signals and real seconds: left out of a quick loop by -m 'not slow'.
pytestmark = [pytest.mark.slow, pytest.mark.backends]

UTC = ZoneInfo("UTC")
SCHEDULER = Path(__file__).resolve().parents[1] / "scheduler.py"
SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
FIRST = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return."),
         Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows."))


class Scheduler:
    """A scheduler.py process on the site's config, its log (JSON lines) in a file."""

    def __init__(self, site: Site, *args: str) -> None:
        self.log = site.root / f"scheduler-{time.monotonic_ns()}.log"
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, str(SCHEDULER), "--config", str(site.config),
                 "--log-format", "json", *args],
                stdout=subprocess.DEVNULL, stderr=sink, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self, number: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(number)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def running(site: Site, *args: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(site, *args)
    try:
        yield scheduler
    finally:
        scheduler.kill()


def until(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout}s for {what or condition}")
        time.sleep(0.05)


def setup(site: Site, web: FeedServer, smtp: SmtpServer, schedule: str,
          subscribers: str = SUBSCRIBERS) -> None:
    web.serve("/feed.xml", rss(*FIRST))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = "[schedule]\n" + schedule
    site.write()
    site.subscribers(subscribers)


def logged(scheduler: Scheduler, message: str) -> list[dict]:
    return [line for line in scheduler.lines() if line["message"] == message]


@pytest.mark.backends("sqlite")  # in PostgreSQL a second one waits: test_postgres.py
def test_scheduler_collects_sends_keeps_going_and_a_second_one_refuses(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, 'collect = "1s"\njitter = "0s"\nsend = "*/2 * * * * *"\n'
                           'reconcile = "1s"\n')
    with running(site) as scheduler:
        smtp.wait_for(2, timeout=30)

        second = subprocess.run([sys.executable, str(SCHEDULER), "--config", str(site.config)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert f"PID {scheduler.pid}" in second.stderr
        assert "scheduler.lock" in second.stderr

        web.serve("/feed.xml", rss(Item("Lighthouse relit", "https://example.com/light", "h3"),
                                   *FIRST))
        smtp.wait_for(4, timeout=30)
        assert scheduler.process.poll() is None
        assert scheduler.stop() == 0

    assert smtp.recipients() == {"ann@example.com": 2, "bob@example.org": 2}
    assert "Lighthouse relit" in smtp.messages[-1].message["Subject"]
    assert rows(site.database, "SELECT count(*) FROM editions") == [(2,)]
    lines = scheduler.lines()
    assert all({"time", "level", "job", "message"} <= set(line) for line in lines)
    collected = [line for line in lines if line["message"] == "collected"]
    assert collected and collected[0]["job"] == "collect" and collected[0]["new"] == 2
    made = [line for line in lines if line["message"] == "edition made"]
    assert [line["edition"] for line in made] == [1, 2]
    assert lines[-1]["message"] == "scheduler stopped"


def test_after_three_days_down_the_restart_makes_exactly_one_edition(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, 'send = "0 * * * * *"\nreconcile = "1s"\n')
    send = scheduling.cron("0 * * * * *", UTC, "send")
    three_days_ago = scheduling.period(now() - timedelta(days=3), UTC)
    with Store(site.database) as store:
        store.create_edition(Composed(store.next_edition(), three_days_ago, now(),
                                      View("Old", "<p>old</p>", "old"), "<p>old</p>", "0" * 32,
                                      ()), [])

    with running(site) as scheduler:
        smtp.wait_for(2, timeout=30)
        until(lambda: logged(scheduler, "delivered"), what="the delivery to be logged")
        latest = scheduling.due_period(send, UTC, now(), timedelta(hours=6))
        time.sleep(1.5)  # a few reconciles, which must not make another
        assert scheduler.stop() == 0

    editions = rows(site.database, "SELECT period FROM editions ORDER BY id")
    assert len(editions) == 2 and editions[0] == (three_days_ago,)
    # The one made is the latest slot's (or the one before, had a minute turned meanwhile).
    assert editions[1][0] <= latest and editions[1][0] >= scheduling.period(
        now() - timedelta(minutes=3), UTC)
    # Not a catch-up slot by slot: at most the slots since the start were looked at.
    assert rows(site.database, "SELECT count(*) FROM skipped_periods")[0][0] <= 2
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}


def test_sigterm_mid_send_exits_0_and_the_restart_finishes_without_duplicates(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    many = "email\n" + "".join(f"reader{n:04d}@example.com\n" for n in range(2000))
    setup(site, web, smtp, 'send = "0 * * * * *"\n', subscribers=many)
    smtp.delay("DATA", 0.01)
    with running(site) as scheduler:
        smtp.wait_for(100, timeout=60)
        assert scheduler.stop() == 0
    smtp.clear_faults()
    statuses = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
    assert set(statuses) == {"sent", "pending"}
    assert statuses["sent"] == len(smtp.messages) < 2000
    assert logged(scheduler, "stopping: finishing the work in flight")

    with running(site) as restarted:
        smtp.wait_for(2000, timeout=90)
        until(lambda: rows(site.database, "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                           ) == [(2000,)], what="every row sent")
        assert restarted.stop() == 0
    received = smtp.recipients()
    assert len(received) == 2000 and set(received.values()) == {1}
    assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]


def test_a_second_signal_exits_at_once_and_leaves_nothing_sending_after_restart(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    many = "email\n" + "".join(f"reader{n:03d}@example.com\n" for n in range(300))
    setup(site, web, smtp, 'send = "0 * * * * *"\n', subscribers=many)
    smtp.delay("DATA", 2, times=1, match="reader020@example.com")
    with running(site) as scheduler:
        # reader020's DATA hangs at the server for 2 s: its row is committed `sending`.
        smtp.wait_for(20, timeout=60)
        until(lambda: rows(site.database, "SELECT status FROM deliveries WHERE email = "
                           "'reader020@example.com'") == [("sending",)], what="reader020 in flight")
        scheduler.process.send_signal(signal.SIGTERM)
        until(lambda: logged(scheduler, "stopping: finishing the work in flight"))
        status = scheduler.stop(signal.SIGINT)
    assert status == 128 + signal.SIGINT
    # reader020 was in flight; another connection may have been mid-transaction too when the
    # second signal came: at most one row per connection (4) is left in doubt.
    in_doubt = rows(site.database, "SELECT email FROM deliveries WHERE status = 'sending' "
                    "ORDER BY email")
    assert ("reader020@example.com",) in in_doubt and len(in_doubt) <= 4
    smtp.clear_faults()
    with running(site) as restarted:
        until(lambda: rows(site.database, "SELECT count(*) FROM deliveries WHERE status IN "
                           "('pending', 'sending')") == [(0,)], what="the rest delivered")
        assert restarted.stop() == 0
    # The row in flight at the second signal is in doubt: reported, never resent.
    doubt = logged(restarted, "deliveries in doubt after an interrupted run marked unknown "
                              "(see `digest status`, `digest resend`)")
    assert [(line["job"], line["unknown"]) for line in doubt] == [("start", len(in_doubt))]
    assert set(smtp.recipients().values()) == {1}
    unknown = rows(site.database, "SELECT email FROM deliveries WHERE status = 'unknown' "
                   "ORDER BY email")
    assert unknown == in_doubt
    assert rows(site.database, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == [
        (300 - len(in_doubt),)]


def test_once_runs_collect_and_send_then_exits(site: Site, web: FeedServer,
                                               smtp: SmtpServer) -> None:
    setup(site, web, smtp, "")
    result = subprocess.run([sys.executable, str(SCHEDULER), "--config", str(site.config),
                             "--once"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    assert " INFO collect collected new=2 feeds=1 failed=0" in result.stderr


@pytest.mark.backends("sqlite")  # a SQLite file that cannot be opened
def test_a_job_that_fails_is_logged_with_its_error_and_the_scheduler_goes_on(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, 'collect = "1s"\njitter = "0s"\n')
    (site.root / "state" / "digest.db").mkdir(parents=True)  # the database cannot be opened
    with running(site) as scheduler:
        until(lambda: len(logged(scheduler, "job failed")) >= 2, what="two failed runs")
        assert scheduler.process.poll() is None
        assert scheduler.stop() == 0
    failed = logged(scheduler, "job failed")
    assert failed[0]["level"] == "ERROR" and failed[0]["job_id"] == "start"
    assert "sqlite3.OperationalError" in failed[0]["error"]
    assert "Traceback" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert {line["job_id"] for line in failed[1:]} == {"collect"}


def test_a_run_missed_while_the_process_was_frozen_is_logged(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, 'send = "*/4 * * * * *"\ngrace = "1s"\n')
    with running(site) as scheduler:
        until(lambda: logged(scheduler, "delivered"), what="the first edition")
        scheduler.process.send_signal(signal.SIGSTOP)  # as a suspended machine
        send = scheduling.cron("*/4 * * * * *", UTC, "send")
        slot = send.get_next_fire_time(None, now())
        time.sleep(max(0.0, (slot - now()).total_seconds()) + 2.5)
        scheduler.process.send_signal(signal.SIGCONT)
        until(lambda: logged(scheduler, "run missed"), what="the missed run to be logged")
        assert scheduler.stop() == 0
    missed = logged(scheduler, "run missed")
    assert missed[0]["level"] == "WARNING" and missed[0]["job_id"] == "send"
    assert datetime.fromisoformat(missed[0]["scheduled"]) >= slot


def test_once_stops_cleanly_on_sigterm_too(site: Site, web: FeedServer,
                                           smtp: SmtpServer) -> None:
    many = "email\n" + "".join(f"reader{n:03d}@example.com\n" for n in range(300))
    setup(site, web, smtp, "", subscribers=many)
    smtp.delay("DATA", 0.01)
    with running(site, "--once") as scheduler:
        smtp.wait_for(20, timeout=60)
        assert scheduler.stop() == 0
    statuses = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
    assert set(statuses) == {"sent", "pending"}
    assert statuses["sent"] == len(smtp.messages) < 300


def test_the_periodic_reconcile_delivers_deferred_mail_once_its_time_has_come(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, 'send = "0 * * * * *"\nreconcile = "1s"\n')
    # Deferring until told otherwise: a run retries a 4xx a few times before it defers.
    smtp.reply("RCPT", 451, "try later", match="bob@example.org")
    with running(site) as scheduler:
        smtp.wait_for(1, timeout=30)
        until(lambda: rows(site.database, "SELECT status FROM deliveries WHERE email = "
                           "'bob@example.org'") == [("deferred",)], what="bob deferred")
        smtp.clear_faults()
        rows(site.database, "UPDATE deliveries SET next_try = NULL")  # as if the backoff passed
        smtp.wait_for(2, timeout=30)
        assert scheduler.stop() == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    # Delivered by a later run than the start's: the reconcile (or a send slot, had a minute
    # turned meanwhile).
    later = [line for line in logged(scheduler, "delivered") if line["job"] != "start"]
    assert [(line["job"] in ("reconcile", "send"), line["sent"]) for line in later] == [(True, 1)]
