"""The mail a subscriber gets: structure, headers, the text twin, the clipping guard, and what
an editor sees when a template is broken."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
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
from digest.compose import MAX_ENCODED, MAX_HTML, Composer, Letter
from digest.errors import DigestError
from digest.language import local_date
from digest.records import Card, Delivery, Edition, Image

pytestmark = pytest.mark.backends

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


def test_html_is_a_table_layout_with_preheader_outlook_wrapper_and_linked_headlines(
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
    assert "<!--[if mso]><table" in html
    # The headline is each story's link: no button per card.
    assert "Read more" not in html and "v:roundrect" not in html
    assert [href for href in page.hrefs if "example.com/" in href
            and "news.example.com" not in href] == [item.link for item in STORIES
                                                     for _ in range(1 + (item is STORIES[0]))]
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
    # A subject stays within what inboxes show, cut at a word; the rest opens the preheader.
    assert smtp.messages[0].message["Subject"] == "Test Digest…"


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


@pytest.mark.parametrize(("language", "long", "short"), [
    ("de", "Freitag, 27. November 2026", "27. November 2026"),
    ("fr-CA", "vendredi 27 novembre 2026", "27 novembre 2026"),
    ("es", "viernes, 27 de noviembre de 2026", "27 de noviembre de 2026"),
    ("ja", "2026年11月27日金曜日", "2026年11月27日"),
    ("ar", "الجمعة، 27 نوفمبر 2026", "27 نوفمبر 2026"),
    ("en-GB", "Friday, 27 November 2026", "27 November 2026"),
    ("pt_BR", "sexta-feira, 27 de novembro de 2026", "27 de novembro de 2026"),
    # A language Babel does not know gets English rather than no date.
    ("xx", "Friday, November 27, 2026", "November 27, 2026"),
])
def test_dates_speak_the_newsletter_language_with_english_for_the_rest(
        language: str, long: str, short: str) -> None:
    assert local_date(WHEN, language) == long
    assert local_date(WHEN, language, long=False) == short


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


# A real feed's lead made this 131-character subject; inboxes show about 70.
LONG_HEADLINE = ("Ukraine war live: Zelenskyy says troops are holding the line near the river as "
                 "winter fighting intensifies in the east")


def test_a_long_subject_is_cut_at_a_word_and_its_rest_opens_the_preheader(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    message = mailed(site, web, smtp, Item(LONG_HEADLINE, "https://example.com/live", "l1"),
                     *STORIES[:2])[0]
    whole = f"Test Digest: {LONG_HEADLINE}"
    assert len(whole) == 131
    subject = message["Subject"]
    assert len(subject) <= 70 and subject.endswith("…")
    head = subject.removesuffix("…")
    assert whole.startswith(head) and whole[len(head)] == " "  # at a word
    html = message.get_body(("html",)).get_content()
    preheader = re.search(r'<div style="display:none[^>]*>([^<]*)</div>', html).group(1)
    assert preheader.startswith("…" + whole[len(head):].strip() + " · Harbour opens")
    assert len(preheader) <= 100
    # The headline itself is whole in the mail.
    assert LONG_HEADLINE in html
    assert LONG_HEADLINE in " ".join(message.get_body(("plain",)).get_content().split())


# A 182-column line of Japanese (91 wide characters, no spaces) was seen in a text part.
JAPANESE = ("東京都は二十七日、湾岸地区の再開発計画について住民説明会を開き、新しい橋と路面電車の"
            "路線図を初めて公表した。説明会には約三百人が参加し、工事中の騒音や交通規制について"
            "質問が相次いだ。")


def display_width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line)


def test_text_part_wraps_wide_characters_at_76_columns_without_losing_any(site: Site) -> None:
    assert display_width(JAPANESE) == 182
    card = Card(1, "湾岸地区の再開発", "https://example.jp/wangan", JAPANESE, None, WHEN, "東京")
    text = Composer(configuration.load(None)).render([card], 1, WHEN).text
    start = text.index(JAPANESE[:10])
    lines = text[start:].splitlines()[:4]
    assert "".join(lines[:3]) == JAPANESE and lines[3] == "November 27, 2026"
    assert all(display_width(line) <= 76 for line in lines)
    # Japanese line breaking: no line opens with a comma or a full stop.
    assert not any(line[0] in "、。" for line in lines)


@pytest.mark.parametrize(("language", "more", "date", "words"), [
    ("de", {1: "1 weiterer Beitrag", 3: "3 weitere Beiträge", 1234: "1.234 weitere Beiträge"},
     "Freitag, 27. November 2026", ("In dieser Ausgabe", "Abbestellen", "Nr. 42")),
    ("fr", {1: "1 autre article", 2: "2 autres articles"},
     "vendredi 27 novembre 2026", ("Dans ce numéro", "Se désabonner", "N° 42")),
    ("ja", {1: "ほか1件の記事", 5: "ほか5件の記事"},
     "2026年11月27日金曜日", ("今号の内容", "配信停止", "第42号")),
    # Arabic counts in six forms: one, two, 3–10, 11–99 and 100 up each read differently.
    ("ar", {1: "قصة إضافية واحدة", 2: "قصتان إضافيتان", 3: "3 قصص إضافية",
            11: "11 قصة إضافية", 100: "100 قصة إضافية"},
     "الجمعة، 27 نوفمبر 2026", ("في هذا العدد", "إلغاء الاشتراك", "العدد 42")),
])
def test_the_mail_speaks_the_newsletter_language_in_both_parts(
        language: str, more: dict[int, str], date: str, words: tuple[str, ...]) -> None:
    config = configuration.load(None)
    config = replace(config, newsletter=replace(config.newsletter, language=language))
    cards = _long_cards(2)  # two sections: "In this issue" shows
    composer = Composer(config)
    for count, phrase in more.items():
        rendered = composer.render(cards, 42, WHEN, more=count)
        for part in (rendered.html, rendered.text):
            assert phrase in part and date in part
            assert all(word in part for word in words), [w for w in words if w not in part]
        assert "more stor" not in rendered.html + rendered.text
    assert f'lang="{language}" dir="{"rtl" if language == "ar" else "ltr"}"' in rendered.html


REPOSITORY = Path(__file__).resolve().parents[1]


def test_every_shipped_catalogue_translates_every_word_of_the_templates_and_code() -> None:
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg
    from babel.messages.pofile import read_po

    locale = REPOSITORY / "digest" / "locale"
    with (locale / "babel.cfg").open() as mapping:
        methods, options = parse_mapping_cfg(mapping)
    found = {message[2] for message in extract_from_dir(
        str(REPOSITORY), methods, options, callback=lambda *args: None,
        directory_filter=lambda path: not any(part.startswith(".") or part == "tests"
                                              for part in Path(path).parts))}
    assert {("%(number)s more story", "%(number)s more stories"), "In this issue",
            "Unsubscribe"} <= found
    with (locale / "digest.pot").open("rb") as template:
        assert {message.id for message in read_po(template) if message.id} == found
    shipped = sorted(path.parent.parent.name for path in locale.glob("*/LC_MESSAGES/digest.po"))
    assert shipped == ["ar", "de", "en", "es", "fr", "ja"]
    for name in shipped:
        with (locale / name / "LC_MESSAGES" / "digest.po").open("rb") as source:
            catalogue = read_po(source)
        for message in catalogue:
            if not message.id:
                continue
            strings = message.string if isinstance(message.string, tuple) else (
                message.string,)
            assert message.id in found, (name, message.id)
            assert not message.fuzzy and all(strings), (name, message.id)
            assert len(strings) == (catalogue.num_plurals if message.pluralizable else 1)
            wanted = set(re.findall(r"%\(\w+\)s", str(message.id)))
            # Arabic's "one" and "two" spell the number out.
            assert all(set(re.findall(r"%\(\w+\)s", s)) <= wanted for s in strings)
        assert {message.id for message in catalogue if message.id} == found, name


def test_masthead_has_the_logo_and_issue_number_and_cards_no_repeated_section(
        site: Site) -> None:
    config = configuration.load(None)
    config = replace(config, newsletter=replace(
        config.newsletter, logo="https://news.example.com/logo.png"))
    cards = [replace(card, section="World") for card in _long_cards(3)]
    rendered = Composer(config).render(cards, 42, WHEN)
    html = rendered.html
    page = parsed(html)
    logo = next(image for image in page.images if image["src"].endswith("/logo.png"))
    assert logo["alt"] == "" and logo["height"] == "40"
    assert "No. 42 · Friday, November 27, 2026" in html.replace("&middot;", "·")
    assert rendered.text.splitlines()[1] == "No. 42 · Friday, November 27, 2026"
    # The section's name is its heading, once, not a kicker over every card; one section
    # needs no table of contents.
    assert re.findall(r">\s*World\s*<", html) == [">World<"]
    assert "In this issue" not in html and "In this issue" not in rendered.text
    # A preview is no issue yet.
    assert "No. " not in Composer(config).render(cards, 0, WHEN).html


def test_in_this_issue_links_to_every_section_of_an_edition_of_several() -> None:
    rendered = Composer(configuration.load(None)).render(_long_cards(8), 7, WHEN)
    links = re.findall(r'<a class="toc-a" href="#([^"]+)"[^>]*>([^<]+)</a>', rendered.html)
    assert [name for _, name in links] == ["Section 1", "Section 2", "Section 3", "Section 0"]
    for anchor, name in links:
        assert re.search(rf'id="{anchor}"[^>]*>{name}</h2>', rendered.html)
    assert ("In this issue: Section 1 · Section 2 · Section 3 · Section 0"
            in rendered.text.splitlines())


def test_a_folded_subject_reads_back_with_single_spaces_before_an_encoded_word() -> None:
    from digest.compose import fold

    subject = "Test Digest: Ukraine war live: Zelenskyy says troops are holding the…"
    raw = fold("Subject", subject)
    assert raw.count(b"\r\n") == 2 and b" \r\n" not in raw  # folded, no space left behind
    message = message_from_bytes(raw + b"\r\n", policy=policy.default)
    assert message["Subject"] == subject
