"""The transports, the boundary you can swap: "send these bytes to this address, tell me the
outcome". SMTP and Maildir implement it; tests use both for real."""

from __future__ import annotations

import contextlib
import mailbox
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Protocol

from digest.config import Smtp
from digest.errors import DigestError
from digest.records import Outcome, Result


class TransportDown(Exception):
    """The relay cannot be reached at all; nothing was transmitted for the message at hand."""


class Transport(Protocol):
    def open(self) -> None: ...

    def send(self, sender: str, recipient: str, message: bytes) -> Result: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a Maildir: for editors and tests, never mails anyone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.box: mailbox.Maildir | None = None

    def open(self) -> None:
        # Its three folders even in a folder that exists already (mailbox makes them only
        # in a new one): an empty outbox made by hand, or the mount point of a disk.
        try:
            for folder in ("tmp", "new", "cur"):
                (self.path / folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TransportDown(f"{error.filename}: {error.strerror}") from None
        self.box = mailbox.Maildir(self.path, create=False)

    def send(self, sender: str, recipient: str, message: bytes) -> Result:
        assert self.box is not None
        try:
            self.box.add(message)
        except OSError as error:
            raise DigestError(f"{self.path}: cannot write a message: {error.strerror}",
                              1) from None
        return Result(Outcome.SENT, f"written to {self.path}")

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.box = None


class SmtpTransport:
    """One reused connection to the relay, reopened when the server drops it and after
    `messages_per_connection` messages (relays throttle or close long sessions)."""

    def __init__(self, settings: Smtp) -> None:
        self.settings = settings
        self.connection: smtplib.SMTP | None = None
        self.carried = 0

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def open(self) -> None:
        settings = self.settings
        helo = settings.helo_name or None
        step = "connecting"  # what failed, for the operator
        try:
            if settings.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.host, settings.port, local_hostname=helo,
                    timeout=settings.connect_timeout, context=self._context())
            else:
                connection = smtplib.SMTP(settings.host, settings.port, local_hostname=helo,
                                          timeout=settings.connect_timeout)
            # Connected: from here on each command has its own, usually longer, limit.
            connection.timeout = settings.timeout
            if connection.sock is not None:
                connection.sock.settimeout(settings.timeout)
            if settings.security == "starttls":
                step = "STARTTLS"
                connection.starttls(context=self._context())
            if settings.username:
                step = "AUTH"
                connection.login(settings.username, settings.password)
            step = "EHLO"
            connection.ehlo_or_helo_if_needed()
        except smtplib.SMTPAuthenticationError as error:
            raise TransportDown(f"authentication as {settings.username!r} refused: "
                                f"{_reason(error)} (the password comes from "
                                "DIGEST_SMTP_PASSWORD)") from None
        except smtplib.SMTPNotSupportedError:
            raise TransportDown(f"the relay does not offer {step}, which the [smtp] settings "
                                "ask for") from None
        except (smtplib.SMTPException, OSError) as error:
            where = "while connecting" if step == "connecting" else f"during {step}"
            raise TransportDown(f"{_reason(error)} {where}") from None
        self.connection = connection
        self.carried = 0

    def send(self, sender: str, recipient: str, message: bytes) -> Result:
        if self.connection is not None and self.carried >= self.settings.messages_per_connection:
            self.close()
        if self.connection is None:
            self.open()
        assert self.connection is not None
        self.carried += 1
        try:
            if self.connection.has_extn("pipelining") and _wire_ready(sender, recipient, message):
                return self._pipelined(self.connection, sender, recipient, message)
            self.connection.sendmail(sender, [recipient], message)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = error.recipients[recipient]
            return _result(code, text)
        except smtplib.SMTPResponseException as error:
            if error.smtp_code == 421:  # the server is closing this connection
                self._drop()
            return _result(error.smtp_code, error.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop()
            return Result(Outcome.DEFERRED, f"connection lost: {_reason(error)}")
        return Result(Outcome.SENT, "250 accepted")

    def _pipelined(self, connection: smtplib.SMTP, sender: str, recipient: str,
                   message: bytes) -> Result:
        """MAIL, RCPT and DATA in one write (RFC 2920), then the ready bytes as they are:
        two round trips instead of four, and none of smtplib's per-message rewriting of a
        70 KB body that needs none."""
        connection.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
                        .encode("ascii"))
        replies = [connection.getreply() for _ in range(3)]
        refused = next(((code, text) for code, text in replies[:2] if not 200 <= code < 300),
                       None)
        if refused is not None or replies[2][0] != 354:
            if replies[2][0] == 354:  # a server that took DATA after all: send it nothing
                connection.send(b".\r\n")
                connection.getreply()
            code, text = refused or replies[2]
            if code == 421:
                self._drop()
            else:
                connection.rset()
            return _result(code, text)
        connection.send(message + b".\r\n")
        code, text = connection.getreply()
        if code == 421:
            self._drop()
        if code != 250:
            return _result(code, text)
        return Result(Outcome.SENT, "250 accepted")

    def reset(self) -> None:
        """A retry goes out on a fresh connection: the old one may be wedged."""
        self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.connection.quit()
            self._drop()


def _wire_ready(sender: str, recipient: str, message: bytes) -> bool:
    """True when the bytes can go on the wire untouched: CRLF line ends only, no line that
    starts with a dot (which SMTP would have to double), ASCII addresses. Compose's output
    always is; anything else takes smtplib's careful path."""
    return (sender.isascii() and recipient.isascii() and message.endswith(b"\r\n")
            and b"\n." not in message and message.count(b"\n") == message.count(b"\r\n"))


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    if isinstance(error, smtplib.SMTPResponseException):
        return _reply(error.smtp_code, error.smtp_error)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _result(code: int, text: bytes | str) -> Result:
    return Result(Outcome.FAILED if 500 <= code < 600 else Outcome.DEFERRED, _reply(code, text))
