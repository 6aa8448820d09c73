"""Peak memory of a real `digest send` process against the list's length.

    python bench/memory.py [--subscribers N] [--sent K]

Builds the site bench/send.py builds (a 20-card feed, N subscribers, smtp-sink on loopback),
runs `digest collect`, then `digest send` as a child process of this small one, and stops it
with SIGTERM once K messages are recorded sent (0: let it finish): by then the list has been
read, checked for duplicates and turned into the edition's ledger, where memory would grow
with the list; delivering the rest runs in pages of the ledger. Prints the child's peak RSS
(os.wait4's ru_maxrss). Target: < 150 MB at N = 1,000,000.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from send import SINK, free_port, site


def sent(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'")
                       .fetchone()[0])
    except sqlite3.Error:  # not made yet, or busy
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--sent", type=int, default=20_000,
                        help="stop the send once this many are sent (0: let it finish)")
    parser.add_argument("--connections", type=int, default=4)
    options = parser.parse_args()
    if not Path(SINK).exists():
        print(f"{SINK} not found: apt-get install postfix (only smtp-sink is started)")
        return 2
    env = {**os.environ, "DIGEST_SECRET": os.environ.get("DIGEST_SECRET", "bench")}
    port = free_port()
    sink = subprocess.Popen([SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"])
    root = Path(tempfile.mkdtemp(prefix="digest-memory-"))
    try:
        time.sleep(0.3)
        path = site(root, port, options.subscribers, options.connections)
        digest = [sys.executable, "-m", "digest", "--config", str(path)]
        subprocess.run([*digest, "collect"], check=True, env=env, stdout=subprocess.DEVNULL)
        started = time.perf_counter()
        child = subprocess.Popen([*digest, "send"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        database = root / "state" / "digest.db"
        while options.sent and child.poll() is None and sent(database) < options.sent:
            time.sleep(0.5)
        if child.poll() is None and options.sent:
            child.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        count = sent(database)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(root)
    print(f"{options.subscribers} subscribers, {options.connections} connections: "
          f"`digest send` exited {os.waitstatus_to_exitcode(status)} after {seconds:.0f} s, "
          f"{count} sent")
    print(f"peak RSS of digest send  {usage.ru_maxrss / 1024:8.0f} MB")
    # A child's peak starts from the memory of the process that started it (Linux keeps it
    # across exec): this one's, smaller than any `digest send`.
    print(f"  (this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
          "MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
