"""The public web app on a real uvicorn server: one-click unsubscribe, sign-up with
confirmation, the archive; and real headless Chromium clicking through it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import unquote

import feedparser
import httpx
import pytest
from playwright.sync_api import Page
from servers import FeedServer, SmtpServer, free_port
from support import Item, Site, digest, rows, rss, serving

from digest import config, tokens
from digest.web import public as web

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
PUBLIC = "https://news.example.com"
SECRET = b"test-secret"  # the site fixture's DIGEST_SECRET
LIST_ID = "test-digest.example.com"


def publish(site: Site, *items: Item) -> None:
    feed = site.root / "feed.xml"
    feed.write_text(rss(*items))
    assert digest("collect").exit_code == 0


@pytest.fixture
def mailed(site: Site, smtp: SmtpServer) -> Site:
    """A site whose first edition went out to Ann and Bob."""
    site.feeds = [("World", str(site.root / "feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)
    publish(site, Item("Harbour opens", "https://example.com/harbour", "h1"))
    assert digest("send").exit_code == 0
    return site


@pytest.fixture
def base(mailed: Site) -> Iterator[str]:
    with serving(web.app(config.load(mailed.config))) as url:
        yield url


def unsubscribe_path(smtp: SmtpServer, email: str) -> str:
    """The one-click URL of the List-Unsubscribe header in the mail `email` received."""
    message = next(m.message for m in smtp.messages if m.rcpt_tos == (email,))
    url = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"]).group(1)
    assert url.startswith(f"{PUBLIC}/unsubscribe/")
    return url.removeprefix(PUBLIC)


def suppressions(site: Site) -> list[tuple]:
    return rows(site.database, "SELECT email, reason, source FROM suppressions")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def legacy_token(secret: bytes, list_id: str, email: str) -> str:
    """An unsubscribe token of the first format, as mailed before links carried ids: the
    address and an HMAC over list id and address, both base64url."""
    mac = hmac.new(secret, f"{list_id}\n{email}".encode(), hashlib.sha256).digest()
    return f"{_b64(email.encode())}.{_b64(mac)}"


def legacy_signup(email: str, name: str, expires: int) -> str:
    """A confirmation token of the first format: the sign-up as base64 JSON, expiring at the
    Unix time `expires`, and an HMAC over it."""
    payload = json.dumps({"e": email, "n": name, "s": [], "x": expires},
                         separators=(",", ":")).encode()
    mac = hmac.new(SECRET, b"signup\n" + LIST_ID.encode() + b"\n" + payload,
                   hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def readable(url: str) -> str:
    """What a URL gives away to whoever sees it (a proxy log, a link scanner): the URL itself,
    percent-decoded, and each of its parts read as base64 or hex where it is one."""
    text = unquote(url)
    seen = [text]
    for part in filter(None, re.split(r"[/.?&=#:]", text)):
        for decode in (lambda p: base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)),
                       bytes.fromhex):
            with suppress(ValueError):
                seen.append(decode(part).decode("utf-8", "replace"))
    return "\n".join(seen).casefold()


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_and_a_repeat_is_harmless(
        mailed: Site, base: str, smtp: SmtpServer, encoding: str) -> None:
    path = unsubscribe_path(smtp, "ann@example.com")
    body = ({"data": {"List-Unsubscribe": "One-Click"}} if encoding == "urlencoded"
            else {"files": {"List-Unsubscribe": (None, "One-Click")}})
    for _ in range(2):
        response = httpx.post(base + path, **body)  # no cookies, no redirects followed
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        assert "unsubscribed" in response.text
    assert suppressions(mailed) == [("ann@example.com", "unsubscribed", "one-click")]


def test_get_shows_a_button_and_changes_nothing(mailed: Site, base: str,
                                                smtp: SmtpServer) -> None:
    response = httpx.get(base + unsubscribe_path(smtp, "ann@example.com"))
    assert response.status_code == 200
    assert '<form method="post"' in response.text and "<button" in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert suppressions(mailed) == []


def test_forged_altered_and_other_list_tokens_are_refused_alike(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    good = unsubscribe_path(smtp, "ann@example.com").removeprefix("/unsubscribe/")
    other_list = tokens.address_id(SECRET, "other-list.example.com", "ann@example.com")
    # Even a row the store holds for Ann does not make another list's id hers.
    rows(mailed.database, "INSERT INTO link_addresses VALUES (?, ?)", other_list,
         "ann@example.com")
    legacy = legacy_token(SECRET, LIST_ID, "ann@example.com")
    address, mac = legacy.split(".")
    bad = [
        f"{good[:-2]}{'AB' if good[-2:] != 'AB' else 'CD'}",  # altered id
        tokens.address_id(b"guessed", LIST_ID, "ann@example.com"),  # forged with another secret
        other_list,
        tokens.address_id(SECRET, LIST_ID, "carl@example.com"),  # never mailed: names nobody
        f"{address}.{mac[:-2]}{'AB' if mac[-2:] != 'AB' else 'CD'}",  # altered old signature
        f"{_b64(b'bob@example.org')}.{mac}",  # someone else's address under Ann's old one
        legacy_token(b"guessed", LIST_ID, "ann@example.com"),
        "garbage", "%00", f"{address}.",
    ]
    answers = set()
    for token in bad:
        for method in ("GET", "POST"):
            response = httpx.request(method, f"{base}/unsubscribe/{token}",
                                     data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 400, token
            assert "ann@" not in response.text and "bob@" not in response.text
            answers.add(response.text)
    assert len(answers) == 1  # nothing to learn from which way a token is wrong
    assert suppressions(mailed) == []


def test_a_valid_token_answers_the_same_whether_the_address_is_listed_or_not(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    # The operator mails one edition to an address the list does not hold.
    assert digest("resend", "1", "--to", "stranger@example.com").exit_code == 0
    answers = set()
    for email in ("ann@example.com", "stranger@example.com"):
        path = unsubscribe_path(smtp, email)
        for method in ("GET", "POST"):
            response = httpx.request(method, base + path, data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 200
            answers.add(response.text.replace(email, "X").replace(
                path.removeprefix("/unsubscribe/"), "T"))
    assert len(answers) == 2  # one page per method, the same for listed and unlisted
    assert {row[0] for row in suppressions(mailed)} == {"ann@example.com",
                                                       "stranger@example.com"}


def test_a_post_without_the_one_click_body_unsubscribes_nobody(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    """RFC 8058: the one-click POST says `List-Unsubscribe=One-Click`. A bare POST to the
    link (a scanner, a prefetch) gets the page with the button, and changes nothing."""
    url = base + unsubscribe_path(smtp, "ann@example.com")
    for body in ({}, {"data": {"List-Unsubscribe": "Yes"}}, {"content": b"One-Click"}):
        response = httpx.post(url, **body)
        assert response.status_code == 400
        assert "<button" in response.text and "You are unsubscribed" not in response.text
    assert suppressions(mailed) == []
    assert httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert suppressions(mailed) == [("ann@example.com", "unsubscribed", "one-click")]


def test_links_in_the_mail_name_nobody(mailed: Site, smtp: SmtpServer) -> None:
    """A proxy log, a forwarded mail or a link scanner sees the link: it must not tell the
    address, in any encoding."""
    message = next(m.message for m in smtp.messages if m.rcpt_tos == ("ann@example.com",))
    links = re.findall(r"<(https?://[^>]+)>", message["List-Unsubscribe"])
    for part in ("html", "plain"):
        body = message.get_body((part,)).get_content()
        links += re.findall(rf"{PUBLIC}/unsubscribe/[^\s\"<]+", body)
    assert len(links) == 3 and len(set(links)) == 1
    assert "ann@example.com" not in readable(links[0])


def test_links_mailed_before_ids_keep_working(mailed: Site, base: str, smtp: SmtpServer) -> None:
    """An old unsubscribe link works for ever, as it promised; an old confirmation link until
    its expiry."""
    old = f"{base}/unsubscribe/{legacy_token(SECRET, LIST_ID, 'ann@example.com')}"
    page = httpx.get(old)
    assert page.status_code == 200 and "ann@example.com" in page.text
    assert httpx.post(old, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert suppressions(mailed) == [("ann@example.com", "unsubscribed", "one-click")]

    csv = mailed.root / "subscribers.csv"
    expired = legacy_signup("gone@example.com", "Gone", 1577836800)  # 2020-01-01
    assert httpx.get(f"{base}/confirm/{expired}").status_code == 400
    valid = legacy_signup("old@example.com", "Old Timer", 4102444800)  # 2100-01-01
    response = httpx.get(f"{base}/confirm/{valid}")
    assert response.status_code == 200 and "You are subscribed" in response.text
    assert csv.read_text() == SUBSCRIBERS + "old@example.com,Old Timer\n"


def test_after_unsubscribing_the_next_send_skips_the_address_the_csv_still_lists(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    httpx.post(base + unsubscribe_path(smtp, "ann@example.com"),
               data={"List-Unsubscribe": "One-Click"})
    smtp.clear_messages()
    publish(mailed, Item("Lighthouse relit", "https://example.com/light", "l1"),
            Item("Harbour opens", "https://example.com/harbour", "h1"))
    assert digest("send").exit_code == 0
    assert "ann@example.com" in (mailed.root / "subscribers.csv").read_text()
    assert smtp.recipients() == {"bob@example.org": 1}
    assert rows(mailed.database, "SELECT email FROM deliveries WHERE edition_id = 2") == [
        ("bob@example.org",)]


def test_an_opt_out_wins_over_a_delivery_row_made_before_it(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    path = unsubscribe_path(smtp, "ann@example.com")
    smtp.clear_messages()
    publish(mailed, Item("Lighthouse relit", "https://example.com/light", "l1"))
    smtp.reply("MAIL", 451, times=None)  # edition 2 is made, its mail deferred
    assert digest("send").exit_code == 1
    httpx.post(base + path, data={"List-Unsubscribe": "One-Click"})
    smtp.clear_faults()
    rows(mailed.database, "UPDATE deliveries SET next_try = NULL")  # as if time had passed
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {"bob@example.org": 1}
    assert dict(rows(mailed.database, "SELECT email, status FROM deliveries "
                                      "WHERE edition_id = 2")) == {
        "ann@example.com": "suppressed", "bob@example.org": "sent"}


def test_archive_lists_and_shows_editions_without_anyones_personal_links(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    index = httpx.get(f"{base}/archive/")
    assert index.status_code == 200
    assert 'href="1"' in index.text and "Harbour opens" in index.text
    page = httpx.get(f"{base}/archive/1")
    assert page.status_code == 200 and "Harbour opens" in page.text
    assert "DIGEST-PERSONAL" not in page.text
    assert "ann@example.com" not in page.text and "/unsubscribe/" not in page.text
    # Nobody's copy: no mail footer, a way to sign up instead.
    assert "Unsubscribe" not in page.text and "This email was sent to" not in page.text
    assert re.search(rf'<a [^>]*href="{PUBLIC}/subscribe"[^>]*>Subscribe</a>', page.text)
    # The mail's "view in browser" link is this page; the mail keeps its own footer.
    mail = next(m.message for m in smtp.messages if m.rcpt_tos == ("ann@example.com",))
    mail = mail.get_body(("html",)).get_content()
    assert f'href="{PUBLIC}/archive/1"' in mail
    assert ">Unsubscribe</a>" in mail and "This email was sent to ann@example.com" in mail
    for missing in ("99", "99999999999999999999999"):  # beyond SQLite's integers, too
        response = httpx.get(f"{base}/archive/{missing}")
        assert response.status_code == 404 and "No such edition" in response.text

    feed = feedparser.parse(httpx.get(f"{base}/archive/feed.xml").content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert [(e.title, e.link) for e in feed.entries] == [
        (page_title(page.text), f"{PUBLIC}/archive/1")]


def page_title(text: str) -> str:
    return re.search(r"<title>(.*?)</title>", text).group(1)


def test_the_home_page_sends_people_to_the_sign_up_and_the_archive(mailed: Site,
                                                                  base: str) -> None:
    home = httpx.get(f"{base}/")
    assert home.status_code == 200
    assert home.headers["content-security-policy"] == web.HEADERS["Content-Security-Policy"]
    links = re.findall(r'href="([^"]+)"', home.text)
    assert links == ["subscribe", "archive/"]  # relative: any prefix a proxy gives the app
    assert "Email address" in httpx.get(f"{base}/{links[0]}").text
    assert "Harbour opens" in httpx.get(f"{base}/{links[1]}").text


@pytest.mark.backends("sqlite")  # a damaged SQLite file
def test_the_frameworks_own_error_pages_carry_the_security_headers(mailed: Site,
                                                                  base: str) -> None:
    def secured(response: httpx.Response, status: int) -> None:
        assert response.status_code == status
        for name, value in web.HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
        assert "Traceback" not in response.text and "sqlite" not in response.text.lower()

    secured(httpx.get(f"{base}/no/such/page"), 404)
    refused = httpx.put(f"{base}/subscribe")
    secured(refused, 405)
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    # A damaged state file makes the archive fail: a 500, still with the headers.
    for leftover in mailed.database.parent.glob("digest.db-*"):
        leftover.unlink()
    mailed.database.write_bytes(b"not a database, " * 512)
    secured(httpx.get(f"{base}/archive/"), 500)


# -- sign-up with confirmation -------------------------------------------------------------------

def confirmation_path(smtp: SmtpServer, email: str) -> str:
    message = smtp.wait_for(1)[-1]
    assert message.rcpt_tos == (email,)
    assert "Confirm your subscription to Test Digest" in message.message["Subject"]
    url = re.search(rf"{PUBLIC}/confirm/\S+", message.message.get_content()).group(0)
    return url.removeprefix(PUBLIC)


def test_sign_up_mails_a_link_and_only_its_click_adds_the_subscriber(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    ann = unsubscribe_path(smtp, "ann@example.com")
    smtp.clear_messages()
    csv = mailed.root / "subscribers.csv"
    response = httpx.post(f"{base}/subscribe", data={"email": "New@Example.NET",
                                                     "name": "=Nia\r\nBcc: x@example.com"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    path = confirmation_path(smtp, "New@example.net")
    assert csv.read_text() == SUBSCRIBERS  # nothing without the click
    # The link names neither the address nor the name: the sign-up waits on the server.
    assert "new@example.net" not in readable(PUBLIC + path) and "nia" not in readable(path)

    token = path.removeprefix("/confirm/")
    for altered in (token[:-3] + ("x" if token[-3] != "x" else "y") + token[-2:], token[:-1]):
        assert httpx.get(f"{base}/confirm/{altered}").status_code == 400
    # A confirmation is no unsubscribe token, and the other way round.
    assert httpx.post(f"{base}/unsubscribe/{token}",
                      data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert httpx.get(base + ann.replace("/unsubscribe/", "/confirm/")).status_code == 400
    assert csv.read_text() == SUBSCRIBERS

    for _ in range(2):  # a second click changes nothing more
        response = httpx.get(base + path)
        assert response.status_code == 200 and "You are subscribed" in response.text
    assert csv.read_text() == SUBSCRIBERS + "New@example.net,Nia Bcc: x@example.com\n"

    smtp.clear_messages()
    publish(mailed, Item("Lighthouse relit", "https://example.com/light", "l1"))
    assert digest("send").exit_code == 0
    assert set(smtp.recipients()) == {"ann@example.com", "bob@example.org", "New@example.net"}


def test_a_list_that_cannot_be_written_keeps_the_link_working_for_later(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    csv = mailed.root / "subscribers.csv"
    smtp.clear_messages()
    httpx.post(f"{base}/subscribe", data={"email": "new@example.com"})
    link = confirmation_path(smtp, "new@example.com")
    csv.write_text("address\nann@example.com\n")  # the operator broke the header
    response = httpx.get(base + link)
    assert response.status_code == 503 and "try again later" in response.text.lower()
    csv.write_text(SUBSCRIBERS)
    assert httpx.get(base + link).status_code == 200
    assert csv.read_text() == SUBSCRIBERS + "new@example.com,\n"


def test_resubscribing_lifts_the_opt_out_only_through_confirmation(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    path = unsubscribe_path(smtp, "ann@example.com")
    httpx.post(base + path, data={"List-Unsubscribe": "One-Click"})
    smtp.clear_messages()
    response = httpx.post(base + path.replace("/unsubscribe/", "/resubscribe/"))
    assert response.status_code == 200 and "Check your inbox" in response.text
    link = confirmation_path(smtp, "ann@example.com")
    assert len(suppressions(mailed)) == 1
    assert httpx.get(base + link).status_code == 200
    assert suppressions(mailed) == []
    assert (mailed.root / "subscribers.csv").read_text() == SUBSCRIBERS  # listed once


def test_a_bad_address_is_said_on_the_form_and_mails_nobody(
        mailed: Site, base: str, smtp: SmtpServer) -> None:
    smtp.clear_messages()
    response = httpx.post(f"{base}/subscribe", data={"email": "not an address<script>"})
    assert response.status_code == 400
    assert "That address does not work" in response.text and "<script>" not in response.text
    assert smtp.messages == []


def test_sign_ups_are_rate_limited_per_client_address(site: Site, smtp: SmtpServer) -> None:
    site.smtp_port = smtp.port
    site.extra = "[web]\nsignups_per_hour = 2\n"
    site.write()
    site.subscribers(SUBSCRIBERS)
    with serving(web.app(config.load(site.config))) as base:
        codes = [httpx.post(f"{base}/subscribe", data={"email": f"n{i}@example.com"}
                            ).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    assert len(smtp.messages) == 2


def test_a_confirmation_the_relay_refused_does_not_count_against_the_address(
        site: Site, smtp: SmtpServer) -> None:
    site.smtp_port = smtp.port
    site.extra = "[web]\nsignups_per_hour = 10\n"
    site.write()
    site.subscribers(SUBSCRIBERS)
    smtp.reply("RCPT", 550, times=4)
    with serving(web.app(config.load(site.config))) as base:
        def ask() -> int:
            return httpx.post(f"{base}/subscribe", data={"email": "new@example.com"}).status_code

        assert [ask() for _ in range(4)] == [503] * 4  # nobody got a link: none is kept
        assert rows(site.database, "SELECT count(*) FROM signups") == [(0,)]
        assert [ask() for _ in range(4)] == [200, 200, 200, 429]
    assert len(smtp.messages) == 3


def test_the_form_offers_sections_when_the_list_keeps_them(site: Site, smtp: SmtpServer) -> None:
    site.feeds = [("World", "w.xml"), ("Tech", "t.xml")]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers("email,name,sections\n")
    with serving(web.app(config.load(site.config))) as base:
        assert 'value="Tech"' in httpx.get(f"{base}/subscribe").text
        httpx.post(f"{base}/subscribe", data={"email": "t@example.com", "section": ["Tech"]})
        link = confirmation_path(smtp, "t@example.com")
        assert httpx.get(base + link).status_code == 200
    assert (site.root / "subscribers.csv").read_text() == (
        "email,name,sections\nt@example.com,,Tech\n")


def test_the_example_config_documents_the_web_section() -> None:
    text = (Path(__file__).parents[1] / "digest.example.toml").read_text()
    for item in config.dataclasses.fields(config.Web):
        assert f"\n{item.name} =" in text.split("[web]")[1], item.name


# -- in a real browser ----------------------------------------------------------------------------

def test_unsubscribing_in_a_browser_takes_one_click_on_the_page(
        mailed: Site, base: str, smtp: SmtpServer, page: Page, artifacts: Path) -> None:
    page.goto(base + unsubscribe_path(smtp, "bob@example.org"))
    assert suppressions(mailed) == []
    page.screenshot(path=str(artifacts / "unsubscribe.png"))
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    page.screenshot(path=str(artifacts / "unsubscribed.png"))
    assert page.get_by_role("button", name="Resubscribe").is_visible()
    assert suppressions(mailed) == [("bob@example.org", "unsubscribed", "web page")]


def test_signing_up_in_a_browser_mails_the_confirmation(
        mailed: Site, base: str, smtp: SmtpServer, page: Page, artifacts: Path) -> None:
    smtp.clear_messages()
    page.goto(f"{base}/")
    page.get_by_role("link", name="Subscribe").click()
    page.get_by_label("Email address").fill("web@example.com")
    page.get_by_label("Name (optional)").fill("Wen")
    page.screenshot(path=str(artifacts / "subscribe.png"))
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    page.goto(base + confirmation_path(smtp, "web@example.com"))
    page.get_by_role("heading", name="You are subscribed").wait_for()
    assert "web@example.com,Wen" in (mailed.root / "subscribers.csv").read_text()


def test_an_archived_edition_in_a_browser_invites_to_sign_up(
        mailed: Site, base: str, page: Page, artifacts: Path) -> None:
    page.goto(f"{base}/")
    page.get_by_role("link", name="Past editions").click()
    page.get_by_role("link", name=re.compile("Harbour opens")).click()
    page.get_by_role("heading", name="Harbour opens").wait_for()
    page.screenshot(path=str(artifacts / "archived.png"), full_page=True)
    subscribe = page.get_by_role("link", name="Subscribe", exact=True)
    assert subscribe.is_visible() and subscribe.get_attribute("href") == f"{PUBLIC}/subscribe"
    assert page.get_by_role("link", name="Unsubscribe").count() == 0
    assert "This email was sent to" not in page.locator("body").inner_text()


# -- the command ---------------------------------------------------------------------------------

@contextmanager
def served(site: Site) -> Iterator[str]:
    """`digest serve` as an operator runs it, in its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(site.config), "serve", "--port",
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base}/subscribe")
                break
            except httpx.ConnectError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "digest serve did not start"
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def sign_up(base: str, client: str, email: str) -> int:
    """A sign-up from `client`, as the proxy in front of `digest serve` names it."""
    return httpx.post(f"{base}/subscribe", data={"email": email},
                      headers={"X-Forwarded-For": client}).status_code


