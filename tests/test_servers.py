"""Self-tests for the loopback test servers in ``servers.py``.

Every other test trusts these servers to fail exactly as told, so each behaviour is
checked here with standard-library clients only (smtplib, urllib) plus httpx, which
is what the fetcher itself uses.
"""

from __future__ import annotations

import email.policy
import gzip
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from http.client import HTTPResponse
from pathlib import Path

import httpx
import pytest
from servers import FeedServer, Received, SmtpServer, free_port

SERVERS_PY = Path(__file__).with_name("servers.py")


def make_message(subject: str = "Hello", to: str = "reader@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = "digest@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("body text\n")
    # smtplib fixes line endings only for str messages; bytes must already be CRLF.
    return msg.as_bytes(policy=email.policy.SMTP)


def client(server: SmtpServer, timeout: float = 5) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=timeout)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


# ------------------------------------------------------------------------ free_port


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# ------------------------------------------------------------------- SMTP: delivery


def test_smtp_records_accepted_message(smtp: SmtpServer) -> None:
    with client(smtp) as c:
        refused = c.sendmail(
            "digest@example.com", ["a@example.com", "b@example.com"], make_message("Hi")
        )
    assert refused == {}
    [received] = smtp.messages
    assert received.mail_from == "digest@example.com"
    assert received.rcpt_tos == ("a@example.com", "b@example.com")
    assert received.message["Subject"] == "Hi"
    assert received.message.get_content().strip() == "body text"
    assert smtp.recipients() == Counter({"a@example.com": 1, "b@example.com": 1})


def test_smtp_received_is_frozen() -> None:
    received = Received("a@x", ("b@x",), b"Subject: s\r\n\r\nx\r\n")
    with pytest.raises(AttributeError):
        received.data = b""  # type: ignore[misc]


def test_smtp_counts_connections_and_commands(smtp: SmtpServer) -> None:
    # aiosmtpd's Controller probes the port on start(); that must not count.
    assert smtp.connections == 0
    for _ in range(2):
        with client(smtp) as c:
            c.sendmail("d@example.com", ["a@example.com", "b@example.com"], make_message())
    assert smtp.connections == 2
    commands = smtp.commands
    assert (commands["EHLO"], commands["MAIL"], commands["RCPT"], commands["DATA"]) == (2, 2, 4, 2)
    assert commands["QUIT"] == 2


def test_smtp_recipients_counts_across_messages(smtp: SmtpServer) -> None:
    with client(smtp) as c:
        c.sendmail("d@example.com", ["a@example.com"], make_message())
        c.sendmail("d@example.com", ["a@example.com", "b@example.com"], make_message())
    assert smtp.recipients() == Counter({"a@example.com": 2, "b@example.com": 1})
    smtp.clear_messages()
    assert smtp.messages == []


def test_smtp_wait_for_blocks_until_messages_arrive(smtp: SmtpServer) -> None:
    def send_later() -> None:
        time.sleep(0.2)
        with client(smtp) as c:
            c.sendmail("d@example.com", ["a@example.com"], make_message())

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        got = smtp.wait_for(1, timeout=5)
    finally:
        sender.join()
    assert [m.rcpt_tos for m in got] == [("a@example.com",)]


def test_smtp_wait_for_times_out_with_clear_message(smtp: SmtpServer) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"accepted 0 message\(s\) within 0.2s"):
        smtp.wait_for(1, timeout=0.2)
    assert time.monotonic() - started < 2


def test_smtp_given_port_is_used() -> None:
    port = free_port()
    with SmtpServer(port) as server, smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
        assert server.port == port
        assert c.noop()[0] == 250


# --------------------------------------------------------------------- SMTP: faults


def test_smtp_rcpt_reply_matches_one_address_case_insensitively(smtp: SmtpServer) -> None:
    smtp.reply("RCPT", 550, "5.1.1 no such user", match="Bad@Example.com")
    with client(smtp) as c:
        refused = c.sendmail("d@example.com", ["bad@example.com", "ok@example.com"], make_message())
    assert refused == {"bad@example.com": (550, b"5.1.1 no such user")}
    assert smtp.recipients() == Counter({"ok@example.com": 1})


def test_smtp_all_recipients_refused_records_nothing(smtp: SmtpServer) -> None:
    smtp.reply("RCPT", 550)
    with client(smtp) as c, pytest.raises(smtplib.SMTPRecipientsRefused):
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert smtp.messages == []


