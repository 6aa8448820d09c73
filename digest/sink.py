"""The local SMTP sink: a real SMTP server on loopback that accepts every message and writes it
into a Maildir. It lets the whole path (composition, SMTP, the ledger) run with no outside
server, for the demo, for editors, and for an operator trying a configuration.
"""

from __future__ import annotations

import mailbox
import socket
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, maildir: Path) -> None:
        self.box = mailbox.Maildir(maildir, create=True)
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.add(envelope.original_content or envelope.content)
        self.received += 1
        return "250 OK: written to the Maildir"


class Sink:
    """Context manager: the sink listening on `host`:`port` (port 0 picks a free one)."""

    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = _Handler(maildir)
        self.maildir = maildir
        self.controller = Controller(self.handler, hostname=host, port=port or _free_port(host),
                                     data_size_limit=0)

    @property
    def host(self) -> str:
        return self.controller.hostname

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> int:
        return self.handler.received

    def __enter__(self) -> Sink:
        # aiosmtpd checks itself by connecting to its port: with another server already there
        # it would wait for a banner that never comes. Binding first says "in use" at once.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.host, self.port))
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
