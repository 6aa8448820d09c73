"""Real servers on loopback for the test suite: an SMTP relay and an HTTP feed host.

Tests in this project never mock our own code.  They point the real mailer and the
real fetcher at these servers and inject faults *in the servers*, so what is tested
is exactly what runs in production, down to the sockets.

* :class:`SmtpServer` wraps aiosmtpd's threaded ``Controller``; faults (reply codes,
  dropped connections, delays, mandatory AUTH, downtime) are switched on and off at
  any time from the test thread.
* :class:`FeedServer` is a ``ThreadingHTTPServer`` serving registered routes with
  conditional GET, gzip, redirects, slow headers, slow bodies and responses trickled a
  byte at a time, on 127.0.0.1 or any other local address (127.0.0.2, ::1).
* ``python tests/servers.py smtp --port P --out DIR`` runs the SMTP server as its own
  process, recording deliveries to disk, for tests that kill the mailer midway.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.message
import email.policy
import fcntl
import gzip as gzip_module
import http.server
import logging
import os
import re
import signal
import socket
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "FeedServer",
    "Received",
    "Request",
    "SmtpServer",
    "free_port",
]

LOOPBACK = "127.0.0.1"


class _QuietLoginDataDeprecation(logging.Filter):
    """aiosmtpd 1.4 sets ``Session.login_data`` itself on every successful AUTH and
    then logs a deprecation warning about its own assignment; drop that noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLoginDataDeprecation())


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), so parallel test runs don't collide on a
    hard-coded number.  There is a tiny window in which someone else could take it;
    on loopback in a test run that is an acceptable risk.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Received:
    """One message the SMTP server accepted (a 250 reply to the end of DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        """The data parsed with the modern email policy, for header/body assertions."""
        msg = BytesParser(policy=email.policy.default).parsebytes(self.data)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


_FAULT_COMMANDS = frozenset({"MAIL", "RCPT", "DATA"})


@dataclass
class _Fault:
    """One injected behaviour; ``times`` counts down as it fires (None = forever)."""

    command: str
    action: Literal["reply", "drop", "delay"]
    code: int = 0
    text: str = ""
    seconds: float = 0.0
    times: int | None = None
    match: str | None = None

    def applies(self, addresses: tuple[str, ...]) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.match is None:
            return True
        wanted = self.match.casefold()
        return any(address.casefold() == wanted for address in addresses)


def _default_text(code: int) -> str:
    if code == 421:
        return "4.3.2 Service not available, closing transmission channel (injected)"
    if 400 <= code < 500:
        return "4.3.0 Temporary failure (injected)"
    if 500 <= code < 600:
        return "5.0.0 Permanent failure (injected)"
    return "Injected reply"


async def _hang_until_cancelled() -> None:
    """Park a handler coroutine until aiosmtpd cancels it.

    After we close the transport ourselves, aiosmtpd's ``connection_lost`` cancels
    the session task.  Returning from the hook instead would make aiosmtpd push a
    reply onto the dead transport and raise ``ConnectionResetError`` in the task.
    """
    await asyncio.Event().wait()


class _FaultyHandler:
    """aiosmtpd handler: accepts everything unless a fault says otherwise.

    Every hook runs on the server's event-loop thread while tests reconfigure from
    their own thread, so all shared state is read and written under ``_lock``, and
    never across an ``await``.
    """

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    # Counting-only hooks: MISSING tells aiosmtpd to carry on with its default.
    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> Any:
        self._owner._count("HELO")
        return MISSING

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # The 5-argument EHLO hook *replaces* aiosmtpd's bookkeeping, so we must
        # record the HELO name ourselves or every MAIL gets "503 send HELO first".
        self._owner._count("EHLO")
        session.host_name = hostname
        if self._owner._auth is None:
            # The authenticator is always installed (auth can be switched on
            # mid-test), so hide the AUTH line when auth isn't required.
            responses = [line for line in responses if not line[4:].startswith("AUTH")]
        return responses

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> Any:
        self._owner._count("NOOP")
        return MISSING

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        self._owner._count("RSET")
        return MISSING

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        self._owner._count("QUIT")
        return MISSING

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> Any:
        self._owner._count("MAIL")
        if self._owner._auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await self._apply_faults(server, "MAIL", (address,))

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> Any:
        self._owner._count("RCPT")
        return await self._apply_faults(server, "RCPT", (address,))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        self._owner._count("DATA")
        status = await self._apply_faults(server, "DATA", tuple(envelope.rcpt_tos))
        if status is not MISSING:
            return status
        content = envelope.original_content
        assert content is not None and envelope.mail_from is not None
        self._owner._record(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(content),
            )
        )
        return "250 2.0.0 OK: queued"

    async def _apply_faults(self, server: SMTP, command: str, addresses: tuple[str, ...]) -> Any:
        """Sleep / reply / drop as configured; MISSING means "accept normally"."""
        delay, fault = self._owner._take_faults(command, addresses)
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            return MISSING
        transport = server.transport
        if fault.action == "drop":
            assert transport is not None
            transport.close()
            await _hang_until_cancelled()
        status = f"{fault.code} {fault.text}"
        if fault.code == 421:
            # Real servers hang up after 421; so must we, after the reply is out.
            await server.push(status)
            assert transport is not None
            transport.close()
            await _hang_until_cancelled()
        return status

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd ``authenticator`` for PLAIN and LOGIN; wrong credentials get 535."""
        self._owner._count("AUTH")
        expected = self._owner._auth
        if expected is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login, auth_data.password) == (
            expected[0].encode(),
            expected[1].encode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode())


