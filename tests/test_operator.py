"""The operator's commands: status for monitoring, resend for their own decisions, check
before the first send."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest import lock
from digest.records import Delivery
from digest.store import Store, now

ITEMS = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return."),
         Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows."))
SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"


def setup(site: Site, web: FeedServer, smtp: SmtpServer, extra: str = "") -> None:
    web.serve("/feed.xml", rss(*ITEMS))
    site.feeds = [("News", web.url("/feed.xml")), ("Gone", web.url("/gone.xml"))]
    site.smtp_port = smtp.port
    site.extra = extra
    site.write()
    site.subscribers(SUBSCRIBERS)


def status() -> tuple[int, dict]:
    result = digest("status", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_status_json_reflects_a_feed_down_for_a_day_and_a_failed_delivery(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    smtp.reply("RCPT", 550, "no such user", match="bob@example.org")
    digest("send")
    code, report = status()
    assert code == 1
    assert report["editions"][0]["deliveries"] == {"sent": 1, "failed": 1}
    assert report["attention"] == ["edition 1: 1 failed (see `digest resend 1 --help`)"]
    gone = next(feed for feed in report["feeds"] if feed["name"] == "Gone")
    assert gone["error_count"] == 1 and "404" in gone["last_error"]

    # The same feed failing since yesterday is down, not having a bad moment.
    with Store(site.database) as store:
        state = store.feed(web.url("/gone.xml"), "Gone")
        store.feed_ok(state.id, None, None, now() - timedelta(hours=26))
        store.feed_failed(state.id, "HTTP 404", now() - timedelta(hours=25))
    digest("collect")
    code, report = status()
    assert code == 1
    assert report["attention"][0].startswith(f"feed {web.url('/gone.xml')} failing since")
    assert len(report["attention"]) == 2


def test_status_exits_0_when_all_is_well_and_shows_the_next_runs(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, '[schedule]\nsend = "0 7 * * *"\n')
    digest("collect")  # the 404 feed failed just now: not yet a reason to wake anyone
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
    assert says in result.output and "Traceback" not in result.output


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
    with lock.held(site.root / "state"):  # as a scheduler process holds it
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
