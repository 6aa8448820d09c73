"""The transports, the boundary you can swap: "send these bytes to this address, tell me the
outcome". SMTP and Maildir implement it; tests use both for real."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import mailbox
import os
import re
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from digest.config import Smtp
from digest.errors import DigestError
from digest.records import Outcome, Result


class TransportDown(Exception):
    """The relay cannot be reached at all; nothing was transmitted for the message at hand."""


class Formed(bytes):
    """A message already as SMTP's DATA carries it (see `wire`), vouched for by its maker:
    checking 50 KB for line ends and dots, message after message, costs as much as sending
    it. Compose's Letter makes every message so (its quoted-printable never starts a line
    with a dot)."""


class Transport(Protocol):
    """A connection's worth of delivery, on the event loop that drives every connection of a
    run (deliver.Pool)."""

    async def open(self) -> None: ...

    async def send(self, sender: str, recipient: str, message: bytes) -> Result: ...

    async def reset(self) -> None: ...

    async def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a Maildir: for editors and tests, never mails anyone. (It
    writes in place, without yielding to the loop: it is the only connection of its run.)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.box: mailbox.Maildir | None = None

    async def open(self) -> None:
        # Its three folders even in a folder that exists already (mailbox makes them only
        # in a new one): an empty outbox made by hand, or the mount point of a disk.
        try:
            for folder in ("tmp", "new", "cur"):
                (self.path / folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TransportDown(f"{error.filename}: {error.strerror}") from None
        self.box = mailbox.Maildir(self.path, create=False)

    async def send(self, sender: str, recipient: str, message: bytes) -> Result:
        assert self.box is not None
        try:
            self.box.add(message)
        except OSError as error:
            raise DigestError(f"{self.path}: cannot write a message: {error.strerror}",
                              1) from None
        return Result(Outcome.SENT, f"written to {self.path}")

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        self.box = None


class _Refused(Exception):
    """A reply other than the one a step of the session needs."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(_reply(code, text))


class _Unoffered(Exception):
    """The relay does not offer what the [smtp] settings ask for (the step, unless said)."""


