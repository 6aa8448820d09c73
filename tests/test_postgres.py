"""The state in a real PostgreSQL server: how it is configured, copied from SQLite, locked."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from postgres import PostgresServer
from servers import FeedServer, SmtpServer, free_port
from support import Item, Site, digest, rows, rss, sessions_ended

from digest.records import Delivery, Status, Subscriber, View
from digest.store import Composed, Store

WHEN = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
ITEMS = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return."),
         Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows."))


def setup(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    web.serve("/feed.xml", rss(*ITEMS))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers("email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
                     "carol@example.net,Carol\n")


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://digest:hunter2@127.0.0.1/digest",
     "store.url 'postgresql://digest:…@127.0.0.1/digest' holds a password: give it in "
     "PGPASSWORD"),
    ("mysql://127.0.0.1/digest", "store.url must be a path (SQLite) or a postgresql:// URL"),
])
def test_a_store_url_with_a_password_or_of_another_database_is_refused(
        site: Site, url: str, says: str) -> None:
    site.store = url
    site.write()
    result = digest("status")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and says in result.output
    assert "hunter2" not in result.output


def test_a_store_url_that_is_a_path_is_a_sqlite_file_beside_the_config(site: Site) -> None:
    site.extra = '[store]\nurl = "elsewhere/state.db"\n'
    site.write()
    assert digest("collect").exit_code == 0
    assert (site.root / "elsewhere" / "state.db").is_file()
    assert not (site.root / "state" / "digest.db").exists()


def test_an_unreachable_database_stops_each_command_with_one_line(site: Site) -> None:
    url = f"postgresql://digest@127.0.0.1:{free_port()}/digest"
    site.store = url
    site.write()
    for command in (("status",), ("collect",), ("send",)):
        result = digest(*command)
        assert result.exit_code == 2, (command, result.output)
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: {url}: cannot connect")


def _every_table(database: Path) -> dict[str, list[tuple]]:
    """Each table's rows, in a stable order, as SQLite holds them."""
    with sqlite3.connect(database) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in tables}


def _as_sqlite(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows),
                  key=repr)