def outbox(site: Site) -> list[str]:
    """The recipients of the mail written to the Maildir, one entry per message."""
    return [BytesParser(policy=policy.default).parsebytes(path.read_bytes())["To"]
            for path in (site.root / "outbox" / "new").iterdir()]

def test_digest_serve_believes_the_proxy_about_client_addresses(site: Site) -> None:
    """Behind a proxy on loopback that names each client in X-Forwarded-For, the rate limit
    counts those clients."""
    site.extra = "[web]\nsignups_per_hour = 1\n"  # maildir transport: mail goes to outbox/
    site.write()
    site.subscribers(SUBSCRIBERS)
    with served(site) as base:
        assert sign_up(base, "198.51.100.1", "a@example.com") == 200
        assert sign_up(base, "198.51.100.2", "b@example.com") == 200
        assert sign_up(base, "198.51.100.1", "c@example.com") == 429
    assert len(outbox(site)) == 2


def test_no_address_gets_more_than_a_few_confirmations_whoever_asks(site: Site) -> None:
    """The form is no way to flood a stranger's inbox: 14 sign-ups for one address at once,
    from 3 clients and in any spelling of its case, mail it 3 confirmations."""
    site.write()
    site.subscribers(SUBSCRIBERS)
    spellings = ["victim@example.com", "Victim@example.com", "VICTIM@Example.COM"]
    asks = [(f"198.51.100.{n % 3 + 1}", spellings[n % 3]) for n in range(14)]
    with served(site) as base, ThreadPoolExecutor(14) as pool:
        codes = list(pool.map(lambda ask: sign_up(base, *ask), asks))
        assert sorted(codes) == [200] * 3 + [429] * 11
        assert sign_up(base, "198.51.100.9", "other@example.com") == 200
        # The resubscribe button mails a confirmation too, and counts the same.
        token = tokens.address_id(SECRET, LIST_ID, "victim@example.com")
        rows(site.database, "INSERT INTO link_addresses VALUES (?, ?)", token,
             "victim@example.com")
        assert httpx.post(f"{base}/resubscribe/{token}").status_code == 429
    assert sorted(to.casefold() for to in outbox(site)) == [
        "other@example.com"] + ["victim@example.com"] * 3


