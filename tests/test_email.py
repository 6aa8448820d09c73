"""The mail a subscriber gets: structure, headers, the text twin, the clipping guard, and what
an editor sees when a template is broken."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

from digest import config as configuration
from digest.compose import MAX_ENCODED, MAX_HTML, Composer, Letter, local_date
from digest.errors import DigestError
from digest.records import Card, Delivery, Edition, Image

WHEN = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
STORIES = (
    Item("Harbour opens", "https://example.com/harbour", "h1",
         "<p>Boats <b>return</b> to the old harbour after a long winter of repairs.</p>",
         extra='<media:thumbnail url="https://img.example.com/h.jpg" width="800" height="450"/>'),
    Item("Über die Brücke", "https://example.com/bruecke", "h2", "Eine Geschichte über Brücken."),
    Item("A very long link", "https://example.com/" + "segment/" * 14 + "end", "h3",
         "Words " * 60),
)
SUBSCRIBERS = "email,name\nann@example.com,Ann\nzoe@example.org,Zoë Lefèvre\n"


def mailed(site: Site, web: FeedServer, smtp: SmtpServer, *items: Item,
           subscribers: str = SUBSCRIBERS, extra: str = "") -> list[EmailMessage]:
    web.serve("/feed.xml", rss(*items))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    path = site.write()
    # Newsletter keys belong under [newsletter], which the site writes first.
    path.write_text(path.read_text().replace("[newsletter]\n", "[newsletter]\n" + extra, 1))
    site.subscribers(subscribers)
    assert digest("collect").exit_code == 0
    result = digest("send")
    assert result.exit_code == 0, result.output
    return [m.message for m in smtp.messages]


class _Page(HTMLParser):
    """Headlines and links in document order, images with their attributes, layout tables."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.tables: list[dict[str, str | None]] = []
        self.headlines: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href", "").startswith("http"):
            self.hrefs.append(found["href"] or "")
        self.images += [found] if tag == "img" else []
        self.tables += [found] if tag == "table" else []
        self._in_h3 = self._in_h3 or tag == "h3"

    def handle_endtag(self, tag: str) -> None:
        self._in_h3 = self._in_h3 and tag != "h3"

    def handle_data(self, data: str) -> None:
        if self._in_h3 and data.strip():
            self.headlines.append(data.strip())


def parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_message_has_every_header_and_both_parts_in_utf8(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    messages = mailed(site, web, smtp, *STORIES, extra=(
        'reply_to = "Desk <desk@example.com>"\nlanguage = "de"\n'))
    raw = smtp.messages[0].data
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    ids = set()
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        for part in message.iter_parts():
            assert part.get_content_charset() == "utf-8"
        assert message["From"].addresses[0].display_name == "Test Digest"
        assert message["Reply-To"].addresses[0].addr_spec == "desk@example.com"
        assert message["Subject"] == "Test Digest: Harbour opens"
        assert message["Date"].datetime.tzinfo is not None
        assert re.fullmatch(r"<\d+\.[0-9a-f]+@example\.com>", message["Message-ID"])
        ids.add(message["Message-ID"])
        forms = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
        assert forms[0].startswith("https://news.example.com/unsubscribe/")
        assert forms[1].startswith("mailto:unsubscribe@example.com")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == "Test Digest <test-digest.example.com>"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Precedence"] == "bulk"
        html = message.get_body(("html",)).get_content()
        # The one-click link in the header is the one in the footer.
        assert f'href="{forms[0]}"' in html
        assert '<html lang="de"' in html
        assert re.search(r"(Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag), "
                         r"\d+\. (Januar|Februar|März|April|Mai|Juni|Juli|August|September|"
                         r"Oktober|November|Dezember) \d{4}", html)
    assert len(ids) == 2
    zoe = next(m for m in messages if m["To"].addresses[0].addr_spec == "zoe@example.org")
    assert zoe["To"].addresses[0].display_name == "Zoë Lefèvre"
    assert b"=?utf-8?" in next(m.data for m in smtp.messages
                               if m.rcpt_tos == ("zoe@example.org",)).lower()


def test_message_ids_stay_the_same_for_the_same_edition_and_subscriber(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    mailed(site, web, smtp, *STORIES)
    config = configuration.load(site.config)
    edition = Edition(7, "p", WHEN, "S", "<p>x</p>", "x", "0" * 32)
    first = Letter(config, edition, lambda email: "https://news.example.com/u")
    again = Letter(config, edition, lambda email: "https://news.example.com/u")
    assert first.message_id("ann@example.com") == again.message_id("ann@example.com")
    assert first.message_id("ann@example.com") != first.message_id("bob@example.com")
    assert first.message_id("ann@example.com").endswith("@example.com>")


def test_html_is_a_table_layout_with_preheader_outlook_wrapper_and_button(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    html = mailed(site, web, smtp, *STORIES)[0].get_body(("html",)).get_content()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html and 'name="viewport"' in html
    assert "<title>Test Digest: Harbour opens</title>" in html
    assert 'name="color-scheme"' in html and "prefers-color-scheme" in html
    page = parsed(html)
    assert page.tables and all(t.get("role") == "presentation" for t in page.tables)
    container = [t for t in page.tables if t.get("width") == "600"]
    assert container and "max-width:600px" in (container[0].get("style") or "").replace(" ", "")
    assert "<!--[if mso]><table" in html and "v:roundrect" in html
    (image,) = page.images
    # The feed did not describe its picture, and the headline follows: nothing to read twice.
    assert image["alt"] == "" and image["src"].startswith("https://")
    assert image["width"] and image["height"]
    preheader = re.search(r'<div style="display:none[^>]*>([^<]*)</div>', html).group(1)
    assert 40 <= len(preheader) <= 100 and "Harbour opens" in preheader
    style = "".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
    assert len(style.encode()) < 16_000 and "@media" in style
    for piece in ("Unsubscribe", "View in browser", "Forward to a friend", "mailto:?subject="):
        assert piece in html


def test_text_part_has_every_headline_and_link_in_the_same_order_wrapped_whole(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    message = mailed(site, web, smtp, *STORIES)[0]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    page = parsed(html)
    story_links = [href for href in page.hrefs if "example.com/" in href
                   and "news.example.com" not in href]
    order = []
    for headline in page.headlines:
        assert headline in text
        order.append(text.index(headline))
    assert order == sorted(order) and len(order) == len(STORIES)
    positions = [text.index(link) for link in dict.fromkeys(story_links)]
    assert positions == sorted(positions) and len(positions) == len(STORIES)
    for line in text.splitlines():
        assert len(line) <= 76 or re.fullmatch(r"\S+", line), line  # only a URL runs long
    assert STORIES[2].link in text.splitlines()
    assert "https://news.example.com/unsubscribe/" in text


def test_injection_in_a_headline_or_a_name_never_makes_a_header(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    evil = Item("x\nBcc: evil@example.com", "https://example.com/evil", "e1", "Teaser.")
    mailed(site, web, smtp, evil, subscribers=(
        'email,name\nann@example.com,"x\nBcc: evil@example.com"\n'))
    (received,) = smtp.messages
    assert received.rcpt_tos == ("ann@example.com",)
    assert received.message["Bcc"] is None
    assert not re.search(rb"^bcc:", received.data, re.I | re.M)
    assert "Bcc: evil@example.com" in received.message["Subject"].replace("  ", " ")


# Names that once made a header a relay refuses or a reader misreads: an unbroken one made a
# 5,006-octet line, one over 200 characters was folded with a bare LF, and an encoded-word in
# quotes is decoded by readers anyway, into a display address that is not the subscriber's.
NAMES = {"ann@example.com": "x" * 5000, "bob@example.org": "Bobby " * 40,
         "cat@example.net": "Zoë Lefèvre-" * 30,
         "dan@example.com": "=?utf-8?q?Boss_=3Cboss=40corp.com=3E?="}


def test_every_header_line_is_crlf_and_short_and_names_read_back_as_written(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    mailed(site, web, smtp, Item("y" * 3000, "https://example.com/y", "l1"),
           Item("Headline " * 150, "https://example.com/l", "l2"),
           subscribers="email,name\n" + "".join(f"{e},{n}\n" for e, n in NAMES.items()))
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == sorted(NAMES)
    for received in smtp.messages:
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        message = received.message
        assert not message.defects and not any(v.defects for v in message.values())
        (email,) = received.rcpt_tos
        name = NAMES[email]
        (to,) = message["To"].addresses
        assert to.addr_spec == email
        # Read as RFC 2047 says (whitespace between encoded-words is not text): the name as
        # written, or its start cut with "…" where it is longer than 100 characters.
        shown = str(make_header(decode_header(message_from_bytes(
            received.data, policy=policy.compat32)["To"])))
        assert shown.endswith(f" <{email}>")
        shown = shown.removesuffix(f" <{email}>").strip('"')
        if len(name) <= 100:
            assert shown == to.display_name == name
        else:
            assert len(shown) <= 100 and shown.endswith("…")
            assert name.startswith(shown.removesuffix("…")) and len(shown) > 60
    assert smtp.messages[0].message["Subject"] == "Test Digest: " + "y" * 3000


def test_injection_in_an_edition_subject_is_caught_by_our_own_guard(site: Site) -> None:
    config = configuration.load(None)
    edition = Edition(1, "p", WHEN, "x\r\nBcc: evil@example.com\0", "<p>hi</p>", "hi", "0" * 32)
    raw = Letter(config, edition, lambda email: "https://news.example.com/u").bytes_for(
        Delivery(1, "ann@example.com", "Ann\nBcc: evil@example.com", "pending", 0))
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None
    assert not re.search(rb"^bcc:", raw, re.I | re.M)


def _long_cards(count: int) -> list[Card]:
    words = "harbour lantern ferry bridge cocoa storm market archive " * 4
    return [Card(n, f"Story {n}: {words[:90]}", f"https://example.com/story/{n}/{'x' * 60}",
                 (words * 2)[:200] + "…",
                 Image(f"https://img.example.com/{n}.jpg", 800, 450, f"Picture {n}"),
                 WHEN, f"Section {n % 4}") for n in range(1, count + 1)]


def test_300_long_articles_stay_under_the_clipping_size_with_footer_and_more_link(
        site: Site) -> None:
    config = configuration.load(None)
    rendered = Composer(config).render(_long_cards(300), 42, WHEN)
    edition = Edition(42, "p", WHEN, rendered.subject, rendered.html, rendered.text,
                      rendered.marker)
    url = "https://news.example.com/unsubscribe/" + "t" * 120
    raw = Letter(config, edition, lambda email: url).bytes_for(
        Delivery(42, "a.very.long.address.of.a.reader@example.com", "Ann", "pending", 0))
    message = message_from_bytes(raw, policy=policy.default)
    html = message.get_body(("html",)).get_content()
    boundary = message.get_boundary().encode()
    encoded = raw.split(b'Content-Type: text/html; charset="utf-8"')[1].split(b"\r\n\r\n", 1)[
        1].split(b"\r\n--" + boundary)[0]
    assert len(html.encode()) < MAX_HTML
    assert len(encoded) < MAX_ENCODED
    shown = len(parsed(html).headlines)
    assert 10 < shown < 300
    assert f"{300 - shown} more stories" in html
    assert re.search(r'href="[^"]*/archive/42"[^>]*>\s*' + str(300 - shown), html)
    assert url in html and "Forward to a friend" in html and html.rstrip().endswith("</html>")
    assert f"{300 - shown} more stories" in rendered.text


def test_dates_speak_the_newsletter_language_with_english_for_the_rest() -> None:
    assert local_date(WHEN, "de") == "Freitag, 27. November 2026"
    assert local_date(WHEN, "fr-CA") == "vendredi 27 novembre 2026"
    assert local_date(WHEN, "xx") == "Friday, 27 November 2026"
    assert local_date(WHEN, "es", long=False) == "27 de noviembre de 2026"


def test_a_broken_template_names_its_file_and_line(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("digest.txt", "style.css"):
        (folder / name).write_text((configuration.bundled("templates") / name).read_text())
    (folder / "digest.html").write_text("<p>one</p>\n<p>two</p>\n{% if %}\n")
    site.extra = f'[paths]\ntemplates = "{folder}"\n'
    site.write()
    site.subscribers(SUBSCRIBERS)
    assert digest("collect").exit_code == 0
    result = digest("render", "--out", "x.html")
    assert result.exit_code == 2
    assert f"{folder / 'digest.html'}:3:" in result.output
    assert "Traceback" not in result.output

    (folder / "digest.html").write_text("<p>one</p>\n{{ no_such_thing.name }}\n")
    with pytest.raises(DigestError, match=r"digest\.html:2: .*no_such_thing"):
        Composer(configuration.load(site.config)).render(_long_cards(1), 1, WHEN)
    assert rows(site.database, "SELECT count(*) FROM editions") == [(0,)]


def test_non_ascii_headline_and_sender_are_encoded_and_read_back_whole(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    first = Item("Über die Brücke — Zoë’s café", "https://example.com/b", "u1", "Brücken.")
    web.serve("/feed.xml", rss(first))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    path = site.write()
    path.write_text(path.read_text().replace('"Test Digest <', '"Bülow Digest <'))
    site.subscribers(SUBSCRIBERS)
    digest("collect")
    assert digest("send").exit_code == 0
    message = smtp.messages[0].message
    raw = smtp.messages[0].data
    assert message["Subject"] == "Test Digest: Über die Brücke — Zoë’s café"
    assert message["From"].addresses[0].display_name == "Bülow Digest"
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii() and b"=?utf-8?" in headers.lower()


def test_preheader_is_40_to_100_characters_whatever_the_headlines() -> None:
    from digest.compose import preheader

    short = preheader([_card("Rain")], "Test Digest")
    assert 40 <= len(short) <= 100 and short.startswith("Rain · ") and "Test Digest" in short
    huge = preheader([_card("Word " * 80)], "Test Digest")
    assert len(huge) <= 100 and huge.endswith("…")
    several = preheader([_card("Harbour opens"), _card("Bridge closes"), _card("x" * 90)])
    assert several == ("Harbour opens · Bridge closes · "
                       "The latest stories from our feeds, picked for you")
    assert 40 <= len(preheader([], "Test Digest")) <= 100


def _card(title: str) -> Card:
    return Card(1, title, "https://example.com/", "", None, WHEN, "News")


def test_a_folded_subject_reads_back_with_single_spaces_before_an_encoded_word() -> None:
    from digest.compose import fold

    subject = "Test Digest: Ukraine war live: Zelenskyy says troops are holding the…"
    raw = fold("Subject", subject)
    assert raw.count(b"\r\n") == 2 and b" \r\n" not in raw  # folded, no space left behind
    message = message_from_bytes(raw + b"\r\n", policy=policy.default)
    assert message["Subject"] == subject
