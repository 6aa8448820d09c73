"""Every SMTP fault the pool must survive, each injected in a real aiosmtpd relay on loopback,
and the ledger checked in the real SQLite file afterwards."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from servers import FeedServer, Received, SmtpServer, free_port
from support import Item, Site, digest, rows, rss, serving

from digest import config as configuration
from digest import deliver, jobs, tokens
from digest.errors import DigestError
from digest.records import Outcome
from digest.store import Store
from digest.web import public as public_web

pytestmark = pytest.mark.backends

ANN, BOB = "ann@example.com", "bob@example.org"
# In-run retries come quickly in tests; the policy is the same.
FAST = "retry_backoff = 0.01\n"


def prepare(site: Site, web: FeedServer, smtp: SmtpServer, emails: list[str] | None = None,
            extra: str = "", title: str = "Harbour opens") -> None:
    """A site with one collected article, mailing `emails` through `smtp`."""
    web.serve("/feed.xml", rss(Item(title, f"https://example.com/{len(title)}", title)))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = FAST + extra  # lands in [smtp], the last table written
    site.write()
    emails = emails or [ANN, BOB]
    site.subscribers("email,name\n" + "".join(f"{e},{e.split('@')[0].title()}\n"
                                               for e in emails))
    assert digest("collect").exit_code == 0


def ledger(site: Site) -> dict[str, tuple[str, str | None]]:
    return {email: (status, response) for email, status, response in rows(
        site.database, "SELECT email, status, last_response FROM deliveries")}


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize("code", [421, 450, 451, 452])
def test_a_transient_reply_is_retried_on_a_fresh_connection_and_mails_once(
        site: Site, web: FeedServer, smtp: SmtpServer, command: str, code: int) -> None:
    prepare(site, web, smtp, extra="connections = 1\n")
    smtp.reply(command, code, times=1)
    result = digest("send")
    assert result.exit_code == 0, result.output
    assert smtp.recipients() == {ANN: 1, BOB: 1}
    assert {status for status, _ in ledger(site).values()} == {"sent"}
    assert smtp.connections == 2  # the retry went out on a new connection


def test_a_relay_deferring_everything_leaves_rows_deferred_for_the_next_run(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp, extra="retries = 2\n")
    smtp.reply("RCPT", 451)
    assert digest("send").exit_code == 1
    assert smtp.commands["RCPT"] == 2 * 3  # each address: one try and two retries
    found = rows(site.database, "SELECT status, next_try IS NOT NULL, last_response, attempts "
                                "FROM deliveries")
    assert {row[:2] for row in found} == {("deferred", 1)}
    assert all("451" in row[2] and row[3] == 1 for row in found)

    smtp.clear_faults()
    assert digest("send").exit_code == 0  # not due yet: the backoff holds them back
    assert smtp.messages == []
    rows(site.database, "UPDATE deliveries SET next_try = '2000-01-01T00:00:00+00:00'")
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {ANN: 1, BOB: 1}


def test_a_connection_dropped_before_the_final_reply_is_retried(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    smtp.drop_in_data(times=1, match=BOB)
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {ANN: 1, BOB: 1}
    assert ledger(site)[BOB][0] == "sent"


@pytest.mark.parametrize(("command", "code"), [
    ("RCPT", 550), ("RCPT", 551), ("RCPT", 553), ("RCPT", 554), ("DATA", 552), ("DATA", 554)])
def test_a_permanent_refusal_fails_that_address_only_with_the_reply_kept(
        site: Site, web: FeedServer, smtp: SmtpServer, command: str, code: int) -> None:
    prepare(site, web, smtp)
    smtp.reply(command, code, "5.1.1 no such mailbox here", match=BOB)
    result = digest("send")
    assert result.exit_code == 1
    assert smtp.recipients() == {ANN: 1}
    assert ledger(site)[ANN][0] == "sent"
    assert ledger(site)[BOB] == ("failed", f"{code} 5.1.1 no such mailbox here")
    assert smtp.commands[command] == 2  # no retry of a permanent refusal
    assert "failed 1" in result.output


def test_an_address_failing_three_editions_in_a_row_is_suppressed(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    smtp.reply("RCPT", 550, match=BOB)
    for number in range(3):
        if number:
            web.serve("/feed.xml", rss(Item(f"Story {number}", f"https://example.com/{number}",
                                            f"s{number}")))
            digest("collect")
        digest("send")
        assert rows(site.database, "SELECT count(*) FROM suppressions") == [(number == 2,)]
    assert rows(site.database, "SELECT email, reason FROM suppressions") == [(BOB, "bounced")]
    web.serve("/feed.xml", rss(Item("Story 4", "https://example.com/4", "s4")))
    digest("collect")
    assert digest("send").exit_code == 0
    assert rows(site.database, "SELECT email FROM deliveries WHERE edition_id = 4") == [(ANN,)]


def test_a_failure_between_two_editions_resets_the_bounce_count(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    for number in range(4):
        if number:
            web.serve("/feed.xml", rss(Item(f"Story {number}", f"https://example.com/{number}",
                                            f"s{number}")))
            digest("collect")
        smtp.clear_faults()
        if number != 1:
            smtp.reply("RCPT", 550, match=BOB)
        digest("send")
    assert rows(site.database, "SELECT count(*) FROM suppressions") == [(0,)]


def test_authentication_refused_at_the_start_touches_no_delivery(
        site: Site, web: FeedServer, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp.require_auth("digest", "right")
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong")
    prepare(site, web, smtp, extra='username = "digest"\n')
    result = digest("send")
    assert result.exit_code == 1
    assert (f"cannot reach SMTP relay 127.0.0.1:{smtp.port}: authentication as 'digest' "
            "refused: 535") in result.output
    assert set(rows(site.database, "SELECT status FROM deliveries")) <= {("pending",)}
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "right")
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {ANN: 1, BOB: 1}


def test_starttls_refused_at_the_start_is_named_and_touches_nothing(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    site.config.write_text(site.config.read_text().replace('security = "none"',
                                                           'security = "starttls"'))
    result = digest("send")
    assert result.exit_code == 1
    assert f"cannot reach SMTP relay 127.0.0.1:{smtp.port}" in result.output
    assert "STARTTLS" in result.output
    assert rows(site.database, "SELECT count(*) FROM deliveries WHERE status != 'pending'") == [
        (0,)]
    assert smtp.messages == []


def test_an_unreachable_relay_is_named_with_the_reason(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    smtp.stop()
    result = digest("send")
    assert result.exit_code == 1
    assert f"127.0.0.1:{smtp.port}: Connection refused" in result.output


def test_a_server_too_slow_to_answer_times_out_and_the_message_is_retried(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp, extra="connections = 1\n")
    site.config.write_text(site.config.read_text().replace("timeout = 5", "timeout = 0.3"))
    smtp.delay("MAIL", 2, times=1)
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {ANN: 1, BOB: 1}
    assert smtp.connections == 2


def test_a_run_of_failures_pauses_the_send_instead_of_burning_the_list(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(30)]
    prepare(site, web, smtp, emails, "pause_after_failures = 5\nconnections = 2\n")
    smtp.reply("RCPT", 554)
    result = digest("send")
    assert result.exit_code == 1
    assert "paused after 5 failed or deferred messages in a row" in result.output
    counts = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
    assert 5 <= counts["failed"] <= 6  # the other connection's message in flight
    assert counts["pending"] == 30 - counts["failed"]
    smtp.clear_faults()
    assert digest("send").exit_code == 0
    assert len(smtp.recipients()) == counts["pending"]


def test_the_hourly_cap_leaves_the_rest_for_the_next_run(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(5)]
    prepare(site, web, smtp, emails, "hourly_cap = 3\n")
    result = digest("send")
    assert "hourly cap of 3 messages reached" in result.output
    assert len(smtp.messages) == 3
    assert rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1 ORDER BY 1") == [
        ("pending", 2), ("sent", 3)]
    digest("send")  # the same hour: the cap still holds, across runs
    assert len(smtp.messages) == 3


def test_connections_are_parallel(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(6)]
    prepare(site, web, smtp, emails, "connections = 3\n")
    smtp.delay("DATA", 0.3)  # one connection alone would carry them all in turn
    assert digest("send").exit_code == 0
    assert smtp.recipients() == dict.fromkeys(emails, 1)
    assert smtp.connections == 3


def test_a_connection_is_reopened_after_its_message_limit(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(5)]
    prepare(site, web, smtp, emails, "connections = 1\nmessages_per_connection = 2\n")
    assert digest("send").exit_code == 0
    assert smtp.recipients() == dict.fromkeys(emails, 1)
    assert smtp.connections == 3
    assert smtp.commands["QUIT"] == 3  # each closed politely


def test_deferred_rows_past_the_maximum_age_fail(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp, extra="deferred_max_age = 1\n")
    smtp.reply("MAIL", 451)
    digest("send")
    rows(site.database, "UPDATE editions SET created_at = '2000-01-01T00:00:00+00:00'")
    smtp.clear_faults()
    assert digest("send").exit_code == 1
    statuses = rows(site.database, "SELECT status, last_response FROM deliveries")
    assert {status for status, _ in statuses} == {"failed"}
    assert all(response.startswith("gave up") and "451" in response
               for _, response in statuses)
    assert smtp.messages == []


def test_stop_finishes_the_transactions_in_flight_and_leaves_nothing_sending(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(40)]
    prepare(site, web, smtp, emails, "connections = 4\n")
    smtp.delay("DATA", 0.05)
    config = configuration.load(site.config)
    stop = threading.Event()
    with Store(config.paths.database) as store:
        sent = jobs.send(config, store, deliver.transport(config),
                         progress=lambda outcome: stop.set(), stop=stop)
    counts = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
    assert "sending" not in counts
    assert 1 <= counts["sent"] <= 4  # those in flight when told to stop, each recorded
    assert counts["sent"] == len(smtp.messages) == sent.count(Outcome.SENT)
    assert counts["pending"] == 40 - counts["sent"]


def test_a_relay_gone_mid_send_leaves_the_rest_queued_for_the_next_run(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n}@example.org" for n in range(6)]
    prepare(site, web, smtp, emails, "connections = 1\nmessages_per_connection = 1\n")
    config = configuration.load(site.config)
    with Store(config.paths.database) as store, pytest.raises(DigestError) as raised:
        jobs.send(config, store, deliver.transport(config), progress=lambda outcome: smtp.stop())
    assert f"cannot reach SMTP relay 127.0.0.1:{smtp.port}" in str(raised.value)
    assert "stays queued for the next run" in str(raised.value)
    counts = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
    assert counts["sent"] == 1 and "sending" not in counts
    smtp.start()
    assert digest("send").exit_code == 0
    assert smtp.recipients() == dict.fromkeys(emails, 1)


def test_dry_run_counts_and_estimates_without_sending_or_recording(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp, extra="rate = 0.5\n")
    result = digest("send", "--dry-run")
    assert result.exit_code == 0
    assert "a new edition: 1 articles to 2 subscribers" in result.output
    assert "dry run: 2 messages would be sent, about 4 s at smtp.rate = 0.5/s" in result.output
    assert rows(site.database, "SELECT count(*) FROM editions") == [(0,)]
    assert smtp.messages == []


def test_send_ends_with_a_summary_of_every_outcome(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    smtp.reply("RCPT", 550, match=BOB)
    result = digest("send")
    assert "sent 1, deferred 0, failed 1, unknown 0;" in result.output
    assert "messages/s" in result.output


def test_a_line_starting_with_a_dot_arrives_intact(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp, ["dot@example.com"])
    site.subscribers("email,name\ndot@example.com,.Dot\n")
    assert digest("send").exit_code == 0
    message = smtp.messages[0].message
    assert message["To"].addresses[0].display_name == ".Dot"
    text = message.get_body(("plain",)).get_content()
    assert "sent to dot@example.com." in " ".join(text.split())
    assert b"\r\n." not in smtp.messages[0].data


class _Recorder:
    """An aiosmtpd handler that keeps who it accepted mail for, and the names it was
    greeted with."""

    def __init__(self) -> None:
        self.recipients: list[str] = []
        self.greetings: list[str] = []

    async def handle_EHLO(self, server: object, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # this form of the hook takes over aiosmtpd's own
        self.greetings.append(hostname)
        return responses

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.recipients += envelope.rcpt_tos
        return "250 OK"


@pytest.fixture
def tls_relay() -> Iterator[tuple[int, _Recorder]]:
    """A relay offering STARTTLS with a self-signed certificate, as a test relay would."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(Path(__file__).with_name("tls") / "relay.pem")
    recorder = _Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(),
                            server_hostname="relay.digest.test", tls_context=context)
    controller.start()
    yield controller.port, recorder
    controller.stop()


