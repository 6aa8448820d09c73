"""Daily and weekly subscribers on one list, from the same feeds: each gets the editions of
their cadence, and a weekly edition holds the week's stories whatever the daily ones mailed.
Real SQLite, a loopback feed, real SMTP; the moments are handed to the store and the jobs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest import config as configuration
from digest import deliver, jobs, scheduling
from digest.clock import Lapse
from digest.config import Config
from digest.store import Store

pytestmark = pytest.mark.backends

SUBSCRIBERS = ("email,name,cadence\nann@example.com,Ann,daily\nwes@example.com,Wes,weekly\n"
               "dee@example.com,Dee,\n")
MONDAY = datetime(2026, 11, 30, 7, tzinfo=UTC)


def story(n: int, day: int) -> Item:
    """Story n, dated on a day of the week before MONDAY (0 = the Monday a week earlier)."""
    dated = (MONDAY - timedelta(days=7 - day)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return Item(f"Story {n}", f"https://example.com/{n}", f"s{n}", f"Teaser {n}.", dated)


def setup(site: Site, web: FeedServer, smtp: SmtpServer, newsletter: str = "") -> Config:
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.config.write_text(site.config.read_text().replace(
        "[newsletter]\n", "[newsletter]\n" + newsletter, 1))
    site.subscribers(SUBSCRIBERS)
    # Every story of the feed may be mailed: the first-run guard is not what is tested.
    with site.config.open("a") as config:
        config.write("[collect]\nfirst_run = 0\n")
    return configuration.load(site.config)


def collect(config: Config, web: FeedServer, at: datetime, *items: Item) -> None:
    web.serve("/feed.xml", rss(*items))
    with Store(config.paths.database, lambda: at) as store:
        jobs.collect(config, store, clock=lambda: at)


def send(config: Config, at: datetime, cadence: str = "daily") -> jobs.Sent:
    with Store(config.paths.database, lambda: at) as store:
        return jobs.send(config, store, deliver.transport(config), cadence=cadence)


def weekly_articles(site: Site, edition: int) -> list[str]:
    return [row[0] for row in rows(
        site.database, "SELECT articles.title FROM edition_articles JOIN articles ON "
        "articles.id = article_id WHERE edition_id = ? AND cadence = 'weekly' "
        "ORDER BY position", edition)]


def test_a_weekly_edition_carries_the_week_whatever_the_dailies_mailed_to_weekly_readers_only(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp)
    collect(config, web, MONDAY - timedelta(days=6), story(1, 1), story(2, 1))
    daily = send(config, MONDAY - timedelta(days=6) + timedelta(hours=1))
    assert daily.edition is not None
    collect(config, web, MONDAY - timedelta(days=3), story(3, 4), story(1, 1), story(2, 1))
    send(config, MONDAY - timedelta(days=3) + timedelta(hours=1))
    # Daily readers (Dee has no cadence: daily) got both dailies; Wes none of them.
    assert smtp.recipients() == {"ann@example.com": 2, "dee@example.com": 2}
    smtp.clear_messages()

    weekly = send(config, MONDAY, "weekly")
    assert weekly.edition is not None
    assert smtp.recipients() == {"wes@example.com": 1}
    message = smtp.messages[0].message
    assert message["Subject"].startswith("Weekly round-up: Test Digest: Story 3")
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Weekly round-up" in html and text.splitlines()[1].startswith("Weekly round-up")
    # Newest first, every story of the week, though the dailies mailed them all.
    assert weekly_articles(site, weekly.edition.id) == ["Story 3", "Story 1", "Story 2"]
    assert text.index("Story 3") < text.index("Story 1") < text.index("Story 2")
    assert rows(site.database, "SELECT cadence, count(*) FROM editions GROUP BY cadence") == [
        ("daily", 2), ("weekly", 1)]


def test_the_next_weekly_edition_holds_only_what_was_collected_since_the_last(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp)
    collect(config, web, MONDAY - timedelta(days=2), story(1, 5))
    first = send(config, MONDAY, "weekly").edition
    collect(config, web, MONDAY + timedelta(days=2), story(2, 9), story(1, 5))
    second = send(config, MONDAY + timedelta(days=7), "weekly").edition
    assert first is not None and second is not None
    assert weekly_articles(site, first.id) == ["Story 1"]
    assert weekly_articles(site, second.id) == ["Story 2"]
    # A weekly slot with nothing new makes no edition.
    nothing = send(config, MONDAY + timedelta(days=14), "weekly")
    assert nothing.edition is None and "since the last weekly edition" in nothing.note


def test_the_first_weekly_edition_looks_back_seven_days(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp)
    collect(config, web, MONDAY - timedelta(days=8), story(1, 0))
    collect(config, web, MONDAY - timedelta(days=6), story(2, 1), story(1, 0))
    weekly = send(config, MONDAY, "weekly").edition
    assert weekly is not None
    assert weekly_articles(site, weekly.id) == ["Story 2"]


def test_a_weekly_edition_past_max_articles_mails_the_newest_and_links_the_rest(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp, "max_articles = 2\n")
    collect(config, web, MONDAY - timedelta(days=1), story(1, 1), story(2, 3), story(3, 5))
    weekly = send(config, MONDAY, "weekly").edition
    assert weekly is not None
    # The edition holds the whole week (its web version shows it); the mail its newest two.
    assert weekly_articles(site, weekly.id) == ["Story 3", "Story 2", "Story 1"]
    text = smtp.messages[0].message.get_body(("plain",)).get_content()
    assert "Story 3" in text and "Story 2" in text and "Story 1" not in text
    assert "1 more story" in text and f"/archive/{weekly.id}" in text
    with Store(config.paths.database) as store:
        assert "Story 1" in store.web_page(weekly.id).html


def test_min_articles_applies_to_each_cadence(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp, "min_articles = 2\n")
    collect(config, web, MONDAY - timedelta(days=1), story(1, 6))
    assert send(config, MONDAY, "weekly").edition is None
    assert send(config, MONDAY).edition is None
    collect(config, web, MONDAY + timedelta(hours=1), story(2, 7), story(1, 6))
    assert send(config, MONDAY + timedelta(hours=2), "weekly").edition is not None
    assert send(config, MONDAY + timedelta(hours=2)).edition is not None
    assert smtp.recipients() == {"ann@example.com": 1, "dee@example.com": 1,
                                 "wes@example.com": 1}


def test_the_weekly_words_are_in_the_newsletters_language(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp, 'language = "de"\n')
    collect(config, web, MONDAY - timedelta(days=1), story(1, 6))
    assert send(config, MONDAY, "weekly").edition is not None
    message = smtp.messages[0].message
    assert message["Subject"].startswith("Wochenrückblick: ")
    assert "Wochenrückblick" in message.get_body(("html",)).get_content()


def test_send_cadence_weekly_on_the_command_line_and_status_per_cadence(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    web.serve("/feed.xml", rss(story(1, 6), story(2, 6)))
    assert digest("collect").exit_code == 0
    daily = digest("send")
    assert daily.exit_code == 0, daily.output
    weekly = digest("send", "--cadence", "weekly")
    assert weekly.exit_code == 0, weekly.output
    assert "weekly edition 2: 2 articles to 1 subscribers" in weekly.output
    assert smtp.recipients() == {"ann@example.com": 1, "dee@example.com": 1,
                                 "wes@example.com": 1}
    wrong = digest("send", "--cadence", "monthly")
    assert wrong.exit_code == 2 and "monthly" in wrong.output


    found = json.loads(digest("status", "--json").output)
    assert [(e["id"], e["cadence"]) for e in found["editions"]] == [(2, "weekly"), (1, "daily")]
    assert found["subscribers"]["cadences"] == {"daily": 2, "weekly": 1}
    jobs_next = {run["job"]: run for run in found["scheduler"]["next"]}
    assert jobs_next["weekly"]["schedule"] == "0 7 * * 1"
    assert datetime.fromisoformat(jobs_next["weekly"]["at"]).weekday() == 0
    shown = digest("status").output
    assert "weekly" in shown and "1 weekly" in shown


# -- a fortnight in the real scheduler process, on a time lapse ------------------------------

SCHEDULER = Path(__file__).resolve().parents[1] / "scheduler.py"
SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)
# The stories start on the Saturday before; the lapse shows it five real seconds after the
# process is started, so that it is up (a few seconds under load) before the first of them.
ORIGIN = SUNDAY - timedelta(hours=12)
LEAD = 5
SPEED = 6 * 3600  # six simulated hours a real second: the fortnight takes a minute
EVERY = timedelta(hours=5)  # the feed publishes a story this often
# The collect job runs beside the send job: an article read just before a weekly edition was
# made may be stored just after it, and is then the next one's. Slack for that, in
# simulated time (a tenth of a real second under load).
STORED_LATE = timedelta(hours=3)
LISTED = ("email,name,cadence\nann@example.com,Ann,daily\ndee@example.com,Dee,\n"
          "wes@example.com,Wes,weekly\nwil@example.com,Wil,weekly\n")


class Publisher:
    """The loopback feed as time passes on the lapse: a story every five simulated hours,
    the latest fifteen listed, each dated when it came out."""

    def __init__(self, web: FeedServer, lapse: Lapse) -> None:
        self.web, self.lapse = web, lapse
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Publisher:
        self._publish()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    def _publish(self) -> None:
        out = max(0, int((self.lapse.now() - ORIGIN) / EVERY) + 1)
        self.web.serve("/feed.xml", rss(*[
            Item(f"Story {n}", f"https://example.com/{n}", f"s{n}", f"Teaser {n}.",
                 format_datetime(ORIGIN + n * EVERY, usegmt=True))
            for n in range(max(0, out - 15), out)][::-1]))

    def _run(self) -> None:
        while not self.done.wait(0.02):
            self._publish()


def scheduler(site: Site, lapse: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, str(SCHEDULER), "--config", str(site.config), "--log-format",
             "json", "--time-lapse", lapse], stdout=subprocess.DEVNULL, stderr=sink)


def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout}s for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_fortnight_of_daily_and_weekly_readers_in_the_real_scheduler_with_a_restart(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = ('[schedule]\ncollect = "2h"\njitter = "0s"\nsend = "0 7 * * *"\n'
                  'weekly = "0 7 * * 1"\nreconcile = "1h"\ngrace = "30h"\n'
                  "[collect]\nfirst_run = 0\n")
    site.write()
    site.config.write_text(site.config.read_text().replace(
        "[newsletter]\n", "[newsletter]\nmax_articles = 10\n", 1))
    site.subscribers(LISTED)
    # Real time is read only to pace the test and as the lapse's real origin: the simulated
    # fortnight is the same whatever the day the test runs.
    lapse = Lapse(ORIGIN, time.time() + LEAD, SPEED)
    option = f"{ORIGIN.isoformat()},{lapse.real_origin},{SPEED}"

    def wait_for(moment: datetime) -> None:
        time.sleep(max(0.0, lapse.real(moment).timestamp() - time.time()))

    def daily_mailed(period: str) -> bool:
        return rows(site.database, "SELECT count(*) FROM deliveries JOIN editions ON "
                    "editions.id = edition_id WHERE cadence = 'daily' AND period = ? AND "
                    "status = 'sent'", period) == [(2,)]

    with Publisher(web, lapse):
        first = scheduler(site, option, site.root / "first.log")
        try:
            # Stopped on Wednesday afternoon, mid-week, started again at 02:00 on Thursday:
            # Thursday's 07:00 edition is made when the process is up, on time or (after a
            # slow start) made up within the grace period.
            wait_for(SUNDAY + timedelta(days=3, hours=14))
            first.send_signal(signal.SIGTERM)
            assert first.wait(30) == 0
        finally:
            first.kill()
        wait_for(SUNDAY + timedelta(days=4, hours=2))
        second = scheduler(site, option, site.root / "second.log")
        try:
            until(lambda: daily_mailed("2026-12-12T07:00:00"), 90, "the last daily edition")
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            second.kill()

    editions = rows(site.database, "SELECT id, cadence, period, created_at FROM editions "
                    "ORDER BY id")
    dailies = [period for _, cadence, period, _ in editions if cadence == "daily"]
    weeklies = [(number, datetime.fromisoformat(made)) for number, cadence, _, made in editions
                if cadence == "weekly"]
    # One edition a day from Sunday (the first with stories), none missed, none twice. The
    # weekly one each Monday.
    days = [f"2026-{day:%m-%d}T07:00:00" for day in (SUNDAY + timedelta(days=n)
                                                     for n in range(len(dailies)))]
    assert dailies == days and len(dailies) >= 14
    assert [period for _, cadence, period, _ in editions if cadence == "weekly"] == [
        "2026-11-30T07:00:00", "2026-12-07T07:00:00"][:len(weeklies)] and len(weeklies) == 2

    # Each reader got exactly one copy of each edition of their cadence, and nothing else.
    copies = [(received.rcpt_tos[0], received.message["Message-ID"],
               received.message["Subject"]) for received in smtp.messages]
    assert len({(email, ident) for email, ident, _ in copies}) == len(copies)
    got = smtp.recipients()
    assert got == {"ann@example.com": len(dailies), "dee@example.com": len(dailies),
                   "wes@example.com": 2, "wil@example.com": 2}
    for email, _, subject in copies:
        assert subject.startswith("Weekly round-up") == (email.startswith("w")), (email, subject)
    ledger = rows(site.database, "SELECT editions.cadence, deliveries.email, deliveries.status, "
                  "count(*) FROM deliveries JOIN editions ON editions.id = edition_id "
                  "GROUP BY 1, 2, 3 ORDER BY 1, 2")
    assert ledger == [("daily", "ann@example.com", "sent", len(dailies)),
                      ("daily", "dee@example.com", "sent", len(dailies)),
                      ("weekly", "wes@example.com", "sent", 2),
                      ("weekly", "wil@example.com", "sent", 2)]

    # Every weekly edition holds the articles collected since the previous one (the first:
    # the week before it), whatever the dailies mailed: each article of those weeks in
    # exactly one weekly edition.
    articles = {key: datetime.fromisoformat(collected) for key, collected in rows(
        site.database, "SELECT key, collected_at FROM articles WHERE eligible")}
    members = {number: {key for (key,) in rows(
        site.database, "SELECT articles.key FROM edition_articles JOIN articles ON "
        "articles.id = article_id WHERE edition_id = ?", number)} for number, _ in weeklies}
    earlier: set[str] = set()
    since = weeklies[0][1] - timedelta(days=7)
    def collected(start: datetime, end: datetime, earlier: set[str]) -> set[str]:
        return {key for key, at in articles.items() if start <= at <= end} - earlier

    for number, made in weeklies:
        assert collected(since, made - STORED_LATE, earlier) <= members[number], number
        assert members[number] <= collected(since - STORED_LATE, made, earlier), number
        # The stories since Saturday noon, then a whole week's (one every five hours).
        assert len(members[number]) >= (8 if number == weeklies[0][0] else 30)
        earlier |= members[number]
        since = made
    # A week of stories (one every five hours) is more than max_articles: the mail links
    # the rest.
    text = [received.message.get_body(("plain",)).get_content() for received in smtp.messages
            if received.rcpt_tos[0] == "wes@example.com"][-1]
    assert "more stories" in text and text.count("Story ") <= 10

    logs = [json.loads(line) for name in ("first.log", "second.log")
            for line in (site.root / name).read_text().splitlines() if line.strip()]
    assert [line["message"] for line in logs].count("scheduler started") == 2
    assert not [line for line in logs if line["level"] in ("ERROR", "CRITICAL")]


class Hands:
    """A clock the test sets."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_a_slot_made_up_at_start_waits_for_the_collect_already_under_way(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    config = setup(site, web, smtp)
    # The feed answers slowly: the scheduled collect is still fetching when start comes.
    web.serve("/feed.xml", rss(story(1, 6)), delay=1.5)
    runner = scheduling.Runner(config, threading.Event(), Hands(MONDAY + timedelta(hours=1)))
    fetching = threading.Thread(target=runner.collect)
    fetching.start()
    until(lambda: web.requests_to("/feed.xml"), 10, "the collect to be fetching")
    runner.start()
    fetching.join(10)
    # Monday's 07:00 slots, an hour ago, are made up with the story, not let pass for want
    # of it: the daily and the weekly one.
    assert rows(site.database, "SELECT count(*) FROM skipped_periods") == [(0,)]
    assert rows(site.database, "SELECT cadence, period FROM editions ORDER BY id") == [
        ("daily", "2026-11-30T07:00:00"), ("weekly", "2026-11-30T07:00:00")]
    assert smtp.recipients() == {"ann@example.com": 1, "dee@example.com": 1,
                                 "wes@example.com": 1}
