"""One whole digest cycle over real parts: a feed on a loopback HTTP server, SQLite on disk,
SMTP to a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import mailbox
import socket
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest.config import SAMPLE_FEED, bundled

pytestmark = pytest.mark.backends

FIRST = (
    Item("Harbour opens", "https://example.com/harbour", "h1", "<p>Boats <b>return</b>.</p>"),
    Item("Über die Brücke", "https://example.com/bruecke", "h2", "Eine Geschichte über Brücken."),
)
SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob Ray\n"


def setup(site: Site, web: FeedServer, smtp: SmtpServer, *items: Item) -> None:
    web.serve("/feed.xml", rss(*items))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)


def test_collect_and_send_mail_every_subscriber_one_multipart_message(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    assert digest("collect").exit_code == 0
    result = digest("send")
    assert result.exit_code == 0, result.output
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    for received in smtp.messages:
        message = received.message
        assert message.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for item in FIRST:
            assert item.title in text and item.link in text
            assert item.title in html and f'href="{item.link}"' in html
        assert message["To"].addresses[0].addr_spec == received.rcpt_tos[0]
        for header in ("From", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
            assert message[header], header
        assert "Harbour opens" in message["Subject"]
    names = {m.message["To"].addresses[0].display_name for m in smtp.messages}
    assert names == {"Ann", "Bob Ray"}
    assert rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY status") == [
        ("sent", 2)]


def test_collect_twice_on_an_unchanged_feed_stores_nothing_new(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    result = digest("collect")
    assert "collected 0 new articles" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(2,)]


def test_second_send_sends_nothing_and_a_new_entry_makes_an_edition_of_its_own(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    digest("send")
    smtp.clear_messages()

    result = digest("send")
    assert result.exit_code == 0
    assert "nothing to send" in result.output
    assert smtp.messages == []
    assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]

    fresh = Item("Lighthouse relit", "https://example.com/lighthouse", "h3", "It shines.")
    web.serve("/feed.xml", rss(fresh, *FIRST))
    digest("collect")
    assert digest("send").exit_code == 0
    assert len(smtp.messages) == 2
    html = smtp.messages[0].message.get_body(("html",)).get_content()
    assert "Lighthouse relit" in html
    assert "Harbour opens" not in html and "Über die Brücke" not in html


def test_relay_down_keeps_deliveries_pending_and_a_later_run_mails_each_once(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    smtp.stop()
    result = digest("send")
    assert result.exit_code == 1
    assert f"cannot reach SMTP relay 127.0.0.1:{smtp.port}" in result.output
    # Nothing was sent, and nothing was marked as sent or in doubt.
    assert set(rows(site.database, "SELECT status FROM deliveries")) <= {("pending",)}

    smtp.start()
    assert digest("send").exit_code == 0
    digest("send")
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}


def test_relay_down_when_the_edition_is_first_made_delivers_it_later(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    digest("send")
    smtp.clear_messages()
    web.serve("/feed.xml", rss(Item("New", "https://example.com/new", "n"), *FIRST))
    digest("collect")
    smtp.reply("MAIL", 451, times=None)  # relay up but deferring everything
    assert digest("send").exit_code == 1
    assert rows(site.database, "SELECT count(*) FROM deliveries WHERE status = 'deferred'") == [
        (2,)]
    smtp.clear_faults()
    rows(site.database, "UPDATE deliveries SET next_try = NULL")  # as if the backoff had passed
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}


def test_bad_csv_row_is_reported_with_its_line_and_the_rest_are_mailed(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    site.subscribers("email,name\nann@example.com,Ann\nnot-an-address,Nobody\n"
                     "bob@example.org,Bob\n")
    digest("collect")
    result = digest("send")
    assert "subscribers.csv:3: skipped: not-an-address" in result.output
    assert set(smtp.recipients()) == {"ann@example.com", "bob@example.org"}


def test_an_unreachable_feed_is_named_and_the_others_still_collected(
        site: Site, web: FeedServer, tmp_path: Path) -> None:
    web.serve("/good.xml", rss(*FIRST))
    site.feeds = [("Gone", web.url("/missing.xml")), ("File", str(tmp_path / "absent.xml")),
                  ("Good", web.url("/good.xml"))]
    site.write()
    result = digest("collect")
    assert result.exit_code == 1
    assert f"{web.url('/missing.xml')}: HTTP 404" in result.output
    assert "absent.xml: no such file" in result.output
    assert rows(site.database, "SELECT count(*) FROM articles") == [(2,)]
    assert rows(site.database, "SELECT error_count FROM feeds WHERE name = 'Gone'") == [(1,)]


def test_render_writes_the_next_edition_without_recording_it(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    assert digest("render", "--out", "next.html").exit_code == 0
    assert digest("render", "--out", "next.txt", "--text").exit_code == 0
    html, text = Path("next.html").read_text(), Path("next.txt").read_text()
    assert "<!DOCTYPE html>" in html and "Harbour opens" in html
    assert "Harbour opens" in text and "<" not in text.split("Harbour opens")[1][:40]
    assert "DIGEST-PERSONAL" not in html + text  # a page for a person, not a subscriber
    assert rows(site.database, "SELECT count(*) FROM editions") == [(0,)]
    assert smtp.messages == []


def test_status_shows_feeds_editions_and_delivery_counts(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, *FIRST)
    digest("collect")
    digest("send")
    result = digest("status")
    assert result.exit_code == 0
    assert "News" in result.output and "2 sent" in result.output
    assert "Subscribers: 2 active" in result.output


def demo_mail(folder: Path) -> dict[str, str]:
    """The demo's Maildir: each recipient's plain-text part."""
    box = mailbox.Maildir(folder / "outbox", factory=None, create=False)
    found = {}
    for raw in box:
        message = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
        found[message["To"].addresses[0].addr_spec] = message.get_body(("plain",)).get_content()
    return found


def test_demo_runs_the_whole_cycle_and_shows_every_bundled_story(site: Site) -> None:
    result = digest("demo")
    assert result.exit_code == 0, result.output
    stories = [entry.title for entry in feedparser.parse(SAMPLE_FEED.read_bytes()).entries]
    sample = [line.split(",")[0] for line in
              bundled("subscribers.csv").read_text(encoding="utf-8").strip().splitlines()[1:]]
    folder = site.root / "digest-demo"
    mail = demo_mail(folder)
    assert sorted(mail) == sorted(sample)
    for text in mail.values():  # the right-to-left story too: no first-run guard in a demo
        assert [title for title in stories if title not in text] == []
    assert (f"Demo done. {len(stories)} articles collected; {len(sample)} messages delivered"
            in result.output)
    assert "edition-1.html" in result.output
    assert "DIGEST-PERSONAL" not in (folder / "edition-1.html").read_text()
    assert [path.name for path in site.root.iterdir()] == ["digest-demo"]  # nothing elsewhere


def test_demo_never_reads_or_writes_a_configured_state_or_list(
        site: Site, web: FeedServer, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(site, web, smtp, *FIRST)
    assert digest("collect").exit_code == 0
    monkeypatch.setenv("DIGEST_CONFIG", str(site.config))
    for args in (("demo",), ("--config", str(site.config), "demo"),
                 ("demo", "--config", str(site.config))):
        result = digest(*args)
        assert result.exit_code == 0, result.output
        # Every run starts afresh: its counts are its own, whatever ran before.
        assert "Demo done. 6 articles collected; 4 messages delivered" in result.output
        assert "ann@example.com" not in demo_mail(site.root / "digest-demo")
        assert len(demo_mail(site.root / "digest-demo")) == 4
    assert smtp.messages == []
    assert rows(site.database, "SELECT count(*) FROM articles") == [(2,)]
    assert rows(site.database, "SELECT count(*) FROM editions") == [(0,)]
    assert not (site.root / "outbox").exists()
    # The real edition is still to be made, for the real list.
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}


def test_demo_refuses_a_folder_it_did_not_make(site: Site) -> None:
    mine = site.root / "digest-demo" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("mine")
    result = digest("demo")
    assert result.exit_code == 2
    assert f"{mine.parent} exists and was not made by `digest demo`" in result.output
    assert mine.read_text() == "mine"


def test_sink_on_a_port_already_taken_says_so_at_once(site: Site) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Another server answering there must not make the sink wait for a banner.
        result = subprocess.run([sys.executable, "-m", "digest", "sink", "--port", str(port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
