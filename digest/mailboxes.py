"""Where `digest inbox` reads what came back: a Maildir, an IMAP folder, or one message piped
in by the MTA (kept in a Maildir first, so that nothing is lost).

A mailbox lists its messages with their sizes, reads one, and sets a handled one aside: a
Maildir into its `.handled` subfolder, an IMAP folder into `inbox.handled_folder`. Nothing
else is ever done to a message: what is not set aside stays exactly as it was, unread flags
included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from digest.config import Inbox
from digest.errors import DigestError

HANDLED = ".handled"  # the Maildir++ subfolder handled messages move to


@dataclass(frozen=True)
class Item:
    name: str  # the file name, the IMAP UID, or "-"
    size: int


class Mailbox(Protocol):
    where: str

    def items(self) -> Iterator[Item]: ...

    def read(self, item: Item) -> bytes | None: ...  # None: it went away meanwhile

    def set_aside(self, item: Item) -> None: ...

    def close(self) -> None: ...


class Maildir:
    """The messages in `new/` and `cur/`; one moved keeps its file name and its flags."""

    def __init__(self, path: Path, only: str | None = None, label: str | None = None) -> None:
        if not ((path / "new").is_dir() or (path / "cur").is_dir()):
            raise DigestError(f"{path}: not a Maildir (it has no new/ or cur/ folder)")
        self.path, self.only, self.label = path, only, label
        self.where = f"Maildir {path}"
        self.files: dict[str, Path] = {}

    def items(self) -> Iterator[Item]:
        for folder in ("new", "cur"):
            for file in sorted((self.path / folder).glob("*")) if (
                    self.path / folder).is_dir() else ():
                if self.only not in (None, file.name) or not file.is_file():
                    continue
                self.files[file.name] = file
                yield Item(self.label or file.name, file.stat().st_size)

    def read(self, item: Item) -> bytes | None:
        try:
            return self._file(item).read_bytes()
        except FileNotFoundError:  # another reader (or the mail client) took it meanwhile
            return None

    def set_aside(self, item: Item) -> None:
        file = self._file(item)
        target = self.path / HANDLED / file.parent.name
        for folder in ("tmp", "new", "cur"):
            (self.path / HANDLED / folder).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(file, target / file.name)

    def _file(self, item: Item) -> Path:
        return self.files[self.only or item.name]

    def close(self) -> None:
        pass


def keep(folder: Path, stream: IO[bytes]) -> Maildir:
    """One message from `stream` written whole into the Maildir `folder` (made if need be),
    the way a delivery agent does: into tmp/, then renamed into new/. Returns the Maildir
    that holds just it."""
    for name in ("tmp", "new", "cur"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.digest-inbox.{socket.gethostname()}"
    draft = folder / "tmp" / name
    with draft.open("wb") as out:
        shutil.copyfileobj(stream, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(draft, folder / "new" / name)
    return Maildir(folder, only=name, label="-")


class Imap:
    """A folder on an IMAP server, through imapclient. Messages are read with BODY.PEEK, so
    an unhandled one is not even marked seen; handled ones are moved when the mailbox is
    closed, in one command."""

    def __init__(self, settings: Inbox) -> None:
        from imapclient import IMAPClient  # only this source needs it
        from imapclient.exceptions import IMAPClientError, LoginError

        self.settings = settings
        self.where = f"IMAP server {settings.host}:{settings.port}"
        if not settings.host:
            raise DigestError("inbox.host is not set: say which IMAP server to read")
        self.aside: list[int] = []
        try:
            context = ssl.create_default_context()
            self.client = IMAPClient(settings.host, settings.port, use_uid=True,
                                     ssl=settings.security == "ssl", ssl_context=context,
                                     timeout=settings.timeout)
        except (OSError, IMAPClientError) as error:
            raise DigestError(f"cannot reach {self.where}: {_reason(error)}", 1) from None
        try:
            if settings.security == "starttls":
                self.client.starttls(context)
            self.client.login(settings.username, settings.password)
            self.client.select_folder(settings.folder)
        except LoginError as error:
            self._drop()
            raise DigestError(f"{self.where} refused the login of {settings.username!r}: "
                              f"{_reason(error)}", 1) from None
        except (OSError, IMAPClientError) as error:
            self._drop()
            raise DigestError(f"{self.where}: {_reason(error)}", 1) from None

    def items(self) -> Iterator[Item]:
        uids = self.client.search("ALL")
        sizes = self.client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        for uid in sorted(sizes):
            yield Item(str(uid), int(sizes[uid][b"RFC822.SIZE"]))

    def read(self, item: Item) -> bytes | None:
        uid = int(item.name)
        found = self.client.fetch([uid], ["BODY.PEEK[]"])
        return bytes(found[uid][b"BODY[]"]) if uid in found else None

    def set_aside(self, item: Item) -> None:
        self.aside.append(int(item.name))

    def close(self) -> None:
        try:
            if self.aside:
                folder = self.settings.handled_folder
                if not self.client.folder_exists(folder):
                    self.client.create_folder(folder)
                if self.client.has_capability("MOVE"):
                    self.client.move(self.aside, folder)
                else:  # RFC 3501 alone: copy, then remove only those copied
                    self.client.copy(self.aside, folder)
                    self.client.delete_messages(self.aside)
                    self.client.uid_expunge(self.aside)
            self.client.logout()
        finally:
            self._drop()

    def _drop(self) -> None:
        with contextlib.suppress(OSError):  # after a logout, or a server gone away
            self.client.shutdown()


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    text = error.args[0] if error.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return getattr(error, "strerror", None) or str(text) or type(error).__name__


def configured(settings: Inbox) -> Mailbox:
    """The mailbox the configuration names (what the scheduler reads)."""
    return Imap(settings) if settings.source == "imap" else Maildir(settings.maildir)