def test_stories_the_mail_leaves_out_for_size_are_all_in_its_web_version(site: Site) -> None:
    words = "harbour lantern ferry bridge cocoa storm market archive " * 4
    items = [Item(f"Story {n}: {words[:90]}", f"https://example.com/story/{n}/{'x' * 60}",
                  f"s{n}", (words * 2)[:400],
                  extra=f'<media:thumbnail url="https://img.example.com/{n}.jpg" width="800" '
                        'height="450"/>') for n in range(1, 301)]
    with FeedServer() as feeds:
        feeds.serve("/long.xml", rss(*items))
        site.feeds = [("Long", feeds.url("/long.xml"))]
        site.extra = "[collect]\nfirst_run = 0\n"
        site.write()
        site.config.write_text(site.config.read_text().replace(
            "[newsletter]\n", "[newsletter]\nmax_articles = 300\n"))
        site.subscribers("email\nann@example.com\n")
        digest("collect")
    assert digest("send").exit_code == 0
    mailed = next((site.root / "outbox" / "new").iterdir()).read_bytes()
    html = BytesParser(policy=policy.default).parsebytes(mailed).get_body(("html",)).get_content()
    shown = html.count("<h3")
    assert 0 < shown < 300 and f"{300 - shown} more stories" in html

    with serving(web.app(config.load(site.config))) as base:
        page = httpx.get(f"{base}/archive/1").text
    assert page.count("<h3") == 300
    assert all(f"Story {n}:" in page for n in range(1, 301))
    assert "more stories" not in page