def test_the_certificate_is_checked_unless_explicitly_not(
        site: Site, web: FeedServer, smtp: SmtpServer, tls_relay: tuple[int, _Recorder]) -> None:
    port, recorder = tls_relay
    prepare(site, web, smtp)
    site.config.write_text(site.config.read_text().replace(f"port = {smtp.port}", f"port = {port}")
                           .replace('security = "none"', 'security = "starttls"'))
    result = digest("send")
    assert result.exit_code == 1
    assert f"cannot reach SMTP relay 127.0.0.1:{port}: TLS failed" in result.output
    assert recorder.recipients == []
    site.config.write_text(site.config.read_text() + "verify_tls = false\n")
    assert digest("send").exit_code == 0
    assert sorted(recorder.recipients) == [ANN, BOB]


def test_check_probes_the_relay_as_send_does(
        site: Site, tls_relay: tuple[int, _Recorder]) -> None:
    """One SMTP code path: `check` honours verify_tls and helo_name as `send` does."""
    port, recorder = tls_relay
    site.smtp_port = port
    site.extra = 'helo_name = "mailer.digest.test"\n'
    site.write()
    site.config.write_text(site.config.read_text().replace('security = "none"',
                                                           'security = "starttls"'))
    site.subscribers(f"email\n{ANN}\n")
    result = digest("check")
    assert f"problem smtp: SMTP 127.0.0.1:{port}: TLS failed" in result.output
    site.config.write_text(site.config.read_text() + "verify_tls = false\n")
    result = digest("check")
    assert f"ok      smtp: SMTP 127.0.0.1:{port}: connected, EHLO, STARTTLS; nothing sent" in (
        result.output)
    assert set(recorder.greetings) == {"mailer.digest.test"}
    assert recorder.recipients == []


