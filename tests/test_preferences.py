"""The preferences page behind every mail's "Manage preferences" link, on a real `digest serve`
with mail through a real SMTP server: what a subscriber chooses there shapes the next edition,
wins over subscribers.csv without rewriting it, and nothing else can change it."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from html import unescape
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page
from servers import SmtpServer
from support import Item, Site, digest, rows, rss
from test_web import LIST_ID, PUBLIC, SECRET, confirmation_path, readable, served

from digest import tokens
from digest.records import Preferences, Subscriber
from digest.subscribers import prefer

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
FEEDS = ("World", "Tech")


def publish(site: Site, edition: int) -> None:
    """Two new stories in each section, named for the edition they are meant for."""
    for name in FEEDS:
        (site.root / f"{name}.xml").write_text(rss(*(
            Item(f"{name} story {edition}.{n}", f"https://example.com/{name}/{edition}/{n}",
                 f"{name}-{edition}-{n}") for n in (1, 2)), title=name))
    assert digest("collect").exit_code == 0


def send(site: Site, smtp: SmtpServer, edition: int) -> dict[str, EmailMessage]:
    """The next edition's stories published and sent: each recipient's message."""
    smtp.clear_messages()
    publish(site, edition)
    result = digest("send")
    assert result.exit_code == 0, result.output
    return {received.rcpt_tos[0]: received.message for received in smtp.messages}


def headlines(message: EmailMessage) -> set[str]:
    text = message.get_body(("plain",)).get_content()
    return set(re.findall(r"(?:World|Tech) story \d\.\d", text))


@pytest.fixture
def mailed(site: Site, smtp: SmtpServer) -> Site:
    """A site of two sections whose first edition went out to Ann and Bob."""
    site.feeds = [(name, str(site.root / f"{name}.xml")) for name in FEEDS]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)
    assert set(send(site, smtp, 1)) == {"ann@example.com", "bob@example.org"}
    return site


def preferences_link(message: EmailMessage) -> str:
    """The footer's "Manage preferences" link: the same in both parts of the mail."""
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    (link,) = re.findall(r'href="([^"]+)"[^>]*>Manage preferences</a>', html)
    assert f"Manage preferences:\n{link}\n" in text.replace("\r\n", "\n")
    assert link.startswith(f"{PUBLIC}/preferences/")
    return link


def path_for(smtp: SmtpServer, email: str) -> str:
    message = next(m.message for m in smtp.messages if m.rcpt_tos == (email,))
    return preferences_link(message).removeprefix(PUBLIC)


def chosen(site: Site) -> list[tuple]:
    return rows(site.database, "SELECT address, sections, cadence, timezone, paused "
                "FROM preferences ORDER BY address")


def export(site: Site) -> str:
    out = site.root / "export.csv"
    assert digest("subscribers", "export", "--out", str(out)).exit_code == 0
    return out.read_text()


def test_every_mail_links_to_its_own_preferences_naming_nobody(
        mailed: Site, smtp: SmtpServer) -> None:
    links = {}
    for received in smtp.messages:
        (email,) = received.rcpt_tos
        links[email] = link = preferences_link(received.message)
        assert email not in readable(link)
        # The same opaque id as the unsubscribe link: the page grants nothing more.
        unsubscribe = re.search(r"<(https://[^>]+)>", received.message["List-Unsubscribe"])
        assert link.rsplit("/", 1)[1] == unsubscribe.group(1).rsplit("/", 1)[1]
    assert links["ann@example.com"] != links["bob@example.org"]


def test_the_page_shows_what_is_in_effect_and_a_get_changes_nothing(
        mailed: Site, smtp: SmtpServer) -> None:
    """A GET, whatever its query says (a mail scanner prefetching, a crafted link), only shows
    the page; the page shows the list's values until the subscriber saves their own."""
    mailed.subscribers("email,name,sections,cadence,timezone\n"
                       "ann@example.com,Ann,Tech,weekly,Asia/Tokyo\nbob@example.org,Bob,,,\n")
    with served(mailed) as base:
        for query in ("", "?via=page&delivery=paused&cadence=daily&section=World"):
            page = httpx.get(base + path_for(smtp, "ann@example.com") + query)
            assert page.status_code == 200
            assert page.headers["cache-control"] == "no-store"
            assert "<script" not in page.text and "ann@example.com" in page.text
            assert 'value="Tech" checked' in page.text and 'value="World">' in page.text
            assert 'value="weekly" checked' in page.text
            assert "<option selected>Asia/Tokyo</option>" in page.text
            assert 'value="active" checked' in page.text
        bob = httpx.get(base + path_for(smtp, "bob@example.org")).text
        assert 'value="daily" checked' in bob and '<option value="" selected>UTC' in bob
    assert chosen(mailed) == []


