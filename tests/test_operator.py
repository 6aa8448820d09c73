"""The operator's commands: status for monitoring, resend for their own decisions, check
before the first send."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss, sessions_ended

from digest import config, jobs, lock, report
from digest.records import Delivery
from digest.store import FeedState, Store

pytestmark = pytest.mark.backends

ITEMS = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return."),
         Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows."))
SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"


def setup(site: Site, web: FeedServer, smtp: SmtpServer, extra: str = "",
          gone: bool = False) -> None:
    """The News feed, and with `gone` a second one whose URL answers 404 unless served."""
    web.serve("/feed.xml", rss(*ITEMS))
    site.feeds = [("News", web.url("/feed.xml"))]
    if gone:
        site.feeds.append(("Gone", web.url("/gone.xml")))
    site.smtp_port = smtp.port
    site.extra = extra
    site.write()
    site.subscribers(SUBSCRIBERS)


def status() -> tuple[int, dict]:
    result = digest("status", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_a_feed_that_never_worked_needs_attention_from_its_first_failure(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, gone=True)
    digest("collect")
    smtp.reply("RCPT", 550, "no such user", match="bob@example.org")
    digest("send")
    code, report = status()
    assert code == 1
    assert report["editions"][0]["deliveries"] == {"sent": 1, "failed": 1}
    gone = next(feed for feed in report["feeds"] if feed["name"] == "Gone")
    assert gone["error_count"] == 1 and "404" in gone["last_error"]
    assert gone["last_ok"] is None and gone["state"] == "failing"
    assert next(f for f in report["feeds"] if f["name"] == "News")["state"] == "ok"
    assert len(report["attention"]) == 2
    assert report["attention"][0].startswith(f"feed {web.url('/gone.xml')} failing since ")
    assert report["attention"][1] == "edition 1: 1 failed (see `digest resend 1 --help`)"
    table = digest("status").output
    assert re.search(r"│ Gone .*│ failing", table), table


MOMENT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def feed_state(last_ok: datetime | None, error_since: datetime | None) -> FeedState:
    return FeedState(1, "https://example.com/feed.xml", "News", None, None, last_ok,
                     "HTTP 503" if error_since else None, 1 if error_since else 0, error_since,
                     3 if last_ok else 0)


@pytest.mark.parametrize(("last_ok", "error_since", "failing"), [
    (MOMENT - timedelta(hours=2), None, False),  # fine
    (MOMENT - timedelta(hours=2), MOMENT - timedelta(hours=1), False),  # a bad moment
    (MOMENT - timedelta(hours=26), MOMENT - timedelta(hours=24), True),  # down for a day
    (None, MOMENT - timedelta(minutes=1), True),  # never worked: wrong from the start
    (None, None, False),  # not collected yet: new, not failing
])
def test_a_feed_is_failing_when_down_for_a_day_or_never_fetched_at_all(
        last_ok: datetime | None, error_since: datetime | None, failing: bool) -> None:
    feed = feed_state(last_ok, error_since)
    problems = report.attention([feed], [], MOMENT)
    if failing:
        assert error_since is not None
        assert problems == [f"feed {feed.url} failing since "
                            f"{error_since:%Y-%m-%d %H:%M} UTC: HTTP 503"]
    else:
        assert problems == []


def test_the_status_report_says_what_needs_attention_as_of_its_moment(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, gone=True)
    settings = config.load(site.config)
    with Store(site.database) as store:
        jobs.collect(settings, store, clock=lambda: MOMENT)  # Gone answers 404: never worked
    digest("send")
    later = MOMENT + timedelta(minutes=30)
    gone = (f"feed {web.url('/gone.xml')} failing since 2026-11-27 12:00 UTC: "
            "HTTP 404 Not Found")
    fault = "edition 1: its last run stopped on an error: disk full"
    with Store(site.database) as store:
        store.note_fault(1, "disk full")
        store.step(None, Delivery(1, "ann@example.com", "Ann", "sent", 1))  # left `sending`
        found = report.status(settings, store, later)
        assert found.attention == (
            gone, fault, "edition 1: 1 in doubt (left sending) (see `digest resend 1 --help`)")
        assert [(f.feed.name, f.state) for f in found.feeds] == [("News", "ok"),
                                                                 ("Gone", "failing")]
        assert found.pid is None
        with lock.held(config.load(site.config).paths):  # a process at work: the row is in flight
            busy = report.status(settings, store, later)
        assert busy.attention == (gone, fault) and busy.pid == os.getpid()


def test_configured_feeds_not_yet_collected_are_listed_as_new(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, gone=True)
    code, report = status()
    assert code == 0 and report["attention"] == []
    assert [(f["name"], f["state"], f["articles"]) for f in report["feeds"]] == [
        ("News", "new", 0), ("Gone", "new", 0)]
    assert "Gone (" + web.url("/gone.xml") + "): not collected yet" in digest("status").output

    site.feeds = [("News", web.url("/feed.xml"))]
    site.write()
    digest("collect")
    site.feeds.append(("Later", web.url("/later.xml")))  # added after the first collect
    site.write()
    assert [(f["name"], f["state"]) for f in status()[1]["feeds"]] == [
        ("News", "ok"), ("Later", "new")]


def test_a_bad_cron_line_is_reported_and_the_rest_of_status_still_shown(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, '[schedule]\nsend = "0 7 * *"\n')
    digest("collect")
    code, report = status()
    assert code == 1
    assert [(f["name"], f["state"]) for f in report["feeds"]] == [("News", "ok")]
    runs = {run["job"]: run for run in report["scheduler"]["next"]}
    assert runs["collect"]["at"] is not None and runs["collect"]["problem"] is None
    assert runs["send"]["at"] is None
    assert runs["send"]["problem"].startswith("schedule.send '0 7 * *' is not a cron line")
    assert report["attention"] == [runs["send"]["problem"]]
    result = digest("status")
    assert result.exit_code == 1
    assert "Feeds" in result.output and "Subscribers: 2 active" in result.output
    assert "not a schedule" in result.output
    assert "needs attention: schedule.send '0 7 * *' is not a cron line" in result.output


def test_status_exits_0_when_all_is_well_and_shows_the_next_runs(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, '[schedule]\nsend = "0 7 * * *"\n')
    digest("collect")
    digest("send")
    code, report = status()
    assert code == 0 and report["attention"] == []
    next_send = next(run for run in report["scheduler"]["next"] if run["job"] == "send")
    assert next_send["schedule"] == "0 7 * * *" and next_send["at"].endswith("07:00:00+00:00")
    assert report["scheduler"]["pid"] is None
    result = digest("status")
    assert result.exit_code == 0
    assert "Schedule" in result.output and "0 7 * * *" in result.output
    assert "Scheduler: not running" in result.output


def test_resend_to_failed_delivers_once_the_fault_is_gone(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    smtp.reply("RCPT", 550, "mailbox full", match="bob@example.org", times=1)
    digest("send")
    assert smtp.recipients() == {"ann@example.com": 1}

    result = digest("resend", "1", "--to-failed")
    assert result.exit_code == 0, result.output
    assert "1 deliveries back to pending (bob@example.org)" in result.output
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    assert status()[0] == 0


def test_resend_to_unknown_and_to_an_address(site: Site, web: FeedServer,
                                            smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    digest("send")
    with Store(site.database) as store:  # as a crash mid-transaction leaves it
        store.step(None, Delivery(1, "ann@example.com", "Ann", "sent", 1))
    sessions_ended(site.database)  # the process that crashed is gone
    with Store(site.database) as store:  # the next start
        store.recover()
    assert status()[1]["attention"] == ["edition 1: 1 unknown (see `digest resend 1 --help`)"]
    smtp.clear_messages()

    assert digest("resend", "1", "--to-unknown").exit_code == 0
    assert digest("resend", "1", "--to", "Carol@Example.NET").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "Carol@example.net": 1}
    assert rows(site.database, "SELECT email, status FROM deliveries ORDER BY lower(email)") == [
        ("ann@example.com", "sent"), ("bob@example.org", "sent"), ("Carol@example.net", "sent")]


@pytest.mark.parametrize(("args", "says"), [
    (("resend", "1"), "--to-failed, --to-unknown or --to ADDRESS"),
    (("resend", "9", "--to-failed"), "edition 9 does not exist"),
    (("resend", "1", "--to", "not an address"), "not an address"),
])
def test_resend_mistakes_are_one_line(site: Site, web: FeedServer, smtp: SmtpServer,
                                      args: tuple[str, ...], says: str) -> None:
    setup(site, web, smtp)
    digest("collect")
    digest("send")
    result = digest(*args)
    assert result.exit_code == 2
    assert says in result.output


def test_resend_never_mails_a_suppressed_address(site: Site, web: FeedServer,
                                                 smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    smtp.reply("RCPT", 550, match="bob@example.org", times=1)
    digest("send")
    with Store(site.database) as store:
        store.suppress("bob@example.org", "unsubscribed", "test")
    assert "0 deliveries back to pending" in digest("resend", "1", "--to-failed").output
    result = digest("resend", "1", "--to", "bob@example.org")
    assert result.exit_code == 2 and "bob@example.org is suppressed" in result.output
    assert "bob@example.org" not in smtp.recipients()


def test_fewer_articles_than_min_articles_make_no_edition_and_wait(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    # [newsletter] is written already and a TOML table may appear only once.
    site.config.write_text(site.config.read_text().replace(
        'name = "Test Digest"', 'name = "Test Digest"\nmin_articles = 3'))
    digest("collect")
    result = digest("send")
    assert result.exit_code == 0
    assert "only 2 new articles, fewer than newsletter.min_articles = 3" in result.output
    assert smtp.messages == []
    web.serve("/feed.xml", rss(Item("Third", "https://example.com/3", "h3"), *ITEMS))
    digest("collect")
    assert digest("send").exit_code == 0
    assert len(smtp.messages) == 2 and "Third" in smtp.messages[0].message.get_body(
        ("plain",)).get_content()


def smtp_config(site: Site, port: int, templates: str = "templates") -> None:
    site.config.write_text(
        '[newsletter]\nfrom = "Test <news@example.com>"\n'
        f'[delivery]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'security = "none"\nusername = "digest"\ntimeout = 5\n'
        f'[paths]\ntemplates = "{templates}"\n')


def test_check_logs_in_to_the_relay_without_sending(site: Site, smtp: SmtpServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    smtp.require_auth("digest", "s3cret")
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret")
    smtp_config(site, smtp.port, str(Path(__file__).parents[1] / "templates"))
    site.subscribers(SUBSCRIBERS)
    result = digest("check")
    assert result.exit_code == 0, result.output
    assert "AUTH as digest; nothing sent" in result.output
    assert "the sample renders" in result.output and "2 valid" in result.output
    assert smtp.commands["AUTH"] == 1 and smtp.commands["MAIL"] == 0
    assert smtp.messages == []


def test_check_reports_every_problem_at_once(site: Site, smtp: SmtpServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong")
    smtp.require_auth("digest", "s3cret")
    broken = site.root / "broken"
    broken.mkdir()
    (broken / "digest.html").write_text("<html>{% for x in %}</html>")
    (broken / "digest.txt").write_text("text")
    (broken / "style.css").write_text("")
    smtp_config(site, smtp.port, "broken")
    site.subscribers("email,name\nann@example.com,Ann\nnot-an-address,Nobody\n")
    result = digest("check")
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("problem")]
    assert len(problems) == 3, result.output
    assert "digest.html" in problems[0]
    assert "subscribers.csv:3: not-an-address" in problems[1]
    assert "authentication as 'digest' refused: 535" in problems[2]
    assert smtp.messages == []


def test_check_names_an_unreachable_relay(site: Site, smtp: SmtpServer) -> None:
    smtp.stop()
    smtp_config(site, smtp.port, str(Path(__file__).parents[1] / "templates"))
    site.subscribers(SUBSCRIBERS)
    result = digest("check")
    assert result.exit_code == 1
    assert f"SMTP 127.0.0.1:{smtp.port}:" in result.output
    assert "while connecting" in result.output


def test_beside_a_running_scheduler_send_refuses_and_resend_leaves_it_the_work(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    smtp.reply("RCPT", 550, match="bob@example.org", times=1)
    digest("send")
    with lock.held(config.load(site.config).paths):  # as a scheduler process holds it
        result = digest("send")
        assert result.exit_code == 1
        assert f"another digest process (PID {os.getpid()})" in result.output
        result = digest("resend", "1", "--to-failed")
        assert result.exit_code == 0
        assert f"the running scheduler (PID {os.getpid()}) delivers them" in result.output
        assert digest("status", "--json").stdout.count(f'"pid": {os.getpid()}') == 1
    assert smtp.recipients() == {"ann@example.com": 1}
    assert rows(site.database, "SELECT status FROM deliveries WHERE email = 'bob@example.org'"
                ) == [("pending",)]


def test_check_reports_rows_naming_a_section_no_feed_has(site: Site, web: FeedServer,
                                                         smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    site.subscribers("email,name,sections\nann@example.com,Ann,News\n"
                     "bob@example.org,Bob,Sport\n")
    result = digest("check")
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("problem")]
    assert problems == [f"problem subscribers: {site.root / 'subscribers.csv'}:3: "
                        "bob@example.org: unknown section 'Sport' (the feeds are News)"]


@pytest.mark.parametrize(("public_url", "transport", "warned"), [
    ("http://127.0.0.1:8080", "smtp", True),
    ("http://localhost:8080/news", "smtp", True),
    ("http://[::1]:8080", "smtp", True),
    ("https://news.example.com", "smtp", False),
    ("http://127.0.0.1:8080", "maildir", False),  # the outbox is for looking, not for readers
])
def test_check_warns_when_mailed_links_would_point_at_this_machine(
        site: Site, smtp: SmtpServer, public_url: str, transport: str, warned: bool) -> None:
    site.config.write_text(
        f'[newsletter]\npublic_url = "{public_url}"\n[delivery]\ntransport = "{transport}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n')
    site.subscribers(SUBSCRIBERS)
    result = digest("check")
    assert result.exit_code == 0, result.output
    # Only the links' warning: a From at example.com over SMTP draws one of its own (dmarc).
    warnings = [line for line in result.output.splitlines() if line.startswith("warning links")]
    if warned:
        assert warnings == [f"warning links: newsletter.public_url = {public_url!r} is this "
                            "machine (loopback): the unsubscribe, archive and view-in-browser "
                            "links in mail sent over SMTP would point nowhere; set it to where "
                            "`digest serve` is reached"]
        assert result.output.splitlines()[-1].startswith("everything checks out; ")
    else:
        assert warnings == []
