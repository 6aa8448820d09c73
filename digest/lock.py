"""One sender per state: an flock on `scheduler.lock` in the state folder, which holds the
holder's PID; or, when the state is in PostgreSQL, an advisory lock of that database.

Two processes working through the same SQLite ledger would mail people twice. The kernel
drops an flock when its process dies, however it dies, so a crash never leaves a stale lock;
the PID inside is only there to tell the operator who holds it. PostgreSQL drops an advisory
lock when its connection ends, in the same way. There, senders on one or more machines may
share the lock (their claims on the ledger keep them apart: see Store.due), and a second
scheduler waits for it, a standby that takes over when the first ends.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from digest.config import Paths
from digest.errors import DigestError
from digest.store import advisory, advisory_holder

NAME = "scheduler.lock"


@contextmanager
def held(paths: Paths, shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold the state's lock for the duration, or fail at once naming the holder. In
    PostgreSQL, `shared` holds it together with others that share it (senders), and `wait`
    waits for it (a standby scheduler); a SQLite state has one holder at a time."""
    database = paths.database
    if isinstance(database, str):
        with advisory(database, shared, wait):
            yield
        return
    state = paths.state
    path = state / NAME
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DigestError(f"{state}: cannot create the state folder: {error.strerror}") from None
    # "a+", not "w": opening must not wipe the holder's PID before we know we hold the lock.
    # Unbuffered, so that a full disk fails the write here, not again at close.
    try:
        handle = path.open("a+b", buffering=0)
    except OSError as error:
        raise DigestError(f"{path}: cannot open the lock file: {error.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().decode("ascii", "replace").strip() or "unknown"
            raise DigestError(f"another digest process (PID {pid}) is working on {state}: "
                              f"it holds {path}", 1) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n".encode("ascii"))
        except OSError as error:
            raise DigestError(f"{path}: cannot write the lock file: {error.strerror}",
                              1) from None
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def holder(paths: Paths) -> int | None:
    """The PID of the process holding the lock, None when nobody does."""
    if isinstance(paths.database, str):
        return advisory_holder(paths.database)
    path = paths.state / NAME
    try:
        handle = path.open("r", encoding="ascii")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
