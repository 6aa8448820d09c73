"""Personal values go only where the template put them: text from a feed, the CSV or the
configuration that looks like one of our placeholders stays ordinary text, in the mail, in a
resend of the stored edition and on its archive page."""

from __future__ import annotations

import json
import re
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from servers import FeedServer, Received, SmtpServer
from support import Item, Site, digest, rows, rss, serving

from digest import config
from digest.compose import Personal
from digest.store import MIGRATIONS
from digest.web.public import app

pytestmark = pytest.mark.backends

LEGACY = "7c1f"  # the fixed marker every edition's placeholders ended in before
GUESS = "5d0c2f41a7e9b38c6f1d2e4a9b7c0e13"  # a guess at a random marker, in its shape
COLUMNS = ("company", "secret")  # the template prints company, never secret


def forms(marker: str) -> list[str]:
    """Every placeholder a template could make with this marker, and malformed field ones."""
    fields = [f"DIGEST-PERSONAL-FIELD-{hex_}-{marker}"
              for hex_ in [c.encode().hex() for c in COLUMNS] + ["ff", "f", "", "c3"]]
    kinds = ("NAME", "EMAIL", "UNSUBSCRIBE", "PREFERENCES")
    return [f"DIGEST-PERSONAL-{kind}-{marker}" for kind in kinds] + fields


FORMS = forms(LEGACY) + forms(GUESS)
# One story per form: the form in its title, teaser, link and image URL.
ITEMS = [Item(f"Note {form} here", f"https://tracker.example.net/c/{n}/{form}", f"m{n}",
              f"Teaser with {form} inside.",
              extra=f'<media:thumbnail url="https://tracker.example.net/i/{n}/{form}.png" '
                    'width="600" height="300"/>')
         for n, form in enumerate(FORMS)]
SUBSCRIBERS = (
    "email,name,company,secret\n"
    "ann@example.com,Ann Lee,ACME Rockets,ann-secret-4411\n"
    # Values that look like placeholders must be printed as they are, never read as one.
    f"bob@example.org,DIGEST-PERSONAL-EMAIL-{LEGACY},DIGEST-PERSONAL-UNSUBSCRIBE-{LEGACY},"
    "bob-secret-9902\n")
PEOPLE = {"ann@example.com": ("Ann Lee", "ACME Rockets", "ann-secret-4411"),
          "bob@example.org": (f"DIGEST-PERSONAL-EMAIL-{LEGACY}",
                              f"DIGEST-PERSONAL-UNSUBSCRIBE-{LEGACY}", "bob-secret-9902")}
INTRO = f"Welcome DIGEST-PERSONAL-EMAIL-{LEGACY} and DIGEST-PERSONAL-FIELD-ff-{LEGACY}."


def templates(folder: Path) -> Path:
    """The bundled templates with a greeting that prints the name and one custom column."""
    folder.mkdir()
    bundled = config.bundled("templates")
    for name in ("digest.html", "digest.txt", "style.css"):
        source = (bundled / name).read_text(encoding="utf-8")
        if name == "digest.html":
            anchor = '<h1 class="h1">{{ newsletter.name }}</h1>'
            source = source.replace(anchor, anchor + '\n<p class="hello">Hello '
                                    "{{ subscriber.name }} of {{ subscriber.fields.company }}</p>")
        if name == "digest.txt":
            anchor = "{{ edition.date_text }}\n"
            source = source.replace(anchor, anchor + "Hello {{ subscriber.name }} of "
                                    "{{ subscriber.fields.company }}\n", 1)
        assert name == "style.css" or "Hello" in source
        (folder / name).write_text(source, encoding="utf-8")
    return folder


