"""Faults of the machine during a send, made for real: a disk that fills up (a tiny tmpfs)
under the state or the outbox. The run stops, says why in one line, exits 1, and `digest
status` shows it; the ledger keeps its promise."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from servers import SmtpServer
from support import Site, digest, rows

# Real processes on a disk that fills up: left out of a quick loop by -m 'not slow'.
pytestmark = pytest.mark.slow

SUBSCRIBERS = 2000
CONNECTIONS = 4


@contextmanager
def tiny_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder`: a disk that really fills up."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def grow(folder: Path, size: str) -> None:
    """Free space on the full disk, as an operator would."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def many(site: Site, count: int = SUBSCRIBERS) -> list[str]:
    emails = [f"reader{n:04d}@example.org" for n in range(count)]
    site.subscribers("email,name\n" + "".join(f"{e},Reader\n" for e in emails))
    return emails


def status() -> tuple[int, list[str]]:
    result = digest("status", "--json")
    return result.exit_code, json.loads(result.stdout)["attention"]


def test_a_state_disk_filling_up_mid_send_stops_the_run_and_loses_nobody(
        site: Site, smtp: SmtpServer) -> None:
    site.smtp_port = smtp.port
    site.extra = f"connections = {CONNECTIONS}\n"
    site.write()
    emails = many(site)
    with tiny_disk(site.root / "state", "2m") as state:
        assert digest("collect").exit_code == 0  # the bundled sample feed
        result = digest("send")
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith("error: delivery of edition 1 stopped: "
                                    f"{site.database}: cannot write: database or disk is full")
        assert not any(line.startswith("sent ") for line in lines)  # no summary of success
        ledger = dict(rows(site.database, "SELECT email, status FROM deliveries"))
        got = smtp.recipients()
        # At most one row per connection in doubt; every other row tells the truth.
        in_doubt = {email for email, state_ in ledger.items() if state_ == "sending"}
        assert 1 <= len(in_doubt) <= CONNECTIONS
        assert set(ledger.values()) == {"sent", "sending", "pending"}
        assert {email for email, state_ in ledger.items() if state_ == "sent"} <= set(got)
        assert set(got) <= {email for email, state_ in ledger.items() if state_ != "pending"}
        code, attention = status()
        assert code == 1
        assert attention == [f"edition 1: {len(in_doubt)} in doubt (left sending) "
                             "(see `digest resend 1 --help`)"]

        assert digest("send").exit_code == 1  # still full: one line, nothing touched
        assert smtp.recipients() == got
        grow(state, "64m")
        assert digest("send").exit_code == 1  # done, with the rows in doubt reported
        ledger = dict(rows(site.database, "SELECT email, status FROM deliveries"))
    received = smtp.recipients()
    assert set(received.values()) == {1}
    assert {email for email, state_ in ledger.items() if state_ == "unknown"} == in_doubt
    assert set(ledger.values()) == {"sent", "unknown"}
    assert set(emails) - set(received) <= in_doubt


def test_an_outbox_disk_filling_up_stops_the_run_and_status_says_why_until_it_goes_on(
        site: Site) -> None:
    site.write()
    many(site, 200)
    assert digest("collect").exit_code == 0
    with tiny_disk(site.root / "outbox", "1m") as outbox:
        result = digest("send")
        assert result.exit_code == 1, result.output
        cause = result.output.strip().splitlines()[-1]
        assert cause.startswith("error: delivery of edition 1 stopped: ")
        assert f"{outbox}: cannot write a message: No space left on device" in cause
        counts = dict(rows(site.database, "SELECT status, count(*) FROM deliveries GROUP BY 1"))
        assert counts.get("sending", 0) <= 1  # the Maildir is written by one thread
        assert counts["sent"] == len(list((outbox / "new").iterdir()))
        code, attention = status()
        assert code == 1
        assert attention[0].startswith("edition 1: its last run stopped on an error: ")
        assert "No space left on device" in attention[0]

        grow(outbox, "64m")
        assert digest("send").exit_code == counts.get("sending", 0)  # 1 with one in doubt
        code, attention = status()
        assert not any("stopped on an error" in line for line in attention)
        assert len(list((outbox / "new").iterdir())) == 200 - counts.get("sending", 0)
