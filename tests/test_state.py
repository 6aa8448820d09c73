"""A damaged or missing state database: every command says so in one line and touches
nothing; a folder that once held a database is never given a new, empty one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest.errors import DigestError
from digest.store import Store

pytestmark = pytest.mark.backends

ANN, BOB = "ann@example.com", "bob@example.org"
FEED = "/feed.xml"


@pytest.fixture
def mailed(site: Site, web: FeedServer, smtp: SmtpServer) -> Site:
    """A site that mailed its first edition, whose Bob has opted out since, with a new
    article waiting for the next edition."""
    web.serve(FEED, rss(Item("Harbour opens", "https://example.com/harbour", "h1")))
    site.feeds = [("News", web.url(FEED))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(f"email,name\n{ANN},Ann\n{BOB},Bob\n")
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    assert digest("subscribers", "unsubscribe", BOB).exit_code == 0
    web.serve(FEED, rss(Item("Bridge repaired", "https://example.com/bridge", "h2"),
                        Item("Harbour opens", "https://example.com/harbour", "h1")))
    smtp.clear_messages()
    return site


def truncated(database: Path) -> None:
    database.write_bytes(database.read_bytes()[:len(database.read_bytes()) // 2])


def garbage(database: Path) -> None:
    database.write_bytes(b"not a database, whatever it was\n" * 400)


def emptied(database: Path) -> None:
    database.write_bytes(b"")


def removed(database: Path) -> None:
    database.unlink()


COMMANDS = [("collect",), ("send",), ("send", "--dry-run"), ("status",), ("status", "--json"),
            ("render", "--out", "edition.html"), ("subscribers", "check"),
            ("subscribers", "export"), ("subscribers", "unsubscribe", "carol@example.net"),
            ("resend", "1", "--to-failed"), ("enable", "https://example.com/feed.xml")]


@pytest.mark.backends("sqlite")  # the SQLite file itself
@pytest.mark.parametrize("damage", [truncated, garbage, emptied, removed])
def test_a_damaged_or_missing_database_stops_every_command_with_one_line(
        mailed: Site, smtp: SmtpServer, damage: Callable[[Path], None]) -> None:
    damage(mailed.database)
    left = mailed.database.read_bytes() if mailed.database.exists() else None
    for command in COMMANDS:
        result = digest(*command)  # a traceback fails the test here (catch_exceptions=False)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, (command, result.output)
        assert lines[0].startswith(f"error: {mailed.database}")
        assert "restore it from a backup" in lines[0]
    # Nothing was made afresh over it, and nobody was mailed from a blank ledger.
    assert (mailed.database.read_bytes() if mailed.database.exists() else None) == left
    assert smtp.messages == []


@pytest.mark.backends("sqlite")  # the SQLite file itself
def test_an_empty_database_file_is_never_taken_for_a_new_one(
        mailed: Site, smtp: SmtpServer) -> None:
    emptied(mailed.database)
    result = digest("send")
    assert result.exit_code == 2
    assert "is empty (0 bytes): the database is damaged, not new" in result.output
    # Taken for new, it would mail Bob, who opted out, and Ann the first edition again.
    assert smtp.messages == []
    assert mailed.database.stat().st_size == 0


@pytest.mark.backends("sqlite")  # the SQLite file itself
def test_a_missing_database_names_the_marker_to_remove_to_start_afresh(
        mailed: Site, smtp: SmtpServer) -> None:
    removed(mailed.database)
    marker = mailed.database.with_name("digest.db.created")
    result = digest("status")
    assert result.exit_code == 2
    assert f"yet {marker} shows a database was made here" in result.output
    assert f"to start afresh on purpose, remove {marker}" in result.output
    marker.unlink()  # the operator's decision
    assert digest("status").exit_code == 0
    assert marker.exists()


@pytest.mark.backends("sqlite")  # the SQLite file itself
def test_a_restored_backup_is_taken_up_again(mailed: Site, smtp: SmtpServer) -> None:
    backup = mailed.root / "backup.db"
    backup.write_bytes(mailed.database.read_bytes())
    emptied(mailed.database)
    assert digest("send").exit_code == 2
    mailed.database.write_bytes(backup.read_bytes())
    for leftover in ("digest.db-wal", "digest.db-shm"):  # as the README's restore says
        mailed.database.with_name(leftover).unlink(missing_ok=True)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {ANN: 1}  # Bob's opt-out survived in the backup
    assert rows(mailed.database, "SELECT count(*) FROM editions") == [(2,)]


@pytest.mark.backends("sqlite")  # the SQLite file itself
def test_a_new_state_folder_gets_a_whole_database_and_its_marker(site: Site) -> None:
    site.write()
    assert digest("status").exit_code == 0
    assert site.database.stat().st_size > 0
    assert rows(site.database, "PRAGMA user_version")[0][0] > 0
    assert site.database.with_name("digest.db.created").exists()
    assert sorted(path.name for path in site.database.parent.glob("digest.db.new*")) == []


def test_threads_of_one_process_opening_a_new_database_at_once_all_get_it(
        tmp_path: Path) -> None:
    # The scheduler's first jobs (start, collect, reconcile) may open the state together.
    database = tmp_path / "state" / "digest.db"
    start, failed = threading.Barrier(8), []

    def open_it() -> None:
        start.wait()
        try:
            Store(database).close()
        except DigestError as error:
            failed.append(str(error))

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failed == []
    assert rows(database, "PRAGMA user_version")[0][0] > 0
