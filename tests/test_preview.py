"""The editors' preview, served by uvicorn and driven in headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss, serving

from digest import config
from digest.config import bundled
from digest.errors import DigestError
from digest.web import preview

pytestmark = pytest.mark.backends

STORIES = (
    Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return.",
         extra='<media:thumbnail url="https://img.example.com/h.jpg" width="800" height="450"/>'),
    Item("Plain old link", "http://example.com/plain", "h2", "Served without TLS."),
)


def setup(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    web.serve("/news.xml", rss(*STORIES))
    web.serve("/quiet.xml", rss())
    site.feeds = [("News", web.url("/news.xml")), ("Quiet", web.url("/quiet.xml"))]
    site.smtp_port = smtp.port
    shutil.copytree(bundled("templates"), site.root / "templates")
    site.write()
    site.subscribers("email,name\nann@example.com,Ann\n")
    assert digest("collect").exit_code == 0


def frame_text(page: Page) -> str:
    return page.frame_locator("#edition").locator("body").inner_text()


def test_switches_show_the_edition_at_each_width_dark_without_images_as_text_and_source(
        site: Site, web: FeedServer, smtp: SmtpServer, page: Page, artifacts: Path) -> None:
    setup(site, web, smtp)
    with serving(preview.app(site.config)) as base:
        page.goto(base)
        assert "Harbour opens" in frame_text(page)
        size = page.locator("#size").inner_text()
        assert "102,000-byte clipping limit" in size
        warnings = page.locator("#warnings").inner_text()
        assert warnings.count("link not on https: http://example.com/plain") == 1
        assert "empty section: Quiet" in warnings
        assert "alt" not in warnings  # the picture's empty alt is meant, not a mistake

        for label, width in (("Phone 320", 320), ("Phone 375", 375), ("Desktop 600", 600)):
            page.get_by_role("link", name=label).click()
            frame = page.frame_locator("#edition")
            frame.locator("h3").first.wait_for()
            inner = page.locator("#edition").evaluate(
                "f => [f.contentWindow.innerWidth, "
                "f.contentDocument.documentElement.scrollWidth]")
            assert inner[0] == width and inner[1] <= inner[0], label
            page.screenshot(path=str(artifacts / f"preview-{width}.png"), full_page=True)

        light = page.locator("#edition").evaluate(
            "f => getComputedStyle(f.contentDocument.querySelector('.card')).backgroundColor")
        page.get_by_role("link", name="Dark").click()
        page.wait_for_url("**dark=1*")  # the page itself first, then the edition in its frame
        page.frame_locator("#edition").locator("h3").first.wait_for()
        darkened = page.locator("#edition").evaluate(
            "f => getComputedStyle(f.contentDocument.querySelector('.card')).backgroundColor")
        assert light == "rgb(255, 255, 255)" and darkened == "rgb(26, 32, 41)"
        page.screenshot(path=str(artifacts / "preview-dark.png"), full_page=True)

        page.get_by_role("link", name="Images off").click()
        page.wait_for_url("**images=off*")
        page.frame_locator("#edition").locator("h3").first.wait_for()
        images = page.locator("#edition").evaluate(
            "f => [...f.contentDocument.images].map(i => [i.getAttribute('src'), i.alt])")
        assert images == [[None, ""]]  # the feed did not describe it; the headline follows

        page.get_by_role("link", name="Plain text").click()
        text = frame_text(page)
        assert "== News ==" in text and "https://example.com/harbour" in text
        page.get_by_role("link", name="Raw source").click()
        source = frame_text(page)
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in source
        assert "Content-Transfer-Encoding: quoted-printable" in source


def test_send_a_test_mails_one_address_marked_test_and_records_no_delivery(
        site: Site, web: FeedServer, smtp: SmtpServer, page: Page) -> None:
    setup(site, web, smtp)
    with serving(preview.app(site.config)) as base:
        page.goto(base)
        page.get_by_label("Send a test to").fill("editor@example.net")
        page.get_by_role("button", name="Send a test").click()
        assert "test sent to editor@example.net" in page.locator("#notice").inner_text()
        (received,) = smtp.wait_for(1)
        assert received.rcpt_tos == ("editor@example.net",)
        assert received.message["Subject"] == "[TEST] Test Digest: Harbour opens"
        assert "Harbour opens" in received.message.get_body(("html",)).get_content()

        page.get_by_label("Send a test to").fill("not-an-address@")
        page.get_by_label("Send a test to").evaluate("e => e.type = 'text'")
        page.get_by_role("button", name="Send a test").click()
        assert "not sent: not-an-address@" in page.locator("#notice").inner_text()

        refused = httpx.post(f"{base}/send-test", data={"address": "x@example.net"},
                             headers={"Origin": "https://elsewhere.example"})
        assert refused.status_code == 303 and "foreign" in refused.headers["location"]
    assert len(smtp.messages) == 1
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(0,)]
    assert rows(site.database, "SELECT count(*) FROM editions") == [(0,)]


def test_a_test_goes_to_an_address_written_as_the_list_keeps_it(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    """ASCII only, the domain in its IDNA form: a relay without SMTPUTF8 takes it."""
    setup(site, web, smtp)
    settings = config.load(site.config)
    _, edition = preview.proof(settings)
    assert preview.send(settings, edition, "Editor@Bücher.example") == (
        "test sent to Editor@xn--bcher-kva.example via SMTP relay "
        f"127.0.0.1:{smtp.port}")
    assert [m.rcpt_tos for m in smtp.messages] == [("Editor@xn--bcher-kva.example",)]
    with pytest.raises(DigestError, match=r"jörg@example.net: Internationalized characters"):
        preview.send(settings, edition, "jörg@example.net")


def test_page_reloads_itself_when_a_template_or_the_config_changes(
        site: Site, web: FeedServer, smtp: SmtpServer, page: Page) -> None:
    setup(site, web, smtp)
    with serving(preview.app(site.config)) as base:
        page.goto(base)
        page.evaluate("window.unchanged = true")
        template = site.root / "templates" / "digest.html"
        template.write_text(template.read_text().replace(
            "<h1 class=\"h1\">", "<h1 class=\"h1\">Edited: "))
        page.wait_for_function("window.unchanged === undefined", timeout=10_000)
        assert "Edited: Test Digest" in frame_text(page)

        page.evaluate("window.unchanged = true")
        site.config.write_text(site.config.read_text().replace(
            'name = "Test Digest"', 'name = "Renamed Digest"'))
        page.wait_for_function("window.unchanged === undefined", timeout=10_000)
        assert "Edited: Renamed Digest" in frame_text(page)
        assert "Renamed Digest: Harbour opens" in page.locator("#subject").inner_text()

        page.evaluate("window.unchanged = true")
        template.write_text("{% if %}\n")
        page.wait_for_function("window.unchanged === undefined", timeout=10_000)
        assert "digest.html:1:" in page.locator("#error").inner_text()


@pytest.mark.backends("sqlite")  # no SQLite file made
def test_feed_option_previews_any_feed_without_touching_the_store(
        site: Site, web: FeedServer) -> None:
    site.write()
    elsewhere = site.root / "elsewhere.xml"
    elsewhere.write_text(rss(Item("From elsewhere", "https://example.org/e", "e1", "Hi.")))
    with serving(preview.app(site.config, str(elsewhere))) as base:
        shell = httpx.get(base).text
        edition = httpx.get(f"{base}/edition").text
    assert "Test Digest: From elsewhere" in shell
    assert 'href="https://example.org/e"' in edition
    assert not site.database.exists()


def test_preview_command_serves_the_next_edition_on_loopback(site: Site) -> None:
    import subprocess
    import sys
    import time

    from servers import free_port

    site.write()
    digest("collect")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "digest", "--config", str(site.config),
                               "preview", "--port", str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                shell = httpx.get(f"http://127.0.0.1:{port}/").text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert "Test Digest: Night Ferry Returns" in shell
    finally:
        server.terminate()
        server.wait(10)


def notice(response: httpx.Response) -> str:
    """What the page a test-send redirects to says about it."""
    return parse_qs(urlsplit(response.headers["location"]).query)["notice"][0]


def sections_and_stories(page: str) -> list[str]:
    """The section headings and headlines of an edition, in the order it shows them."""
    found = re.findall(r"<h([23])\b[^>]*>(.*?)</h\1>", page, re.S)
    return [f"{'==' if level == '2' else '-'} {html.unescape(re.sub('<[^>]+>', '', text))}"
            for level, text in found]


def test_a_configured_feed_previews_with_the_sections_and_order_of_the_send(
        site: Site, web: FeedServer) -> None:
    # Listed oldest first, as some feeds do; an edition lists the newest first.
    web.serve("/world.xml", rss(
        Item("Oldest", "https://example.com/1", "1", date="Mon, 23 Nov 2026 09:00:00 +0000"),
        Item("Newest", "https://example.com/3", "3", date="Wed, 25 Nov 2026 09:00:00 +0000"),
        Item("Middle", "https://example.com/2", "2", date="Tue, 24 Nov 2026 09:00:00 +0000")))
    url = web.url("/world.xml")
    site.feeds = [("World", url)]
    site.write()
    site.subscribers("email\nann@example.com\n")
    with serving(preview.app(site.config, url)) as base:
        previewed = sections_and_stories(httpx.get(f"{base}/edition").text)

    assert digest("collect").exit_code == 0 and digest("send").exit_code == 0
    (mail,) = (site.root / "outbox" / "new").iterdir()
    parsed = BytesParser(policy=policy.default).parsebytes(mail.read_bytes())
    mailed = sections_and_stories(parsed.get_body(("html",)).get_content())
    assert mailed == ["== World", "- Newest", "- Middle", "- Oldest"]
    assert previewed == mailed


def test_the_test_mails_subject_starts_on_its_own_line(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    """A subject too long for the header's first line but short enough for a line of its
    own must not leave `Subject:` empty: some readers then show it with a leading space."""
    headline = "Night Ferry Returns After a Winter of Repairs, at Last"
    web.serve("/news.xml", rss(Item(headline, "https://example.com/ferry", "f1")))
    site.feeds = [("News", web.url("/news.xml"))]
    site.smtp_port = smtp.port
    site.write()
    assert digest("collect").exit_code == 0
    with serving(preview.app(site.config)) as base:
        sent = httpx.post(f"{base}/send-test", data={"address": "editor@example.net"},
                          headers={"Origin": base})
        assert notice(sent).startswith("test sent to editor@example.net")
    (received,) = smtp.wait_for(1)
    subject = f"[TEST] Test Digest: {headline}"
    assert f"\r\nSubject: {subject[:40]}".encode() in received.data
    assert received.message["Subject"] == subject
    head = received.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    start = next(n for n, line in enumerate(head) if line.startswith(b"Subject:"))
    folded = [head[start], *(line for line in head[start + 1:start + 3] if line[:1] == b" ")]
    assert len(folded) == 2 and all(len(line) <= 78 for line in folded), folded


def test_send_test_answers_only_its_own_page_on_its_own_address(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    """DNS rebinding: a site whose name an attacker points at 127.0.0.1 reaches the preview
    under its own Host, and from its own origin (or none)."""
    setup(site, web, smtp)
    with serving(preview.app(site.config)) as base:
        port = base.rsplit(":", 1)[1]
        rebound = f"rebound.example:{port}"
        assert httpx.get(base, headers={"Host": rebound}).status_code == 400
        hostile = httpx.post(f"{base}/send-test", data={"address": "x@example.net"},
                             headers={"Host": rebound, "Origin": f"http://{rebound}"})
        assert hostile.status_code == 400
        for origin in ({}, {"Origin": "null"}, {"Origin": f"http://{rebound}"}):
            refused = httpx.post(f"{base}/send-test", data={"address": "x@example.net"},
                                 headers=origin)
            assert refused.status_code == 303 and notice(refused).startswith("refused")
        assert smtp.messages == []
        for own in (base, f"http://localhost:{port}"):
            host = own.removeprefix("http://")
            sent = httpx.post(f"{base}/send-test", data={"address": "x@example.net"},
                              headers={"Host": host, "Origin": own})
            assert notice(sent).startswith("test sent to x@example.net")
    assert len(smtp.wait_for(2)) == 2
