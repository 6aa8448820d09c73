"""/metrics: the state's numbers for Prometheus, scraped from a real `digest serve` after a
real send, parsed with prometheus-client's own parser, and compared with the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from servers import SmtpServer
from support import Item, Site, digest, rows, rss
from test_inbox import arf, dsn
from test_web import served

from digest import config, lock, metrics
from digest.cli import main
from digest.metrics import Run, last_run
from digest.records import Status

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\ncarol@example.net,\n"


def scrape(base: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as Prometheus reads it: (name, labels) -> value."""
    response = httpx.get(f"{base}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def inbox(message: bytes) -> None:
    result = CliRunner().invoke(main, ["inbox", "-"], input=message, catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture
def mailed(site: Site, smtp: SmtpServer) -> Site:
    """One edition sent over SMTP to three subscribers; then Ann complains, Bob's mail
    bounces hard, Carol unsubscribes; and one of the two feeds has never been read."""
    site.feeds = [("World", str(site.root / "feed.xml")),
                  ("Gone", str(site.root / "missing.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.config.write_text(site.config.read_text().replace(
        'transport = "smtp"', 'transport = "smtp"\nreturn_path = "bounces@news.example.com"'))
    site.subscribers(SUBSCRIBERS)
    (site.root / "feed.xml").write_text(rss(Item("Harbour opens", "https://example.com/h", "h1")))
    assert digest("collect").exit_code == 1  # the missing feed
    assert digest("send").exit_code == 0
    received = {m.rcpt_tos[0]: m for m in smtp.messages}
    inbox(arf(received["ann@example.com"].data).as_bytes())
    bob = received["bob@example.org"]
    inbox(dsn(bob.mail_from, "bob@example.org", "5.1.1", "550 5.1.1 no such user",
              original=bob.data).as_bytes())
    assert digest("subscribers", "unsubscribe", "carol@example.net").exit_code == 0
    return site


def test_metrics_from_a_real_serve_match_the_ledger(mailed: Site) -> None:
    with served(mailed) as base:
        found = scrape(base)

    ledger = dict(rows(mailed.database, "SELECT status, count(*) FROM deliveries WHERE "
                                        "edition_id = 1 GROUP BY status"))
    assert ledger == {"sent": 2, "bounced": 1}
    for status in Status:
        assert found["digest_deliveries", (("edition", "1"), ("status", status))] == \
            ledger.get(status, 0), status
    assert found["digest_bounces", (("edition", "1"), ("kind", "hard"))] == 1
    assert found["digest_bounces", (("edition", "1"), ("kind", "soft"))] == 0
    assert found["digest_complaints", (("edition", "1"),)] == 1
    assert {labels[0][1]: value for (name, labels), value in found.items()
            if name == "digest_suppressions"} == dict(rows(
                mailed.database, "SELECT reason, count(*) FROM suppressions GROUP BY reason"))
    assert found["digest_deliveries_in_flight", ()] == 0
    assert found["digest_sender_running", ()] == 0

    # The relay took all three; Bob's came back later, so his row no longer times his send.
    times = [datetime.fromisoformat(t) for (t,) in rows(
        mailed.database, "SELECT updated_at FROM deliveries WHERE status = 'sent'")]
    seconds = (max(times) - min(times)).total_seconds() + 1
    assert found["digest_last_run_messages", ()] == 2
    assert found["digest_last_run_messages_per_second", ()] == pytest.approx(2 / seconds)

    failures = dict(rows(mailed.database, "SELECT url, error_count FROM feeds"))
    world, gone = str(mailed.root / "feed.xml"), str(mailed.root / "missing.xml")
    assert failures == {world: 0, gone: 1}
    for url, name, failing in ((world, "World", 0), (gone, "Gone", 1)):
        assert found["digest_feed_consecutive_failures",
                     (("feed", url), ("name", name))] == failures[url]
        assert found["digest_feed_state",
                     (("feed", url), ("name", name), ("state", "failing"))] == failing
        assert found["digest_feed_state",
                     (("feed", url), ("name", name), ("state", "ok"))] == 1 - failing
    assert found["digest_latest_edition_age_seconds", ()] >= 0


def test_a_client_outside_metrics_allow_is_refused(site: Site) -> None:
    site.extra = '[web]\nmetrics_allow = ["10.0.0.0/8", "2001:db8::/32"]\n'
    site.write()
    with served(site) as base:
        response = httpx.get(f"{base}/metrics")
        assert response.status_code == 403
        assert "digest_" not in response.text


def test_a_visitor_through_the_proxy_is_not_taken_for_a_local_client(site: Site) -> None:
    """The proxy on loopback is trusted (web.trusted_proxies): the client it names decides,
    not the proxy's own loopback address."""
    site.write()
    with served(site) as base:
        assert httpx.get(f"{base}/metrics",
                         headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 403
        assert "digest_sender_running" in httpx.get(f"{base}/metrics").text


def test_rows_in_flight_the_lock_and_the_age_are_read_at_scrape_time(mailed: Site) -> None:
    made = datetime.fromisoformat(rows(mailed.database,
                                       "SELECT created_at FROM editions WHERE id = 1")[0][0])
    moment = made + timedelta(hours=3)
    registry = metrics.registry(config.load(mailed.config), lambda: moment)
    assert registry.get_sample_value("digest_latest_edition_age_seconds") == 3 * 3600
    assert registry.get_sample_value("digest_sender_running") == 0
    # Another process's work shows at the next scrape: nothing is counted in this one.
    rows(mailed.database, "UPDATE deliveries SET status = 'sending' WHERE email = ?",
         "ann@example.com")
    with lock.held(config.load(mailed.config).paths):
        assert registry.get_sample_value("digest_sender_running") == 1
        assert registry.get_sample_value("digest_deliveries_in_flight") == 1
        assert registry.get_sample_value(
            "digest_deliveries", {"edition": "1", "status": "sending"}) == 1
    assert registry.get_sample_value("digest_sender_running") == 0


def at(second: int) -> datetime:
    return datetime(2026, 11, 26, 7, 0, tzinfo=UTC) + timedelta(seconds=second)


def test_the_last_run_ends_at_the_newest_message_and_starts_after_a_long_pause() -> None:
    # A run of 100 messages over seconds 0..9, then a retry of 3 deferred ones an hour on.
    first = [(at(second), 10) for second in reversed(range(10))]
    assert last_run(first) == Run(100, 10)
    assert last_run(first).rate == 10
    assert last_run([(at(3600), 3), *first]) == Run(3, 1)
    assert last_run([]) is None


@pytest.mark.parametrize("allow", ["'127.0.0.1'", "['localhost']", "['10.0.0.0/33']"])
def test_a_malformed_metrics_allow_is_one_line_naming_the_key(site: Site, allow: str) -> None:
    site.extra = f"[web]\nmetrics_allow = {allow}\n"
    site.write()
    result = digest("collect")
    assert result.exit_code == 2
    assert "web.metrics_allow" in result.output and "digest.toml" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