def test_each_row_is_committed_sending_before_the_relay_takes_its_message(
        site: Site, web: FeedServer) -> None:
    seen: list[tuple[str, str]] = []

    def look(message: Received) -> None:  # on the relay's thread, before its 250
        email = message.rcpt_tos[0]
        seen.extend(rows(site.database, "SELECT email, status FROM deliveries WHERE email = ?",
                         email))

    emails = [f"reader{n}@example.org" for n in range(8)]
    with SmtpServer(on_message=look) as relay:
        prepare(site, web, relay, emails, "connections = 2\n")
        assert digest("send").exit_code == 0
    assert sorted(seen) == [(email, "sending") for email in sorted(emails)]
    assert set(rows(site.database, "SELECT status FROM deliveries")) == {("sent",)}


@pytest.mark.parametrize(("line", "says"), [
    ("connections = 0", "smtp.connections must be at least 1"),
    ("messages_per_connection = 0", "smtp.messages_per_connection must be at least 1"),
    ("retries = -1", "smtp.retries must not be negative"),
    ("verify_tls = 'no'", "smtp.verify_tls must be true or false"),
])
def test_a_bad_pool_setting_is_named(site: Site, line: str, says: str) -> None:
    site.config.write_text(f"[smtp]\n{line}\n")
    result = digest("send")
    assert result.exit_code == 2
    assert says in result.output