class _Controller(Controller):
    """Controller that counts connections and remembers live sessions.

    ``factory()`` runs once per accepted connection, which makes it the one place
    to count connections and to keep the protocol objects ``stop()`` must abort.
    """

    def __init__(self, owner: SmtpServer, handler: _FaultyHandler, port: int) -> None:
        super().__init__(
            handler,
            hostname=LOOPBACK,
            port=port,
            # Without a name aiosmtpd calls socket.getfqdn() for *every* connection,
            # which can stall for seconds on machines with slow DNS.
            server_hostname="smtp.digest.test",
            authenticator=handler.authenticate,
            auth_require_tls=False,
        )
        self._owner = owner
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = super().factory()
        self.sessions.add(smtp)
        self._owner._connection_opened()
        return smtp


class SmtpServer:
    """An aiosmtpd relay on 127.0.0.1 with switchable faults.

    Use as a context manager.  Everything is thread-safe: tests reconfigure faults
    while a mailer thread is mid-session, and the next command sees the change.
    Fault methods return ``self`` so they chain.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        on_message: Callable[[Received], None] | None = None,
    ) -> None:
        """``on_message`` runs on the server thread before the 250 reply, so by the
        time a client sees 250 the callback (e.g. writing to disk) has finished."""
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self._on_message = on_message
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._messages: list[Received] = []
        self._faults: list[_Fault] = []
        self._auth: tuple[str, str] | None = None
        self._connections = 0
        self._counting = False
        self._commands: collections.Counter[str] = collections.Counter()
        self._handler = _FaultyHandler(self)
        self._controller: _Controller | None = None

    # ---- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        """Listen on ``self.port`` (again).  Messages, counters and faults survive."""
        if self._controller is not None:
            return self
        # A controller's event loop is closed by stop(), so each start needs a new one.
        controller = _Controller(self, self._handler, self.port)
        # Controller.start() opens a probe connection of its own to make sure the
        # server answers; that one must not show up in ``connections``.
        with self._lock:
            self._counting = False
        controller.start()
        with self._lock:
            self._counting = True
        self._controller = controller
        return self

    def stop(self) -> Self:
        """Stop listening *and* cut every open session, like a relay going down.

        Clients then get "connection refused" until :meth:`start`.
        """
        controller = self._controller
        if controller is None:
            return self
        self._controller = None

        async def abort_sessions() -> None:
            for smtp in list(controller.sessions):
                if smtp.transport is not None:
                    smtp.transport.abort()
            # Let connection_lost() run and the cancelled session tasks unwind, so
            # the loop is not closed under pending tasks.
            for _ in range(3):
                await asyncio.sleep(0)

        if controller.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(abort_sessions(), controller.loop).result(5)
        controller.stop()
        return self

    # ---- observations

    @property
    def messages(self) -> list[Received]:
        """Snapshot of accepted messages, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """Client connections opened (across restarts), excluding aiosmtpd's own probe."""
        with self._lock:
            return self._connections

    @property
    def commands(self) -> collections.Counter[str]:
        """How often each command reached the server: EHLO, HELO, AUTH, MAIL, RCPT,
        DATA (counted once the content is complete), RSET, NOOP, QUIT."""
        with self._lock:
            return collections.Counter(self._commands)

    def recipients(self) -> collections.Counter[str]:
        """Deliveries per envelope recipient across all accepted messages."""
        with self._lock:
            return collections.Counter(r for m in self._messages for r in m.rcpt_tos)

    def wait_for(self, n: int, timeout: float = 10) -> list[Received]:
        """Block until at least ``n`` messages were accepted; return them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) >= n, timeout):
                got = [m.rcpt_tos for m in self._messages]
                raise AssertionError(
                    f"SMTP server on port {self.port} accepted {len(got)} message(s) "
                    f"within {timeout}s, expected at least {n}; recipients so far: {got}"
                )
            return list(self._messages)

    def clear_messages(self) -> Self:
        with self._lock:
            self._messages.clear()
        return self

    # ---- fault injection

    def reply(
        self,
        command: str,
        code: int,
        text: str | None = None,
        *,
        times: int | None = None,
        match: str | None = None,
    ) -> Self:
        """Answer ``command`` (MAIL, RCPT or DATA) with ``code`` instead of accepting.

        ``match`` restricts the fault to one envelope address (case-insensitive):
        the sender for MAIL, the recipient for RCPT, any recipient for DATA.
        A 421 reply is followed by the server closing the connection.
        """
        self._add(
            _Fault(
                command=self._command(command),
                action="reply",
                code=code,
                text=text if text is not None else _default_text(code),
                times=times,
                match=match,
            )
        )
        return self

    def drop_in_data(self, times: int | None = 1, *, match: str | None = None) -> Self:
        """After the whole DATA content arrived, hang up without replying.

        This is the nasty case for a mailer: the relay may or may not have the
        message, and the client only sees ``SMTPServerDisconnected``.  Nothing is
        recorded in :attr:`messages`.
        """
        self._add(_Fault(command="DATA", action="drop", times=times, match=match))
        return self

    def delay(
        self,
        command: str,
        seconds: float,
        *,
        times: int | None = None,
        match: str | None = None,
    ) -> Self:
        """Sleep ``seconds`` before handling ``command``; other sessions stay served."""
        self._add(
            _Fault(
                command=self._command(command),
                action="delay",
                seconds=seconds,
                times=times,
                match=match,
            )
        )
        return self

    def require_auth(self, username: str, password: str) -> Self:
        """Advertise AUTH PLAIN/LOGIN (no TLS needed) and answer MAIL with 530 until
        the session authenticated; wrong credentials get 535."""
        with self._lock:
            self._auth = (username, password)
        return self

    def clear_faults(self) -> Self:
        """Back to a well-behaved relay (also drops the AUTH requirement)."""
        with self._lock:
            self._faults.clear()
            self._auth = None
        return self

    # ---- internals used by the handler (server thread)

    @staticmethod
    def _command(command: str) -> str:
        name = command.upper()
        if name not in _FAULT_COMMANDS:
            raise ValueError(f"faults apply to {sorted(_FAULT_COMMANDS)}, not {command!r}")
        return name

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_faults(self, command: str, addresses: tuple[str, ...]) -> tuple[float, _Fault | None]:
        """Pick (and use up one firing of) the first delay and the first reply/drop
        fault that apply; atomically, so two sessions never both consume ``times=1``."""
        delay = 0.0
        chosen: _Fault | None = None
        delay_taken = False
        with self._lock:
            for fault in self._faults:
                if fault.command != command or not fault.applies(addresses):
                    continue
                if fault.action == "delay":
                    if delay_taken:
                        continue
                    delay_taken = True
                    delay = fault.seconds
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if fault.times is not None:
                    fault.times -= 1
        return delay, chosen

    def _count(self, command: str) -> None:
        with self._lock:
            self._commands[command] += 1

    def _connection_opened(self) -> None:
        with self._lock:
            if self._counting:
                self._connections += 1

    def _record(self, message: Received) -> None:
        if self._on_message is not None:
            self._on_message(message)
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Request:
    """One HTTP request as the feed server saw it (headers keyed in lower case)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class _Route:
    body: bytes
    content_type: str
    status: int
    reason: str | None
    headers: dict[str, str]
    etag: str | None
    last_modified: str | None
    gzip: bool
    delay: float
    chunk_delay: float | None
    chunk_size: int
    trickle: float | None


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """True if ``gzip`` (or ``*``) is listed without ``q=0``."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        if q is None or float(q.group(1)) > 0:
            return True
    return False


class _FeedHandler(http.server.BaseHTTPRequestHandler):
    """Serves the owning FeedServer's routes.

    HTTP/1.1 so slow bodies can use chunked encoding, but every response closes the
    connection: a keep-alive socket would outlive the FeedServer and let a pooled
    client keep talking to a server the test believes is gone.
    """

    protocol_version = "HTTP/1.1"
    server: _FeedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; ``FeedServer.requests`` has it all."""

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        owner = self.server.owner
        headers = {key.lower(): value for key, value in self.headers.items()}
        owner._log(Request(method=self.command, path=self.path, headers=headers))
        self.close_connection = True
        route = owner._route(self.path)
        try:
            if route is None:
                self._send(404, b"not found\n", {"Content-Type": "text/plain"}, send_body)
                return
            if route.delay and owner._closing.wait(route.delay):
                return
            self._send_route(route, headers, send_body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (typically a read timeout under test); that's fine.
            pass

    def _send_route(self, route: _Route, headers: dict[str, str], send_body: bool) -> None:
        validators: dict[str, str] = {}
        if route.etag is not None:
            validators["ETag"] = route.etag
        if route.last_modified is not None:
            validators["Last-Modified"] = route.last_modified

        if route.status == 200 and self._not_modified(route, headers):
            self.send_response(304)
            for key, value in validators.items():
                self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            return

        body = route.body
        extra = {"Content-Type": route.content_type, **validators, **route.headers}
        if route.gzip:
            extra["Vary"] = "Accept-Encoding"
            if _accepts_gzip(headers.get("accept-encoding")):
                body = gzip_module.compress(body, mtime=0)
                extra["Content-Encoding"] = "gzip"
        if route.trickle is not None:
            self._trickle(route, body, extra)
            return
        if route.chunk_delay is None:
            self._send(route.status, body, extra, send_body, route.reason)
            return

        self.send_response(route.status, route.reason)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        for start in range(0, len(body), route.chunk_size):
            self.wfile.write(self._chunk(body[start : start + route.chunk_size]))
            self.wfile.flush()
            if self.server.owner._closing.wait(route.chunk_delay):
                return
        self.wfile.write(b"0\r\n\r\n")

    def _trickle(self, route: _Route, body: bytes, extra: dict[str, str]) -> None:
        """The whole response, status line first, one byte every ``route.trickle`` seconds;
        how many bytes went out before the client hung up is recorded."""
        assert route.trickle is not None
        head = [f"HTTP/1.1 {route.status} {route.reason or self.responses[route.status][0]}"]
        head += [f"{key}: {value}" for key, value in extra.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        response = "\r\n".join(head).encode("latin-1") + body
        sent = 0
        try:
            for byte in range(len(response)):
                self.wfile.write(response[byte : byte + 1])
                self.wfile.flush()
                sent += 1
                if self.server.owner._closing.wait(route.trickle):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.server.owner._trickled(self.path, sent, len(response))

    @staticmethod
    def _chunk(piece: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(piece), piece)

    @staticmethod
    def _not_modified(route: _Route, headers: dict[str, str]) -> bool:
        # If-None-Match wins over If-Modified-Since when both are usable (RFC 9110 13.2.2).
        inm = headers.get("if-none-match")
        if inm is not None and route.etag is not None:
            return inm == route.etag
        ims = headers.get("if-modified-since")
        if ims is not None and route.last_modified is not None:
            return ims == route.last_modified
        return False

    def _send(self, status: int, body: bytes, extra: dict[str, str], send_body: bool,
              reason: str | None = None) -> None:
        self.send_response(status, reason)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class _FeedHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FeedServer, host: str) -> None:
        self.owner = owner
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), _FeedHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-response are expected in timeout tests; stay quiet
        about those and report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class FeedServer:
    """HTTP server on ``host`` (127.0.0.1 unless told another local address, such as
    127.0.0.2 or ::1) serving feeds registered with :meth:`serve`.

    Routes can be replaced at any time (thread-safe), so a test can change a feed
    between two runs of the fetcher and see what it does with 304s, new items, etc.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._requests: list[Request] = []
        self._trickles: list[tuple[str, int, int]] = []
        self._trickle_done = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._httpd = _FeedHTTPServer(self, host)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FeedServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; requests still sleeping in ``delay`` give up at once."""
        self._closing.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[Request]:
        """Snapshot of every request received, in order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Request]:
        """Requests whose path (ignoring the query string) is ``path``."""
        wanted = _normalise(path)
        return [r for r in self.requests if r.path.split("?", 1)[0] == wanted]

    def serve(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str = "application/rss+xml; charset=utf-8",
        status: int = 200,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        gzip: bool = False,
        delay: float = 0.0,
        chunk_delay: float | None = None,
        chunk_size: int = 64,
        trickle: float | None = None,
    ) -> Self:
        """Register (or replace) the response for ``path``.

        * ``etag`` / ``last_modified``: sent as validators; a request whose
          If-None-Match / If-Modified-Since equals them gets 304 with no body.
        * ``gzip``: compress when the client's Accept-Encoding allows it.
        * ``delay``: seconds before the status line (to trip read timeouts).
        * ``chunk_delay``: stream the body chunked, ``chunk_size`` bytes at a time,
          sleeping between chunks (to trip total-time limits).
        * ``trickle``: send the whole response, status line and headers included, one
          byte every ``trickle`` seconds (each byte well within a read timeout);
          :meth:`trickled` tells how much went out before the client hung up.
        * ``headers``: extra response headers, e.g. ``{"Retry-After": "120"}``.
        * ``reason``: the status line's reason phrase, instead of the standard one.
        """
        data = body.encode() if isinstance(body, str) else bytes(body)
        route = _Route(
            body=data,
            content_type=content_type,
            status=status,
            reason=reason,
            headers=dict(headers or {}),
            etag=etag,
            last_modified=last_modified,
            gzip=gzip,
            delay=delay,
            chunk_delay=chunk_delay,
            chunk_size=max(1, chunk_size),
            trickle=trickle,
        )
        with self._lock:
            self._routes[_normalise(path)] = route
        return self

    def redirect(self, path: str, to_path: str, status: int = 301) -> Self:
        """Make ``path`` redirect to ``to_path`` (a path here, or an absolute URL)."""
        location = to_path if "://" in to_path else self.url(to_path)
        return self.serve(
            path,
            b"",
            content_type="text/plain",
            status=status,
            headers={"Location": location},
        )

    def remove(self, path: str) -> Self:
        """Forget a route, so it answers 404 again."""
        with self._lock:
            self._routes.pop(_normalise(path), None)
        return self

    def _route(self, raw_path: str) -> _Route | None:
        """Exact match on path+query first, then on the path alone."""
        with self._lock:
            route = self._routes.get(raw_path)
            if route is None:
                route = self._routes.get(raw_path.split("?", 1)[0])
            return route

    def trickled(self, path: str, timeout: float = 30) -> tuple[int, int]:
        """For the first trickled response to ``path`` that has ended (waiting for it up
        to ``timeout`` seconds): the bytes sent before the client hung up, of how many."""
        wanted = _normalise(path)

        def ended() -> tuple[int, int] | None:
            return next(((sent, total) for where, sent, total in self._trickles
                         if where.split("?", 1)[0] == wanted), None)

        with self._trickle_done:
            found = self._trickle_done.wait_for(ended, timeout)
        if found is None:
            raise AssertionError(f"no trickled response to {path} ended within {timeout}s")
        return found

    def _trickled(self, path: str, sent: int, total: int) -> None:
        with self._trickle_done:
            self._trickles.append((path, sent, total))
            self._trickle_done.notify_all()

    def _log(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)


def _normalise(path: str) -> str:
    return "/" + path.lstrip("/")


# --------------------------------------------------------------- out-of-process SMTP


class _DiskRecorder:
    """Writes each accepted message to ``DIR/<n>-<rcpt>.eml`` (one per recipient)
    and appends ``<rcpt>`` to ``DIR/recipients.log``, flushed before the 250 goes out.

    File creation uses O_EXCL, so a restarted server process writing into the same
    directory never overwrites an earlier delivery; the log is appended under an
    flock so several server processes may share it.
    """

    def __init__(self, out: Path) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._next = 1
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: Received) -> None:
        with self._lock:
            for rcpt in message.rcpt_tos:
                self._write_eml(rcpt, message.data)
            with open(self._out / "recipients.log", "a", encoding="utf-8") as log:
                fcntl.flock(log, fcntl.LOCK_EX)
                try:
                    log.write("".join(f"{rcpt}\n" for rcpt in message.rcpt_tos))
                    log.flush()
                    os.fsync(log.fileno())
                finally:
                    fcntl.flock(log, fcntl.LOCK_UN)

    def _write_eml(self, rcpt: str, data: bytes) -> None:
        safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", rcpt)
        while True:
            path = self._out / f"{self._next:06d}-{safe}.eml"
            self._next += 1
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return


def _serve_smtp(port: int, out: Path, delay: float) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = SmtpServer(port, on_message=_DiskRecorder(out))
    if delay:
        server.delay("DATA", delay)
    with server:
        print(f"ready {server.port}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servers.py", description=__doc__)
    commands = parser.add_subparsers(dest="server", required=True)
    smtp = commands.add_parser("smtp", help="run the SMTP relay until SIGTERM")
    smtp.add_argument("--port", type=int, default=0, help="0 picks a free port")
    smtp.add_argument("--out", type=Path, required=True, help="directory for .eml files")
    smtp.add_argument("--delay", type=float, default=0.0, help="seconds to wait per DATA")
    args = parser.parse_args(argv)
    return _serve_smtp(args.port or free_port(), args.out, args.delay)


if __name__ == "__main__":
    sys.exit(_main())