def test_migrate_copies_every_table_into_postgresql_and_the_state_goes_on_there(
        site: Site, web: FeedServer, smtp: SmtpServer, postgres: PostgresServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    smtp.reply("RCPT", 550, match="carol@example.net")
    assert digest("send").exit_code == 1  # carol failed
    assert digest("subscribers", "unsubscribe", "bob@example.org").exit_code == 0
    sqlite_file = site.database
    assert isinstance(sqlite_file, Path)
    # A table only a later migration adds (a skipped period) and one not in the list that
    # migrate was written with: both come along, as the schema names them.
    with Store(sqlite_file) as store:
        store.skip("2026-11-01", "no new articles")
        store.db.execute("INSERT INTO inbound VALUES ('<m@x>', 'bounce', 'counted', 'now')")
        store.db.execute("INSERT INTO returns (message, email, kind, hard, at) VALUES "
                         "('<m@x>', 'carol@example.net', 'bounce', 1, 'now')")
    before = _every_table(sqlite_file)
    assert all(before[table] for table in ("feeds", "articles", "editions", "edition_articles",
                                           "deliveries", "suppressions", "skipped_periods",
                                           "link_addresses", "returns"))
    status_before = json.loads(digest("status", "--json").output)

    url = postgres.database()
    result = digest("migrate", "--to", url)
    assert result.exit_code == 0, result.output
    assert f"deliveries: {len(before['deliveries'])} rows" in result.output
    assert "every count checked" in result.output
    for table, copied in before.items():
        assert _as_sqlite(rows(url, f"SELECT * FROM {table}")) == copied or (
            table == "deliveries"), table
    # PostgreSQL's deliveries carry their SQLite rowid first: the list's order.
    assert _as_sqlite([row[1:] for row in rows(url, "SELECT * FROM deliveries")]) == before[
        "deliveries"]

    # The same state, now read from PostgreSQL; new rows number on after the copied ones.
    site.store = url
    site.write()
    status_after = json.loads(digest("status", "--json").output)
    assert status_after["editions"] == status_before["editions"]
    web.serve("/feed.xml", rss(Item("Lighthouse relit", "https://example.com/light", "h3"),
                               *ITEMS))
    assert digest("collect").exit_code == 0
    smtp.clear_faults()
    assert digest("send").exit_code == 0
    assert rows(url, "SELECT id FROM editions ORDER BY id") == [(1,), (2,)]
    assert rows(url, "SELECT max(id) FROM articles") == [(3,)]
    # bob unsubscribed in SQLite: the opt-out came along.
    assert sorted(r.rcpt_tos for r in smtp.messages[-2:]) == [
        ("ann@example.com",), ("carol@example.net",)]


def test_migrate_refuses_a_database_that_is_not_empty(
        site: Site, web: FeedServer, smtp: SmtpServer, postgres: PostgresServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    url = postgres.database()
    assert digest("migrate", "--to", url).exit_code == 0
    again = digest("migrate", "--to", url)
    assert again.exit_code == 2
    assert again.output.count("\n") == 1
    assert again.output.startswith(f"error: {url} is not empty (")
    assert rows(url, "SELECT count(*) FROM articles") == [(2,)]  # nothing copied twice


@pytest.mark.parametrize(("target", "says"), [
    ("postgresql://u:secret@127.0.0.1/x", "holds a password"),
    ("state/other.db", "--to must be a postgresql:// URL"),
])
def test_migrate_mistakes_are_one_line(site: Site, target: str, says: str) -> None:
    site.write()
    assert digest("collect").exit_code == 0
    result = digest("migrate", "--to", target)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert says in result.output and "secret" not in result.output


def _edition_of(store: Store, count: int) -> list[str]:
    emails = [f"reader{n:03d}@example.org" for n in range(count)]
    store.create_edition(Composed(store.next_edition(), "2026-11-27", WHEN,
                                  View("Today", "<p>today</p>", "today"), "<p>today</p>",
                                  "0" * 32, ()), [Subscriber(email) for email in emails])
    return emails


def test_two_senders_claim_different_rows_and_a_dead_ones_pending_rows_are_taken_over(
        postgres: PostgresServer) -> None:
    url = postgres.database()
    with Store(url) as first, Store(url) as second:
        emails = _edition_of(first, 250)
        mine, theirs = first.due(1), second.due(1)
        taken_first = [next(mine).email for _ in range(10)]
        taken_second = [next(theirs).email for _ in range(10)]
        assert not set(taken_first) & set(taken_second)
        first.step(None, Delivery(1, taken_first[0], "", Status.PENDING, 0))  # in flight
        # A sender starting now finds the first one's row in flight alive: not its to judge.
        with Store(url) as third:
            assert third.recover() == 0
        first.close()  # its process died: its session ends
        sessions_ended(url, keep=1)  # the other sender's
        rest = [delivery.email for delivery in theirs]
        # The dead sender's claimed rows still pending are delivered by the other; the one it
        # had offered is not (in doubt), and becomes `unknown` at the next start.
        assert sorted([*taken_second, *rest]) == sorted(set(emails) - {taken_first[0]})
        with Store(url) as later:
            assert later.recover() == 1
            assert later.counts(1) == {Status.PENDING: 249, Status.UNKNOWN: 1}


def test_a_role_that_may_not_create_the_schema_is_told_so_in_one_line(
        site: Site, postgres: PostgresServer) -> None:
    url = postgres.database()
    reader = f"reader_{url.rpartition('/')[2]}"
    rows(url, f"CREATE ROLE {reader} LOGIN")  # not the database's owner: no CREATE in public
    site.store = url.replace(f"//{postgres.user}@", f"//{reader}@")
    site.write()
    result = digest("status")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: {site.store}: cannot set up the schema: ")
    assert "permission denied" in result.output
