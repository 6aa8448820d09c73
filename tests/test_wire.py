"""The SMTP client on the wire: PIPELINING where the relay offers it (RFC 2920), and the bytes
DATA carries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from servers import FeedServer, SmtpServer, free_port
from support import Item, Site, digest, rows, rss

from digest import config as configuration
from digest import deliver


class _Pipelining:
    """A relay that offers PIPELINING (aiosmtpd reads commands in order, so it copes), refuses
    RCPT for addresses starting with `refused`, and keeps how many commands came in each
    read of the socket: a pipelined client sends MAIL, RCPT and DATA in one."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, bytes]] = []
        self.transactions = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", *responses[1:]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.transactions += 1
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address.startswith("refused"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        self.accepted += [(rcpt, envelope.original_content) for rcpt in envelope.rcpt_tos]
        return "250 OK queued"


@pytest.fixture
def relay() -> Iterator[tuple[int, _Pipelining]]:
    handler = _Pipelining()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            server_hostname="relay.digest.test")
    controller.start()
    yield controller.port, handler
    controller.stop()


def test_a_relay_offering_pipelining_gets_every_message_once_and_refusals_are_failed(
        site: Site, web: FeedServer, relay: tuple[int, _Pipelining]) -> None:
    port, handler = relay
    web.serve("/feed.xml", rss(Item("Harbour opens", "https://example.com/h", "h")))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = port
    site.extra = "connections = 2\npause_after_failures = 0\n"
    site.write()
    emails = [f"{'refused' if n % 5 == 0 else 'reader'}{n}@example.org" for n in range(40)]
    site.subscribers("email\n" + "".join(f"{e}\n" for e in emails))
    assert digest("collect").exit_code == 0
    result = digest("send")
    assert result.exit_code == 1  # the refused ones need a look
    got = sorted(rcpt for rcpt, _ in handler.accepted)
    assert got == sorted(e for e in emails if not e.startswith("refused"))
    statuses = dict(rows(site.database, "SELECT email, status FROM deliveries"))
    assert statuses == {e: "failed" if e.startswith("refused") else "sent" for e in emails}
    # A refused RCPT is answered with RSET on the same connection, which carries on.
    assert handler.transactions == len(emails)
    assert all(data.endswith(b"\r\n") and b"\r\n.\r\n" not in data
               for _, data in handler.accepted)


def test_a_message_not_made_by_compose_is_put_in_smtp_form(
        site: Site, smtp: SmtpServer) -> None:
    """A one-off message (a test send, a confirmation) may have bare line ends and lines
    starting with a dot: they are converted and the dots doubled, so the relay reads the
    lines back as they were and no line ends DATA early."""
    site.smtp_port = smtp.port
    site.write()
    config = configuration.load(site.config)
    message = (b"From: news@example.com\nTo: ann@example.com\nSubject: dots\n\n"
               b"first\n.\n.second\nlast")
    result = deliver.send_one(config, "ann@example.com", message)
    assert result.outcome.value == "sent", result
    [received] = smtp.messages
    assert received.data.replace(b"\r\n", b"\n").rstrip(b"\n").endswith(
        b"first\n.\n.second\nlast")