@pytest.mark.parametrize("change, error", [
    ({"cadence": "hourly"}, "Unknown cadence 'hourly'"),
    ({"cadence": ""}, "Unknown cadence ''"),
    ({"timezone": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
    ({"timezone": "../../../etc/passwd"}, "Unknown time zone '../../../etc/passwd'"),
    ({"section": ["Tech", "Sport"]}, "There is no section 'Sport'"),
    ({"delivery": "forever"}, "Unknown delivery 'forever'"),
    ({"via": "scanner"}, "Please use the form"),
])
def test_a_bad_value_shows_the_form_again_and_saves_nothing(
        mailed: Site, smtp: SmtpServer, change: dict[str, object], error: str) -> None:
    good = {"via": "page", "section": ["Tech"], "cadence": "weekly", "timezone": "Asia/Tokyo",
            "delivery": "paused"}
    with served(mailed) as base:
        url = base + path_for(smtp, "ann@example.com")
        refused = httpx.post(url, data={**good, **change})
        assert refused.status_code == 400
        assert error in unescape(refused.text) and "Nothing was saved." in refused.text
        assert '<form method="post"' in refused.text and 'value="daily" checked' in refused.text
        assert chosen(mailed) == []
        # The same form with good values is saved: the refusal was for the value alone.
        assert httpx.post(url, data=good).status_code == 200
    assert chosen(mailed) == [("ann@example.com", '["Tech"]', "weekly", "Asia/Tokyo", 1)]


def test_forged_and_altered_links_get_the_plain_refusal_and_change_nothing(
        mailed: Site, smtp: SmtpServer, page: Page) -> None:
    good = path_for(smtp, "ann@example.com").removeprefix("/preferences/")
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    bad = [flipped, good[:-1], good + "A",
           tokens.address_id(b"another-secret", LIST_ID, "ann@example.com"),
           tokens.address_id(SECRET, "other-list.example.com", "ann@example.com"),
           # Made with the right secret, but for an address no mail ever named.
           tokens.address_id(SECRET, LIST_ID, "mallory@example.com")]
    with served(mailed) as base:
        for token in bad:
            response = page.goto(f"{base}/preferences/{token}")
            assert response is not None and response.status == 400, token
            assert page.get_by_role("heading").inner_text() == "This link does not work"
            assert page.locator("form").count() == 0
            posted = httpx.post(f"{base}/preferences/{token}", data={
                "via": "page", "cadence": "weekly", "delivery": "paused"})
            assert posted.status_code == 400 and "This link does not work" in posted.text
            unsubscribed = httpx.post(f"{base}/preferences/{token}",
                                      data={"via": "page", "action": "unsubscribe"})
            assert unsubscribed.status_code == 400
    assert chosen(mailed) == []
    assert rows(mailed.database, "SELECT count(*) FROM suppressions") == [(0,)]


# -- in a real browser ----------------------------------------------------------------------------

def save(page: Page, change: Callable[[], None]) -> None:
    """Make a change on the open preferences page and save it, as a person would."""
    change()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_role("status").filter(has_text="Saved").wait_for()


def test_sections_chosen_in_a_browser_shape_the_next_edition_and_a_pause_holds_it(
        mailed: Site, smtp: SmtpServer, page: Page, artifacts: Path) -> None:
    path = path_for(smtp, "ann@example.com")
    with served(mailed) as base:
        page.goto(base + path)
        page.screenshot(path=str(artifacts / "preferences.png"), full_page=True)
        save(page, lambda: page.get_by_label("Tech").check())
        assert page.get_by_label("Tech").is_checked()
        assert not page.get_by_label("World").is_checked()
        second = send(mailed, smtp, 2)
        assert headlines(second["ann@example.com"]) == {"Tech story 2.1", "Tech story 2.2"}
        assert len(headlines(second["bob@example.org"])) == 4

        page.goto(base + path)
        assert page.get_by_label("Tech").is_checked()  # what was saved, shown again
        save(page, lambda: page.get_by_label("Pause").check())
        assert set(send(mailed, smtp, 3)) == {"bob@example.org"}
        assert "ann@example.com" not in export(mailed)

        page.goto(base + path)
        save(page, lambda: page.get_by_label("Send me the digest").check())
        fourth = send(mailed, smtp, 4)
        assert headlines(fourth["ann@example.com"]) == {"Tech story 4.1", "Tech story 4.2"}
    assert (mailed.root / "subscribers.csv").read_text() == SUBSCRIBERS


def test_a_cadence_and_time_zone_chosen_in_a_browser_win_over_the_csv_in_the_export(
        mailed: Site, smtp: SmtpServer, page: Page) -> None:
    mailed.subscribers("email,name,cadence,timezone\nann@example.com,Ann,daily,Europe/Berlin\n"
                       "bob@example.org,Bob,,\n")
    with served(mailed) as base:
        page.goto(base + path_for(smtp, "ann@example.com"))
        assert page.get_by_label("Time zone").input_value() == "Europe/Berlin"
        page.get_by_label("Once a week").check()
        save(page, lambda: page.get_by_label("Time zone").select_option("Asia/Kathmandu"))
        assert page.get_by_label("Once a week").is_checked()
        assert page.get_by_label("Time zone").input_value() == "Asia/Kathmandu"
    lines = export(mailed).splitlines()
    assert lines[0] == "email,name,sections,cadence,timezone"
    assert sorted(lines[1:]) == ["ann@example.com,Ann,,weekly,Asia/Kathmandu",
                                 "bob@example.org,Bob,,daily,"]
    # The operator's file is left as they wrote it.
    assert (mailed.root / "subscribers.csv").read_text().startswith(
        "email,name,cadence,timezone\nann@example.com,Ann,daily,Europe/Berlin\n")
    # The next editions follow the choice: the daily one goes to Bob alone, and Ann's weekly
    # round-up holds the week's stories, those the daily editions mailed included.
    assert set(send(mailed, smtp, 2)) == {"bob@example.org"}
    smtp.clear_messages()
    assert digest("send", "--cadence", "weekly").exit_code == 0
    weekly = {received.rcpt_tos[0]: received.message for received in smtp.messages}
    assert set(weekly) == {"ann@example.com"}
    assert headlines(weekly["ann@example.com"]) == {
        f"{name} story {edition}.{n}" for name in FEEDS for edition in (1, 2) for n in (1, 2)}


def test_a_value_no_form_offers_is_refused_in_a_browser_too(
        mailed: Site, smtp: SmtpServer, page: Page) -> None:
    with served(mailed) as base:
        page.goto(base + path_for(smtp, "ann@example.com"))
        # As a hand-edited page would post it: the zone list holds no such name.
        page.get_by_label("Time zone").evaluate(
            "select => select.add(new Option('Atlantis/Capital', 'Atlantis/Capital', true, true))")
        page.get_by_label("Once a week").check()
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Save preferences").click()
        assert posted.value.status == 400
        assert "Unknown time zone 'Atlantis/Capital'" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Every day").is_checked()  # what is in effect, unchanged
    assert chosen(mailed) == []


def test_unsubscribing_from_the_preferences_page_is_an_opt_out(
        mailed: Site, smtp: SmtpServer, page: Page) -> None:
    with served(mailed) as base:
        page.goto(base + path_for(smtp, "bob@example.org"))
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        page.goto(base + path_for(smtp, "bob@example.org"))
        assert "This address is unsubscribed" in page.locator("main").inner_text()
        assert page.get_by_role("button", name="Resubscribe").is_visible()
    assert rows(mailed.database, "SELECT email, reason, source FROM suppressions") == [
        ("bob@example.org", "unsubscribed", "preferences page")]
    assert set(send(mailed, smtp, 2)) == {"ann@example.com"}
    assert (mailed.root / "subscribers.csv").read_text() == SUBSCRIBERS


# -- the sign-up form --------------------------------------------------------------------------

@pytest.mark.parametrize("header, row", [
    ("email,name,cadence,timezone", "new@example.com,Neva,weekly,Asia/Tokyo"),
    # No column to keep them in: they are the new subscriber's preferences instead.
    ("email,name", "new@example.com,Neva"),
])
def test_a_confirmed_sign_up_keeps_its_cadence_and_time_zone(
        site: Site, smtp: SmtpServer, page: Page, header: str, row: str) -> None:
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(header + "\n")
    with served(site) as base:
        page.goto(f"{base}/subscribe")
        assert page.get_by_label("Every day").is_checked()
        assert page.get_by_label("Time zone").input_value() == ""  # the newsletter's
        page.get_by_label("Email address").fill("new@example.com")
        page.get_by_label("Name (optional)").fill("Neva")
        page.get_by_label("Once a week").check()
        page.get_by_label("Time zone").select_option("Asia/Tokyo")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        assert rows(site.database, "SELECT cadence, timezone FROM signups") == [
            ("weekly", "Asia/Tokyo")]
        page.goto(base + confirmation_path(smtp, "new@example.com"))
        page.get_by_role("heading", name="You are subscribed").wait_for()
    assert (site.root / "subscribers.csv").read_text() == f"{header}\n{row}\n"
    assert export(site).splitlines()[1] == "new@example.com,Neva,,weekly,Asia/Tokyo"


@pytest.mark.parametrize("field, value, error", [
    ("cadence", "monthly", "Unknown cadence 'monthly'"),
    ("timezone", "Europe/Nowhere", "Unknown time zone 'Europe/Nowhere'"),
    ("email", "new@", "That address does not work"),
])
def test_a_sign_up_with_an_unknown_cadence_or_zone_is_refused_and_mails_nobody(
        site: Site, smtp: SmtpServer, field: str, value: str, error: str) -> None:
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)
    posted = {"email": "new@example.com", "timezone": "Asia/Tokyo", "cadence": "weekly",
              field: value}
    with served(site) as base:
        response = httpx.post(f"{base}/subscribe", data=posted)
    assert response.status_code == 400 and error in unescape(response.text)
    # The form again, as filled in.
    assert f'value="{posted["email"]}"' in response.text
    assert ('value="weekly" checked' in response.text) == (field != "cadence")
    assert ("<option selected>Asia/Tokyo</option>" in response.text) == (field != "timezone")
    assert smtp.messages == []
    assert rows(site.database, "SELECT count(*) FROM signups") == [(0,)]


# -- the merge, alone ----------------------------------------------------------------------------

ROW = Subscriber("ann@example.com", "Ann", {"city": "Oslo"}, ("World",), "daily", "Europe/Oslo")


@pytest.mark.parametrize("choice, expected", [
    (None, ROW),
    (Preferences(("Tech",), "weekly", "Asia/Tokyo"),
     Subscriber("ann@example.com", "Ann", {"city": "Oslo"}, ("Tech",), "weekly", "Asia/Tokyo")),
    (Preferences((), "daily", ""),  # every section, the newsletter's zone: chosen, so it wins
     Subscriber("ann@example.com", "Ann", {"city": "Oslo"}, (), "daily", "")),
    # A section since removed from the config is dropped; with none left, the row's holds.
    (Preferences(("Gone", "Tech"), "daily", ""),
     Subscriber("ann@example.com", "Ann", {"city": "Oslo"}, ("Tech",), "daily", "")),
    (Preferences(("Gone",), "weekly", ""),
     Subscriber("ann@example.com", "Ann", {"city": "Oslo"}, ("World",), "weekly", "")),
    (Preferences(("Tech",), "weekly", "", paused=True), None),
])
def test_a_subscribers_choice_wins_over_their_row(choice: Preferences | None,
                                                   expected: Subscriber | None) -> None:
    assert prefer(ROW, choice, FEEDS) == expected
