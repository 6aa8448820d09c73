"""One sender per state folder: an flock on `scheduler.lock`, which holds the holder's PID.

Two processes working through the same delivery ledger would mail people twice. The kernel
drops an flock when its process dies, however it dies, so a crash never leaves a stale lock;
the PID inside is only there to tell the operator who holds it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digest.errors import DigestError

NAME = "scheduler.lock"


@contextmanager
def held(state: Path) -> Iterator[None]:
    """Hold the state folder's lock for the duration, or fail at once naming the holder."""
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


def holder(state: Path) -> int | None:
    """The PID of the process holding the lock, None when nobody does."""
    path = state / NAME
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