def prepare(site: Site, web_server: FeedServer, smtp: SmtpServer) -> None:
    web_server.serve("/feed.xml", rss(*ITEMS))
    site.feeds = [("News", web_server.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = (f'[paths]\ntemplates = "{templates(site.root / "looks")}"\n'
                  "[collect]\nfirst_run = 0\n")
    path = site.write()
    path.write_text(path.read_text().replace(
        "[newsletter]\n", f'[newsletter]\nmax_articles = 40\nintro = "{INTRO}"\n', 1))
    site.subscribers(SUBSCRIBERS)
    assert digest("collect").exit_code == 0


def unsubscribe_url(message: EmailMessage) -> str:
    return re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"]).group(1)


def assert_only_where_printed(received: Received) -> None:
    """The subscriber's values are where the template prints them, and nowhere else."""
    message = received.message
    (email,) = received.rcpt_tos
    name, company, secret = PEOPLE[email]
    url = unsubscribe_url(message)
    token = url.rsplit("/", 1)[1]
    preferences = url.replace("/unsubscribe/", "/preferences/")
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    printed = {
        "html": [f"Hello {name} of {company}</p>", f"This email was sent to {email}.",
                 f'href="{url}"', f'href="{preferences}"'],
        "text": [f"Hello {name} of {company}\n", f"This email was sent to {email}.\n",
                 f"{url}\n", f"{preferences}\n"],
    }
    rest = {"html": html, "text": text}
    for part, spots in printed.items():
        for spot in spots:
            assert spot in rest[part], (email, part, spot)
            rest[part] = rest[part].replace(spot, "")
    # Feed and configuration text is shown as written, placeholder-like or not.
    for form in FORMS:
        assert f"Note {form} here" in html and form in text, form
        assert f"https://tracker.example.net/c/{FORMS.index(form)}/{form}" in html
        assert f"https://tracker.example.net/i/{FORMS.index(form)}/{form}.png" in html
    assert INTRO in html and INTRO in text
    values = [email, secret, token, url, "bob-secret", "ann-secret", "ann@", "bob@"]
    if email == "ann@example.com":
        values += [name, company]
    for part, remainder in rest.items():
        for value in values:
            assert value not in remainder, (email, part, value)
    headers = {key: value for key, value in message.items()
               if key not in ("To", "List-Unsubscribe")}
    for value in values:
        assert value not in str(headers), (email, value)
    assert message["To"].addresses[0].addr_spec == email
    assert message["To"].addresses[0].display_name == name


def test_placeholder_text_from_feeds_csv_and_config_stays_text_in_mail_resend_and_archive(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    prepare(site, web, smtp)
    smtp.reply("RCPT", 550, match="bob@example.org", times=1)
    result = digest("send")
    assert result.exit_code == 1, result.output  # Bob's delivery failed, on purpose
    assert rows(site.database, "SELECT email, status FROM deliveries ORDER BY email") == [
        ("ann@example.com", "sent"), ("bob@example.org", "failed")]
    # Bob's copy is made from the edition as stored, placeholders and all.
    result = digest("resend", "1", "--to-failed")
    assert result.exit_code == 0, result.output
    assert sorted(m.rcpt_tos for m in smtp.messages) == [("ann@example.com",),
                                                         ("bob@example.org",)]
    for received in smtp.messages:
        assert_only_where_printed(received)
    assert_archive_is_anyones(site)


def assert_archive_is_anyones(site: Site) -> None:
    with serving(app(config.load(site.config))) as base:
        page = httpx.get(f"{base}/archive/1").text
    for form in FORMS:
        assert f"Note {form} here" in page
        assert f"https://tracker.example.net/i/{FORMS.index(form)}/{form}.png" in page
    assert INTRO in page
    assert 'href="https://news.example.com/subscribe"' in page
    for value in ("ann@", "bob@", "Ann Lee", "ACME", "ann-secret", "bob-secret", "/unsubscribe/",
                  "/preferences/"):
        assert value not in page, value


def test_a_fresh_marker_never_occurs_in_the_content_it_marks() -> None:
    drawn = iter(["aa" * 16, "bb" * 16, "cc" * 16])
    content = f"a title with {'aa' * 16} and a teaser with {'bb' * 16}"
    personal = Personal.fresh(content, draw=lambda: next(drawn))
    assert personal.marker == "cc" * 16
    assert personal.name == f"DIGEST-PERSONAL-NAME-{'cc' * 16}"


@pytest.mark.backends("sqlite")  # a SQLite file of an older version
def test_an_edition_stored_before_markers_were_drawn_is_sent_as_it_was_meant(
        site: Site, smtp: SmtpServer) -> None:
    """An edition left pending by the version whose placeholders all ended in 7c1f, and whose
    feed wrote a malformed one (it crashed every send): after the upgrade it goes out."""
    site.smtp_port = smtp.port
    site.write()
    site.subscribers("email,name,company\nann@example.com,Ann Lee,ACME\n")
    site.database.parent.mkdir()
    before = next(n for n, script in enumerate(MIGRATIONS) if "COLUMN marker" in script)
    html = (f"<p>Hello DIGEST-PERSONAL-NAME-{LEGACY} of "
            f"DIGEST-PERSONAL-FIELD-{b'company'.hex()}-{LEGACY}</p>"
            f"<p>Note DIGEST-PERSONAL-FIELD-ff-{LEGACY} here</p>"
            f'<a href="DIGEST-PERSONAL-UNSUBSCRIBE-{LEGACY}">Unsubscribe</a>')
    with sqlite3.connect(site.database) as db:
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {before}")
        db.execute("INSERT INTO editions (id, period, created_at, subject, html, text) "
                   "VALUES (1, 'old', '2026-11-27T07:00:00+00:00', 'Old', ?, 'Old text')",
                   (html,))
        db.execute("INSERT INTO deliveries (edition_id, email, name, fields) VALUES "
                   "(1, 'ann@example.com', 'Ann Lee', ?)", (json.dumps({"company": "ACME"}),))
    result = digest("send")
    assert result.exit_code == 0, result.output
    (received,) = smtp.messages
    page = received.message.get_body(("html",)).get_content()
    assert "<p>Hello Ann Lee of ACME</p>" in page
    assert "<p>Note  here</p>" in page
    assert f'href="{unsubscribe_url(received.message)}"' in page
