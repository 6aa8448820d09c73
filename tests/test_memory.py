"""Memory flat in the list's length: a real `digest send` process, measured from outside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rss

# Runs the command given, then writes the peak resident memory of that child, in KiB, to the
# file named first; a SIGTERM to it is passed on to the command. From this small process, not
# from pytest: a child's peak counts the memory of the process it was started from (Linux
# keeps it across exec).
_PEAK = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
signal.signal(signal.SIGALRM, lambda *_: child.kill())
signal.alarm(250)
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_of_send(root: Path, web: FeedServer, smtp: SmtpServer, count: int) -> int:
    """Peak RSS in bytes of `digest send` to `count` subscribers, stopped by SIGTERM once the
    relay has the first message: by then the list has been read, checked for duplicates and
    turned into the edition's ledger, which is where memory would grow with the list."""
    site = Site(root)
    root.mkdir()
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    with open(root / "subscribers.csv", "w", encoding="utf-8") as out:
        out.write("email,name,city\n")
        out.writelines(f"reader{n}@example.org,Reader {n},Town {n % 97}\n"
                       for n in range(count))
    assert digest("--config", str(site.config), "collect").exit_code == 0
    already = len(smtp.messages)
    peak = root / "peak.kib"
    child = subprocess.Popen([sys.executable, "-c", _PEAK, str(peak), sys.executable, "-m",
                              "digest", "--config", str(site.config), "send"], cwd=root)
    try:
        smtp.wait_for(already + 1, timeout=240)
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == 128 + signal.SIGTERM
    return int(peak.read_text()) * 1024


def test_peak_memory_of_a_send_does_not_grow_with_the_list(
        tmp_path: Path, web: FeedServer, smtp: SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    monkeypatch.setenv("DIGEST_SECRET", "test-secret")
    web.serve("/feed.xml", rss(*(Item(f"Story {n}", f"https://example.com/{n}", f"s{n}")
                                 for n in range(5))))
    small = _peak_of_send(tmp_path / "small", web, smtp, 10_000)
    large = _peak_of_send(tmp_path / "large", web, smtp, 100_000)
    # Holding the list (its text, a set of its addresses) took ~0.35 KB a subscriber: 30 MB
    # more for the larger one. Flat leaves SQLite's bounded caches growing to their limits.
    assert large - small < 15 * 2**20, (small, large)


def test_a_full_disk_for_temporary_files_while_reading_the_list_is_named(
        site: Site, smtp: SmtpServer, tmp_path: Path) -> None:
    """The list's scratch file (duplicates, the rows found) lives in TMPDIR: when that disk
    fills up, the send stops with one line naming it, not a traceback, and nobody is mailed."""
    site.smtp_port = smtp.port
    site.write()
    # Past SQLite's cache for the scratch (8 MB), so that pages go to the disk.
    site.subscribers("email,name\n" + "".join(f"reader{n}@example.org,Reader {n}\n"
                                              for n in range(60_000)))
    assert digest("collect").exit_code == 0  # the bundled sample feed
    folder = tmp_path / "tmp"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        result = subprocess.run([sys.executable, "-m", "digest", "--config", str(site.config),
                                 "send"], cwd=site.root, env={**os.environ, "TMPDIR": str(folder)},
                                capture_output=True, text=True, timeout=240)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert (f"{folder}: cannot write: database or disk is full; free some space on its disk"
            in result.stderr)
    assert smtp.messages == []