class SmtpTransport:
    """One reused ESMTP connection to the relay, on asyncio streams, reopened when the server
    drops it and after `messages_per_connection` messages (relays throttle or close long
    sessions). MAIL, RCPT and DATA go in one write where the relay offers PIPELINING (RFC
    2920): two round trips a message instead of four."""

    def __init__(self, settings: Smtp) -> None:
        self.settings = settings
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.features: dict[str, str] = {}  # EHLO's keywords, lower-cased, and their words
        self.carried = 0

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @functools.cached_property
    def _context(self) -> ssl.SSLContext:
        """Made once: loading the system's certificates takes a while, and a connection is
        reopened every `messages_per_connection` messages."""
        context = ssl.create_default_context()
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def open(self) -> None:
        settings = self.settings
        step = "connecting"  # what failed, for the operator
        try:
            async with asyncio.timeout(settings.connect_timeout):
                secure = settings.security == "ssl"
                self.reader, self.writer = await asyncio.open_connection(
                    settings.host, settings.port, ssl=self._context if secure else None,
                    server_hostname=settings.host if secure else None)
                await self._expect(220)
            # Connected: from here on each command has its own, usually longer, limit.
            step = "EHLO"
            await self._hello()
            if settings.security == "starttls":
                step = "STARTTLS"
                if "starttls" not in self.features:
                    raise _Unoffered
                await self._command("STARTTLS", 220)
                async with asyncio.timeout(settings.timeout):
                    await self.writer.start_tls(self._context, server_hostname=settings.host)
                await self._hello()  # the extensions again, now that nobody listens in
            if settings.username:
                step = "AUTH"
                await self._login()
        except _Refused as error:
            self._drop()
            if step == "AUTH":
                raise TransportDown(f"authentication as {settings.username!r} refused: "
                                    f"{error} (the password comes from "
                                    "DIGEST_SMTP_PASSWORD)") from None
            where = "while connecting" if step == "connecting" else f"during {step}"
            raise TransportDown(f"{error} {where}") from None
        except _Unoffered as error:
            self._drop()
            raise TransportDown(f"the relay does not offer {str(error) or step}, which the [smtp] "
                                "settings ask for") from None
        except (OSError, EOFError) as error:
            self._drop()
            where = "while connecting" if step == "connecting" else f"during {step}"
            raise TransportDown(f"{_reason(error)} {where}") from None
        self.carried = 0

    async def _hello(self) -> None:
        """EHLO, or HELO from a server that knows no ESMTP; the features it names."""
        name = self.settings.helo_name or _fqdn()
        code, text = await self._ask(f"EHLO {name}")
        if code == 250:
            lines = text.split("\n")[1:]
            self.features = {word.lower(): rest for word, _, rest in
                             (line.strip().partition(" ") for line in lines) if word}
            return
        self.features = {}
        await self._command(f"HELO {name}", 250)

    async def _login(self) -> None:
        """AUTH PLAIN (RFC 4616), or LOGIN where only that is offered, as smtplib would."""
        if "auth" not in self.features:
            raise _Unoffered
        offered = self.features["auth"].upper().split()
        user, password = self.settings.username, self.settings.password
        if "PLAIN" in offered:
            await self._command("AUTH PLAIN " + _b64(f"\0{user}\0{password}"), 235)
        elif "LOGIN" in offered:
            await self._command(f"AUTH LOGIN {_b64(user)}", 334)
            await self._command(_b64(password), 235)
        else:
            raise _Unoffered(f"AUTH PLAIN or LOGIN (only {' '.join(offered) or 'none'})")

    async def send(self, sender: str, recipient: str, message: bytes) -> Result:
        if self.writer is not None and self.carried >= self.settings.messages_per_connection:
            await self.close()
        if self.writer is None:
            await self.open()
        self.carried += 1
        try:
            return await self._transaction(
                sender, recipient, message if isinstance(message, Formed) else wire(message))
        except (OSError, EOFError) as error:
            self._drop()
            return Result(Outcome.DEFERRED, f"connection lost: {_reason(error)}")

    async def _transaction(self, sender: str, recipient: str, message: bytes) -> Result:
        size = f" SIZE={len(message)}" if "size" in self.features else ""
        commands = [f"MAIL FROM:<{sender}>{size}", f"RCPT TO:<{recipient}>", "DATA"]
        replies: list[tuple[int, str]] = []
        if "pipelining" in self.features:
            self._write("".join(f"{command}\r\n" for command in commands).encode("ascii"))
            replies = await self._replies(len(commands))
        else:
            for command, wanted in zip(commands, (250, 250, 354), strict=True):
                replies.append(await self._ask(command))
                if replies[-1][0] // 100 != wanted // 100:
                    break
        refused = next((reply for reply in replies[:2] if reply[0] // 100 != 2), None)
        data = replies[2] if len(replies) == 3 else (0, "")
        if refused is not None or data[0] != 354:
            if data[0] == 354:  # a server that took DATA after all: send it nothing
                await self._ask(".")
            code, text = refused or data
            if code == 421:  # the server is closing this connection
                self._drop()
            else:
                await self._ask("RSET")
            return _result(code, text)
        self._write(message + b".\r\n")
        code, text = await self._read()
        if code == 421:
            self._drop()
        if code != 250:
            return _result(code, text)
        return Result(Outcome.SENT, "250 accepted")

    def _write(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def _read(self) -> tuple[int, str]:
        """One reply, its lines joined by newlines; the write before it is flushed first."""
        return (await self._replies(1))[0]

    async def _replies(self, count: int) -> list[tuple[int, str]]:
        """The next `count` replies, under one deadline of `timeout`: pipelined commands'
        replies come together, and a timer per reply cost more than the reading."""
        assert self.reader is not None and self.writer is not None
        replies = []
        async with asyncio.timeout(self.settings.timeout):
            await self.writer.drain()
            for _ in range(count):
                lines: list[str] = []
                while True:
                    line = await self.reader.readline()
                    if not line.endswith(b"\n"):
                        raise ConnectionResetError("the server closed the connection")
                    lines.append(line[4:].strip().decode(errors="replace"))
                    if line[3:4] != b"-":
                        break
                replies.append((int(line[:3]) if line[:3].isdigit() else -1, "\n".join(lines)))
        return replies

    async def _ask(self, command: str) -> tuple[int, str]:
        self._write(f"{command}\r\n".encode("ascii"))
        return await self._read()

    async def _command(self, command: str, wanted: int) -> None:
        code, text = await self._ask(command)
        if code != wanted:
            raise _Refused(code, text)

    async def _expect(self, wanted: int) -> None:
        code, text = await self._read()
        if code != wanted:
            raise _Refused(code, text)

    async def reset(self) -> None:
        """A retry goes out on a fresh connection: the old one may be wedged."""
        self._drop()

    def _drop(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None
        self.features = {}

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError, EOFError):
                await self._ask("QUIT")
            self._drop()


def probe(settings: Smtp) -> None:
    """Open the connection a send opens (TLS, EHLO, AUTH), then QUIT without a MAIL command;
    TransportDown when that fails. On a loop in a thread of its own, as deliver.Pool runs
    one: the caller may be inside an event loop."""
    async def once() -> None:
        carrier = SmtpTransport(settings)
        await carrier.open()
        await carrier.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, once()).result()


@functools.cache
def _fqdn() -> str:
    """This machine's name for EHLO, as smtplib finds it (looked up once, it may be slow)."""
    return socket.getfqdn()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def wire(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, a leading dot doubled (RFC 5321
    4.5.2), ending in CRLF; bytes that are so already go untouched."""
    if _wire_ready(message):
        return message
    lines = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    stuffed = re.sub(rb"(?m)^\.", b"..", lines)
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


def _wire_ready(message: bytes) -> bool:
    """True when the bytes can go on the wire untouched: CRLF line ends only, no line that
    starts with a dot (which SMTP would have to double)."""
    return (message.endswith(b"\r\n") and b"\n." not in message and not message.startswith(b".")
            and message.count(b"\n") == message.count(b"\r\n")
            and message.count(b"\r") == message.count(b"\r\n"))


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    if isinstance(error, OSError) and error.errno:
        # asyncio words a refused connection "Connect call failed (...)": the system's words.
        return os.strerror(error.errno)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _result(code: int, text: bytes | str) -> Result:
    return Result(Outcome.FAILED if 500 <= code < 600 else Outcome.DEFERRED, _reply(code, text))