def test_smtp_data_reply_fires_given_number_of_times(smtp: SmtpServer) -> None:
    smtp.reply("DATA", 451, times=2)
    with client(smtp) as c:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as err:
                c.sendmail("d@example.com", ["a@example.com"], make_message())
            assert err.value.smtp_code == 451
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert len(smtp.messages) == 1


def test_smtp_data_reply_match_applies_to_any_recipient(smtp: SmtpServer) -> None:
    smtp.reply("DATA", 554, "5.7.1 rejected", match="b@example.com")
    with client(smtp) as c:
        c.sendmail("d@example.com", ["a@example.com"], make_message())
        with pytest.raises(smtplib.SMTPDataError) as err:
            c.sendmail("d@example.com", ["a@example.com", "B@example.com"], make_message())
    assert err.value.smtp_code == 554
    assert [m.rcpt_tos for m in smtp.messages] == [("a@example.com",)]


def test_smtp_mail_reply_matches_sender(smtp: SmtpServer) -> None:
    smtp.reply("MAIL", 553, "5.7.1 sender rejected", match="spam@example.com")
    with client(smtp) as c:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            c.sendmail("spam@example.com", ["a@example.com"], make_message())
        assert err.value.smtp_code == 553
        c.sendmail("ham@example.com", ["a@example.com"], make_message())
    assert [m.mail_from for m in smtp.messages] == ["ham@example.com"]


def test_smtp_421_replies_then_closes_connection(smtp: SmtpServer) -> None:
    smtp.reply("MAIL", 421)
    with client(smtp) as c:
        c.ehlo()
        code, _ = c.mail("d@example.com")
        assert code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()


def test_smtp_421_on_data_closes_and_records_nothing(smtp: SmtpServer) -> None:
    smtp.reply("DATA", 421, times=1)
    with client(smtp) as c:
        c.ehlo()
        c.mail("d@example.com")
        c.rcpt("a@example.com")
        code, _ = c.data(make_message())
        assert code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()
    assert smtp.messages == []


def test_smtp_drop_in_data_disconnects_without_reply(smtp: SmtpServer) -> None:
    smtp.drop_in_data()
    with client(smtp) as c, pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert smtp.messages == []
    assert smtp.commands["DATA"] == 1  # the content did arrive in full
    # times=1: the next attempt goes through.
    with client(smtp) as c:
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert len(smtp.messages) == 1


def test_smtp_faults_change_mid_session(smtp: SmtpServer) -> None:
    with client(smtp) as c:
        c.ehlo()
        assert c.mail("d@example.com")[0] == 250
        smtp.reply("RCPT", 450, "4.2.0 mailbox busy")
        assert c.rcpt("a@example.com") == (450, b"4.2.0 mailbox busy")
        smtp.clear_faults()
        assert c.rcpt("a@example.com")[0] == 250


def test_smtp_clear_faults_restores_acceptance(smtp: SmtpServer) -> None:
    smtp.reply("MAIL", 550).reply("DATA", 451).drop_in_data(times=None)
    smtp.clear_faults()
    with client(smtp) as c:
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert len(smtp.messages) == 1


def test_smtp_unknown_fault_command_is_rejected(smtp: SmtpServer) -> None:
    with pytest.raises(ValueError, match="faults apply to"):
        smtp.reply("EXPN", 550)


def test_smtp_delay_slows_one_session_but_not_others(smtp: SmtpServer) -> None:
    smtp.delay("DATA", 0.6, times=1)
    durations: list[float] = []

    def slow_send() -> None:
        started = time.monotonic()
        with client(smtp) as c:
            c.sendmail("d@example.com", ["slow@example.com"], make_message())
        durations.append(time.monotonic() - started)

    slow = threading.Thread(target=slow_send)
    slow.start()
    time.sleep(0.15)  # the slow session is now parked in its DATA delay
    started = time.monotonic()
    with client(smtp) as c:
        c.sendmail("d@example.com", ["fast@example.com"], make_message())
    fast = time.monotonic() - started
    slow.join()
    assert fast < 0.3
    assert durations[0] >= 0.6
    assert [m.rcpt_tos[0] for m in smtp.messages] == ["fast@example.com", "slow@example.com"]


def test_smtp_delay_trips_client_timeout(smtp: SmtpServer) -> None:
    smtp.delay("MAIL", 2)
    with client(smtp, timeout=0.3) as c:
        c.ehlo()
        with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
            c.mail("d@example.com")


# ----------------------------------------------------------------------- SMTP: auth


def test_smtp_no_auth_advertised_by_default(smtp: SmtpServer) -> None:
    with client(smtp) as c:
        c.ehlo()
        assert not c.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            c.login("user", "secret")