def test_an_outbox_folder_made_beforehand_is_made_a_maildir(site: Site) -> None:
    site.write()
    site.subscribers(f"email,name\n{ANN},Ann\n")
    (site.root / "outbox").mkdir()  # by hand, or the mount point of a disk of its own
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    assert len(list((site.root / "outbox" / "new").iterdir())) == 1


@pytest.mark.slow
def test_a_one_click_opt_out_during_a_running_edition_takes_effect_in_that_run(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    emails = [f"reader{n:04d}@example.org" for n in range(2000)]
    prepare(site, web, smtp, emails, "connections = 4\n")
    late = emails[-1]  # the last row of the ledger: mailed seconds after the opt-out
    smtp.delay("DATA", 0.005)
    config = configuration.load(site.config)
    link = urlsplit(tokens.unsubscribe_links(config)(late)).path
    with serving(public_web.app(config)) as public:
        sender = subprocess.Popen([sys.executable, "-m", "digest", "--config",
                                   str(site.config), "send"], cwd=site.root, env=os.environ,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            smtp.wait_for(200, timeout=60)
            answer = httpx.post(public + link, content="List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 200
            recorded = len(smtp.messages)
            _, errors = sender.communicate(timeout=120)
        finally:
            sender.kill()
    assert sender.returncode == 0, errors
    received = smtp.recipients()
    assert len(received) > recorded + 500  # the run went on well after the opt-out
    assert late not in received
    assert set(received) == set(emails) - {late} and set(received.values()) == {1}
    assert rows(site.database, "SELECT status FROM deliveries WHERE email = ?", late) == [
        ("suppressed",)]
