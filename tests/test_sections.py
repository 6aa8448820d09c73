"""Sections: each subscriber gets the sections they chose, one rendering per distinct choice,
and no mail at all when none of their sections has news."""

from __future__ import annotations

import shutil

import pytest
from servers import SmtpServer
from support import Item, Site, digest, rows, rss

from digest.config import bundled
from digest.jobs import view

pytestmark = pytest.mark.backends

WORLD = (Item("Harbour opens", "https://example.com/harbour", "w1"),
         Item("Bridge repaired", "https://example.com/bridge", "w2"))
TECH = (Item("Chip shortage ends", "https://example.com/chip", "t1"),)
SUBSCRIBERS = ("email,name,sections\n"
               "ann@example.com,Ann,\n"                 # everything
               "bob@example.org,Bob,World\n"
               "cat@example.com,Cat,Tech\n"
               "dan@example.com,Dan,tech\n"             # same choice as Cat
               "eve@example.com,Eve,Tech;World\n")      # all there is: the whole edition


def publish(site: Site, world: tuple[Item, ...], tech: tuple[Item, ...]) -> None:
    (site.root / "world.xml").write_text(rss(*world))
    (site.root / "tech.xml").write_text(rss(*tech))
    assert digest("collect").exit_code == 0


@pytest.fixture
def sectioned(site: Site, smtp: SmtpServer) -> Site:
    site.feeds = [("World", str(site.root / "world.xml")), ("Tech", str(site.root / "tech.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)
    return site


def headlines(smtp: SmtpServer) -> dict[str, set[str]]:
    """Which of the test's headlines each recipient's mail carries, in both parts."""
    titles = {item.title for item in WORLD + TECH}
    found = {}
    for received in smtp.messages:
        message = received.message
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        mine = {title for title in titles if title in html}
        assert mine == {title for title in titles if title in text}
        found[received.rcpt_tos[0]] = mine
    return found


def test_each_subscriber_gets_their_sections_rendered_once_per_choice(
        sectioned: Site, smtp: SmtpServer) -> None:
    publish(sectioned, WORLD, TECH)
    assert digest("send").exit_code == 0
    everything = {item.title for item in WORLD + TECH}
    assert headlines(smtp) == {
        "ann@example.com": everything,
        "bob@example.org": {item.title for item in WORLD},
        "cat@example.com": {item.title for item in TECH},
        "dan@example.com": {item.title for item in TECH},
        "eve@example.com": everything,
    }
    subjects = {m.rcpt_tos[0]: m.message["Subject"] for m in smtp.messages}
    assert subjects["cat@example.com"] == "Test Digest: Chip shortage ends"
    # "In this issue" lists the sections of each one's own view, when there are several.
    contents = {m.rcpt_tos[0]: next((line for line in m.message.get_body(("plain",))
                                     .get_content().splitlines()
                                     if line.startswith("In this issue")), None)
                for m in smtp.messages}
    assert contents == {"ann@example.com": "In this issue: World · Tech",
                        "bob@example.org": None, "cat@example.com": None,
                        "dan@example.com": None, "eve@example.com": "In this issue: World · Tech"}
    # Cat and Dan share one rendering; Ann and Eve get the edition itself.
    assert rows(sectioned.database, "SELECT view FROM edition_views ORDER BY view") == [
        ("Tech",), ("World",)]
    assert dict(rows(sectioned.database, "SELECT email, view FROM deliveries")) == {
        "ann@example.com": "", "bob@example.org": "World", "cat@example.com": "Tech",
        "dan@example.com": "Tech", "eve@example.com": ""}


def test_a_subscriber_whose_sections_have_nothing_new_gets_no_mail(
        sectioned: Site, smtp: SmtpServer) -> None:
    publish(sectioned, WORLD, ())
    assert digest("send").exit_code == 0
    assert set(smtp.recipients()) == {"ann@example.com", "bob@example.org", "eve@example.com"}
    assert rows(sectioned.database, "SELECT count(*) FROM edition_views") == [(0,)]
    assert {row[0] for row in rows(sectioned.database, "SELECT email FROM deliveries")} == {
        "ann@example.com", "bob@example.org", "eve@example.com"}


def test_an_edition_resumed_later_still_gives_each_subscriber_their_view(
        sectioned: Site, smtp: SmtpServer) -> None:
    publish(sectioned, WORLD, TECH)
    smtp.reply("MAIL", 451, times=None)  # the relay defers everything
    assert digest("send").exit_code == 1
    smtp.clear_faults()
    rows(sectioned.database, "UPDATE deliveries SET next_try = NULL")  # as if time had passed
    # The edition's rows are the truth now, not the file: Bob's new choice waits for the next.
    sectioned.subscribers(SUBSCRIBERS.replace("Bob,World", "Bob,Tech"))
    assert digest("send").exit_code == 0
    assert len(smtp.messages) == 5
    found = headlines(smtp)
    assert found["bob@example.org"] == {item.title for item in WORLD}
    assert found["cat@example.com"] == {item.title for item in TECH}


@pytest.mark.parametrize(("chosen", "present", "expected"), [
    ((), ["World", "Tech"], ""),
    (("Tech",), ["World", "Tech"], "Tech"),
    (("Tech", "World"), ["World", "Tech"], ""),
    (("Tech", "Sport", "World"), ["World", "Sport", "Tech"], ""),
    (("Tech", "World"), ["World", "Sport", "Tech"], "World;Tech"),
    (("Sport",), ["World", "Tech"], None),
])
def test_view_is_the_whole_edition_a_shared_subset_or_nothing(
        chosen: tuple[str, ...], present: list[str], expected: str | None) -> None:
    assert view(chosen, present) == expected


def test_a_template_that_calls_the_section_source_still_prints_it(sectioned: Site,
                                                                   smtp: SmtpServer) -> None:
    folder = sectioned.root / "templates"
    shutil.copytree(bundled("templates"), folder)
    text = folder / "digest.txt"
    text.write_text(text.read_text().replace("{{ card.published | date }}",
                                             "from {{ card.source }}, {{ card.published | date }}"))
    sectioned.config.write_text(sectioned.config.read_text().replace(
        "[newsletter]\n", "[paths]\ntemplates = 'templates'\n[newsletter]\n", 1))
    publish(sectioned, WORLD, TECH)
    assert digest("send").exit_code == 0
    plain = smtp.messages[0].message.get_body(("plain",)).get_content()
    assert "from World, " in plain and "from Tech, " in plain