def test_smtp_require_auth_rejects_unauthenticated_mail(smtp: SmtpServer) -> None:
    smtp.require_auth("user", "secret")
    with client(smtp) as c:
        c.ehlo()
        assert set(c.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN"}
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert err.value.smtp_code == 530
    assert smtp.messages == []


def test_smtp_require_auth_wrong_password_is_535(smtp: SmtpServer) -> None:
    smtp.require_auth("user", "secret")
    with client(smtp) as c, pytest.raises(smtplib.SMTPAuthenticationError) as err:
        c.login("user", "wrong")
    assert err.value.smtp_code == 535


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_require_auth_accepts_right_credentials(smtp: SmtpServer, mechanism: str) -> None:
    smtp.require_auth("user", "secret")
    with client(smtp) as c:
        c.ehlo()
        c.user, c.password = "user", "secret"
        authobject = c.auth_plain if mechanism == "PLAIN" else c.auth_login
        assert c.auth(mechanism, authobject)[0] == 235
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    assert len(smtp.messages) == 1
    assert smtp.commands["AUTH"] == 1


# ------------------------------------------------------------------ SMTP: down / up


def test_smtp_stop_refuses_connections_and_start_recovers(smtp: SmtpServer) -> None:
    with client(smtp) as c:
        c.sendmail("d@example.com", ["a@example.com"], make_message())
    smtp.stop()
    assert not smtp.running
    with pytest.raises(ConnectionRefusedError):
        client(smtp)
    smtp.start()
    with client(smtp) as c:
        c.sendmail("d@example.com", ["b@example.com"], make_message())
    # Messages and counters survive the restart; the restart probe is not counted.
    assert smtp.recipients() == Counter({"a@example.com": 1, "b@example.com": 1})
    assert smtp.connections == 2


def test_smtp_stop_cuts_open_sessions(smtp: SmtpServer) -> None:
    c = client(smtp)
    try:
        c.ehlo()
        smtp.stop()
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            c.mail("d@example.com")
    finally:
        c.close()


# ------------------------------------------------------------ SMTP: separate process


def start_smtp_process(out: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVERS_PY), "smtp", "--port", "0", "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready "), line
    return proc, int(line.split()[1])


