"""Delivery: the transports that carry a message, and the ledger loop that drives them.

A transport is the boundary you can swap: "send these bytes to this address, tell me the
outcome". SMTP and Maildir implement it; tests use both for real.

The ledger loop commits a row `sending` before the transaction and its outcome right after the
reply, so a crash leaves at most one row in doubt per connection, never a duplicate.
"""

from __future__ import annotations

import contextlib
import mailbox
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol

from digest.config import Config, Smtp
from digest.errors import DigestError
from digest.records import Delivery, Outcome, Result
from digest.store import Store, now

# 4xx replies and lost connections are tried again on the next run, a little later each time.
RETRY_BASE = timedelta(minutes=5)


class TransportDown(Exception):
    """The relay cannot be reached at all; nothing was transmitted for the message at hand."""


class Transport(Protocol):
    def open(self) -> None: ...

    def send(self, sender: str, recipient: str, message: bytes) -> Result: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a Maildir: for editors and tests, never mails anyone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.box: mailbox.Maildir | None = None

    def open(self) -> None:
        self.box = mailbox.Maildir(self.path, create=True)

    def send(self, sender: str, recipient: str, message: bytes) -> Result:
        assert self.box is not None
        self.box.add(message)
        return Result(Outcome.SENT, f"written to {self.path}")

    def close(self) -> None:
        self.box = None


class SmtpTransport:
    """One reused connection to the relay, reopened when the server drops it."""

    def __init__(self, settings: Smtp) -> None:
        self.settings = settings
        self.connection: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def open(self) -> None:
        settings = self.settings
        context = ssl.create_default_context()
        try:
            if settings.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout, context=context)
            else:
                connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
                if settings.security == "starttls":
                    connection.starttls(context=context)
            if settings.username:
                connection.login(settings.username, settings.password)
        except smtplib.SMTPAuthenticationError as error:
            raise TransportDown(f"authentication refused: {_reply(error)}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise TransportDown(_reason(error)) from None
        self.connection = connection

    def send(self, sender: str, recipient: str, message: bytes) -> Result:
        if self.connection is None:
            self.open()
        assert self.connection is not None
        try:
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


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    return f"{error.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    if isinstance(error, smtplib.SMTPResponseException):
        return _reply(error)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _result(code: int, text: bytes | str) -> Result:
    words = text.decode(errors="replace") if isinstance(text, bytes) else text
    outcome = Outcome.FAILED if 500 <= code < 600 else Outcome.DEFERRED
    return Result(outcome, f"{code} {words}")


def transport(config: Config) -> Transport:
    if config.delivery.transport == "smtp":
        return SmtpTransport(config.smtp)
    return MaildirTransport(config.paths.outbox)


def where(config: Config) -> str:
    if config.delivery.transport == "smtp":
        return f"SMTP relay {config.smtp.host}:{config.smtp.port}"
    return f"Maildir {config.paths.outbox}"


@dataclass(frozen=True)
class Tally:
    edition_id: int
    counts: Counter[str]
    seconds: float

    @property
    def troubled(self) -> int:
        return sum(self.counts[o.value] for o in (Outcome.DEFERRED, Outcome.FAILED))


def run(store: Store, edition_id: int, message_for: Callable[[Delivery], bytes],
        carrier: Transport, sender: str, destination: str,
        progress: Callable[[Outcome], None] = lambda outcome: None,
        stop: threading.Event | None = None) -> Tally:
    """Deliver every due row of an edition through an open transport; `message_for` makes
    each row's bytes.

    `stop` is checked between messages: a transaction in flight is finished and recorded,
    the rest stay pending for the next run.
    """
    envelope = parseaddr(sender)[1]
    counts: Counter[str] = Counter()
    started = time.monotonic()
    for delivery in store.due(edition_id):
        if stop is not None and stop.is_set():
            break
        message = message_for(delivery)
        store.sending(delivery)
        try:
            result = carrier.send(envelope, delivery.email, message)
        except TransportDown as error:
            # Nothing went out for this row: it is simply still to do.
            store.settle(delivery, Result(Outcome.DEFERRED, str(error)))
            raise DigestError(f"cannot reach {destination}: {error}; "
                              "undelivered mail stays queued for the next run", 1) from None
        store.settle(delivery, result, _next_try(delivery) if result.outcome is
                     Outcome.DEFERRED else None)
        counts[result.outcome.value] += 1
        progress(result.outcome)
    return Tally(edition_id, counts, time.monotonic() - started)


def _next_try(delivery: Delivery):
    return now() + RETRY_BASE * 2 ** min(delivery.attempts, 6)
