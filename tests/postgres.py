"""A real PostgreSQL server for the tests: Debian's binaries, a cluster of its own in a
temporary folder, on a free loopback port, stopped and removed at the end.

The server refuses to run as root, and should not: under root it runs as the `postgres`
account the package made (else `nobody`), with the cluster's folder handed to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from servers import LOOPBACK, free_port

# Debian keeps the server's binaries out of PATH, one folder per major version.
BINARIES = "/usr/lib/postgresql/*/bin"


def binaries() -> Path:
    """The newest installed server's bin folder; fails (never skips) when there is none."""
    found = sorted(glob.glob(f"{BINARIES}/initdb"),
                   key=lambda path: int(Path(path).parts[-3]))
    on_path = shutil.which("initdb")
    if not found and on_path is None:
        raise RuntimeError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
                           "apt-get install postgresql (.ci/run does)")
    return Path(found[-1] if found else str(on_path)).parent


class PostgresServer:
    """One cluster for the session; `database()` makes a fresh, empty database in it."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        self.data = self.folder / "data"
        self.account = _account()
        self.user = self.account.pw_name
        self.count = 0

    def _run(self, *args: str) -> None:
        user = self.account.pw_uid if os.geteuid() == 0 else None
        done = subprocess.run(args, user=user, group=self.account.pw_gid if user else None,
                              cwd=self.folder, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                  "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        # Fast and throwaway: no fsync, a socket only in the cluster's folder.
        options = (f"-c listen_addresses={LOOPBACK} -p {self.port} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off "
                   f"-c unix_socket_directories={self.folder} -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{name}"

    def database(self) -> str:
        """A new empty database; its URL."""
        self.count += 1
        name = f"state_{os.getpid()}_{self.count}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)


def _account() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and there is no unprivileged account (postgres, "
                       "nobody) to run PostgreSQL's server as")


@contextmanager
def running() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