def stop_process(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    finally:
        assert proc.stdout is not None
        proc.stdout.close()


def test_smtp_process_writes_messages_and_recipient_log(tmp_path: Path) -> None:
    proc, port = start_smtp_process(tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            c.sendmail("d@example.com", ["a@example.com", "b@example.com"], make_message("One"))
            c.sendmail("d@example.com", ["a@example.com"], make_message("Two"))
    finally:
        assert stop_process(proc) == 0
    log = (tmp_path / "recipients.log").read_text().splitlines()
    assert Counter(log) == Counter({"a@example.com": 2, "b@example.com": 1})
    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 3
    assert len(list(tmp_path.glob("*-a@example.com.eml"))) == 2
    assert b"Subject: One" in files[0].read_bytes()


def test_smtp_process_delay_and_restart_keep_earlier_files(tmp_path: Path) -> None:
    proc, port = start_smtp_process(tmp_path, "--delay", "0.4")
    try:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            c.sendmail("d@example.com", ["a@example.com"], make_message())
        assert time.monotonic() - started >= 0.4
    finally:
        stop_process(proc)
    proc, port = start_smtp_process(tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            c.sendmail("d@example.com", ["a@example.com"], make_message())
    finally:
        stop_process(proc)
    assert len(list(tmp_path.glob("*.eml"))) == 2
    assert (tmp_path / "recipients.log").read_text() == "a@example.com\n" * 2


# ----------------------------------------------------------------------- FeedServer

RSS = '<?xml version="1.0"?><rss version="2.0"><channel><title>Caf\u00e9</title></channel></rss>'


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> HTTPResponse:
    request = urllib.request.Request(url, headers=headers or {})
    response = urllib.request.urlopen(request, timeout=timeout)
    assert isinstance(response, HTTPResponse)
    return response


@dataclass(frozen=True)
class HttpFailure:
    code: int
    headers: Message
    body: bytes


def fetch_error(url: str, headers: dict[str, str] | None = None) -> HttpFailure:
    """Fetch expecting urllib to raise HTTPError (any non-2xx), and close the error
    so its socket doesn't leak into later tests."""
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(url, headers)
    with err.value as error:
        return HttpFailure(error.code, error.headers, error.read())


def test_feed_serves_body_with_headers(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS)
    assert feeds.url("feed.xml") == f"http://127.0.0.1:{feeds.port}/feed.xml"
    with fetch(feeds.url("/feed.xml")) as response:
        body = response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        assert response.headers["Content-Length"] == str(len(body))
    assert body == RSS.encode()


def test_feed_logs_requests_with_lowercase_headers(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS)
    fetch(feeds.url("/feed.xml?x=1"), headers={"User-Agent": "digest-test/1"}).close()
    [request] = feeds.requests
    assert (request.method, request.path) == ("GET", "/feed.xml?x=1")
    assert request.headers["user-agent"] == "digest-test/1"
    assert len(feeds.requests_to("/feed.xml")) == 1


def test_feed_reregistering_replaces_route(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", "old")
    feeds.serve("/feed.xml", b"new")
    with fetch(feeds.url("/feed.xml")) as response:
        assert response.read() == b"new"


def test_feed_unknown_path_is_404(feeds: FeedServer) -> None:
    error = fetch_error(feeds.url("/missing"))
    assert error.code == 404
    assert error.headers["Content-Length"] == str(len(error.body))


def test_feed_etag_gives_304_only_on_match(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS, etag='"v1"')
    with fetch(feeds.url("/feed.xml")) as response:
        assert response.headers["ETag"] == '"v1"'
    error = fetch_error(feeds.url("/feed.xml"), headers={"If-None-Match": '"v1"'})
    assert error.code == 304
    assert error.body == b""
    with fetch(feeds.url("/feed.xml"), headers={"If-None-Match": '"v0"'}) as response:
        assert response.status == 200


def test_feed_last_modified_gives_304_only_on_match(feeds: FeedServer) -> None:
    stamp = "Wed, 21 Oct 2026 07:28:00 GMT"
    feeds.serve("/feed.xml", RSS, last_modified=stamp)
    with fetch(feeds.url("/feed.xml")) as response:
        assert response.headers["Last-Modified"] == stamp
    error = fetch_error(feeds.url("/feed.xml"), headers={"If-Modified-Since": stamp})
    assert error.code == 304
    other = "Tue, 20 Oct 2026 07:28:00 GMT"
    with fetch(feeds.url("/feed.xml"), headers={"If-Modified-Since": other}) as response:
        assert response.status == 200


def test_feed_gzip_only_when_accepted(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS, gzip=True)
    with fetch(feeds.url("/feed.xml"), headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        raw = response.read()
        assert response.headers["Content-Length"] == str(len(raw))
    assert gzip.decompress(raw) == RSS.encode()
    with fetch(feeds.url("/feed.xml")) as response:
        assert response.headers["Content-Encoding"] is None
        assert response.read() == RSS.encode()
    with fetch(feeds.url("/feed.xml"), headers={"Accept-Encoding": "gzip;q=0"}) as response:
        assert response.headers["Content-Encoding"] is None


def test_feed_gzip_is_decoded_by_httpx(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS, gzip=True)
    response = httpx.get(feeds.url("/feed.xml"))
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == RSS.encode()


def test_feed_error_status_with_extra_headers(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", "busy", status=503, headers={"Retry-After": "120"})
    error = fetch_error(feeds.url("/feed.xml"))
    assert error.code == 503
    assert error.headers["Retry-After"] == "120"
    assert error.body == b"busy"


def test_feed_redirect_is_followed(feeds: FeedServer) -> None:
    feeds.serve("/new.xml", RSS)
    feeds.redirect("/old.xml", "/new.xml")
    response = httpx.get(feeds.url("/old.xml"), follow_redirects=True)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [301]
    assert response.history[0].headers["location"] == feeds.url("/new.xml")
    assert [r.path for r in feeds.requests] == ["/old.xml", "/new.xml"]


def test_feed_delay_trips_read_timeout(feeds: FeedServer) -> None:
    feeds.serve("/slow.xml", RSS, delay=2)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(feeds.url("/slow.xml"), timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert len(feeds.requests_to("/slow.xml")) == 1


def test_feed_chunk_delay_streams_body_slowly(feeds: FeedServer) -> None:
    body = "x" * 200
    feeds.serve("/drip.xml", body, chunk_delay=0.05, chunk_size=50)
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream("GET", feeds.url("/drip.xml")) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        chunks = b""
        for piece in response.iter_raw():
            chunks += piece
            arrivals.append(time.monotonic() - started)
    assert chunks == body.encode()
    assert arrivals[-1] >= 0.15  # 4 chunks, 3+ pauses of 0.05 s


def test_feed_head_has_headers_but_no_body(feeds: FeedServer) -> None:
    feeds.serve("/feed.xml", RSS)
    response = httpx.head(feeds.url("/feed.xml"))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(RSS.encode()))
    assert response.content == b""
