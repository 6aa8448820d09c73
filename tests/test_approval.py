"""The editor's hold (newsletter.approval): an edition made at its slot waits for an editor,
who drops or pins stories and writes an intro in the preview (real Chromium) or with
`digest approve`, over a real SMTP relay, in the real scheduler process."""

from __future__ import annotations

import json
import re
import signal
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss, serving
from test_scheduler import Scheduler, logged, running, until

from digest import config, jobs
from digest.store import State, Store
from digest.web import preview

pytestmark = pytest.mark.backends

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
STORIES = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return.",
                date="Thu, 26 Nov 2026 09:00:00 +0000"),
           Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows.",
                date="Thu, 26 Nov 2026 08:00:00 +0000"),
           Item("Lighthouse relit", "https://example.com/light", "h3", "Ships see it.",
                date="Thu, 26 Nov 2026 07:00:00 +0000"))
LATER = Item("Market moves", "https://example.com/market", "h4", "Stalls shift.",
             date="Fri, 27 Nov 2026 07:00:00 +0000")
# Editor text that would be markup, or one of our placeholders, were it not escaped.
INTRO = "Good <b>morning</b> & welcome, DIGEST-PERSONAL-NAME-7c1f"


def setup(site: Site, web: FeedServer, smtp: SmtpServer, newsletter: str = "",
          schedule: str = "", *items: Item) -> None:
    web.serve("/feed.xml", rss(*(items or STORIES)))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.extra = "[schedule]\n" + schedule
    site.write()
    site.config.write_text(site.config.read_text().replace(
        "[newsletter]\n", "[newsletter]\napproval = true\n" + newsletter, 1))
    site.subscribers(SUBSCRIBERS)


def story_ids(site: Site, edition: int) -> dict[str, int]:
    return dict(rows(site.database, "SELECT articles.title, articles.id FROM edition_articles "
                     "JOIN articles ON articles.id = article_id WHERE edition_id = ? "
                     "ORDER BY position", edition))


def ids(site: Site) -> dict[str, int]:
    return dict(rows(site.database, "SELECT title, id FROM articles"))


def headlines(message: EmailMessage) -> list[str]:
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return [re.sub(r"<[^>]+>", "", found) for found in re.findall(
        r'<h3 class="h3[^"]*"[^>]*>(.*?)</h3>', page, re.S)]


def shown_state(edition: int) -> str:
    """The edition's state as `digest status --json` shows it."""
    found = json.loads(digest("status", "--json").stdout)
    return next(e["state"] for e in found["editions"] if e["id"] == edition)


def state(site: Site, edition: int) -> str:
    return rows(site.database, "SELECT state FROM editions WHERE id = ?", edition)[0][0]


def test_send_holds_the_edition_and_approve_mails_it_with_the_choices(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    held = digest("send")
    assert held.exit_code == 0, held.output
    assert "edition 1: 3 articles held for approval" in held.output
    assert state(site, 1) == "held"
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(0,)]
    assert smtp.messages == []
    # While it waits, no second edition of the cadence: the next send says why.
    again = digest("send")
    assert "edition 1 is held for approval" in again.output
    assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]

    shown = digest("status")
    assert shown.exit_code == 1
    assert "edition 1 held for approval since" in shown.output
    assert "it waits (no schedule.approval_timeout)" in shown.output
    found = ids(site)
    for title, number in found.items():
        assert re.search(rf"{number}\s.*{title}", shown.output), title
    # The archive knows nothing of it yet.
    with Store(site.database) as store:
        assert store.archived() == []

    approved = digest("approve", "1", "--drop", str(found["Bridge repaired"]),
                      "--pin", str(found["Lighthouse relit"]), "--intro", INTRO)
    assert approved.exit_code == 0, approved.output
    assert "edition 1 approved" in approved.output
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    for received in smtp.messages:
        message = received.message
        assert headlines(message) == ["Lighthouse relit", "Harbour opens"]
        page = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert "Bridge repaired" not in page and "Bridge repaired" not in text
        assert "Good &lt;b&gt;morning&lt;/b&gt; &amp; welcome" in page
        assert "<b>morning" not in page
        # Printed as written, never spliced: no subscriber's name in its place.
        assert "DIGEST-PERSONAL-NAME-7c1f" in page and "DIGEST-PERSONAL-NAME-7c1f" in text
        assert text.index("Good <b>morning</b> & welcome") < text.index("Lighthouse relit")
        assert page.index("Good &lt;b&gt;") < page.index('class="h3')
    assert state(site, 1) == "approved"
    with Store(site.database) as store:
        assert [e.id for e in store.archived()] == [1]
        assert "Lighthouse relit" in store.web_page(1).html
    assert digest("status").exit_code == 0

    # The dropped story went back to the pool: the next edition carries it.
    web.serve("/feed.xml", rss(LATER, *STORIES))
    assert digest("collect").exit_code == 0
    assert "edition 2: 2 articles held for approval" in digest("send").output
    assert list(story_ids(site, 2)) == ["Market moves", "Bridge repaired"]
    assert digest("approve", "2").exit_code == 0
    assert "Bridge repaired" in headlines(smtp.messages[-1].message)


def test_discarded_stories_are_never_mailed(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    bridge = ids(site)["Bridge repaired"]
    approved = digest("approve", "1", "--drop", str(bridge), "--discard")
    assert approved.exit_code == 0, approved.output
    assert all("Bridge repaired" not in headlines(m.message) for m in smtp.messages)

    web.serve("/feed.xml", rss(LATER, *STORIES))
    assert digest("collect").exit_code == 0
    assert "edition 2: 1 articles held for approval" in digest("send").output
    assert list(story_ids(site, 2)) == ["Market moves"]


def test_bad_approvals_are_one_line_and_exit_2(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    found = ids(site)
    for args, said in (
            (("7",), "edition 7 does not exist"),
            (("1", "--drop", "99"), "story 99 is not in edition 1"),
            (("1", "--pin", "0"), "story 0 is not in edition 1"),
            (("1", "--drop", str(found["Harbour opens"]), "--pin",
              str(found["Harbour opens"])), "both --drop and --pin"),
            (("1", *[arg for number in found.values() for arg in ("--drop", str(number))]),
             "every story is dropped")):
        result = digest("approve", *args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.output and len(result.output.strip().splitlines()) == 1, args
    assert smtp.messages == [] and state(site, 1) == "held"
    # Nor can it be resent before it was ever sent.
    resent = digest("resend", "1", "--to", "ann@example.com")
    assert resent.exit_code == 2 and "edition 1 was never mailed (it is held)" in resent.output
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(0,)]

    assert digest("approve", "1").exit_code == 0
    twice = digest("approve", "1")
    assert twice.exit_code == 2
    assert "edition 1 is not held for approval (it is approved)" in twice.output
    assert len(twice.output.strip().splitlines()) == 1
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}


def test_a_bad_approval_setting_is_one_line_naming_the_key(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    for newsletter, schedule, said in (
            ('approval_fallback = "wait"\n', "", "newsletter.approval_fallback must be one of "
                                                  "send, skip, not 'wait'"),
            ("", 'approval_timeout = "soon"\n', "schedule.approval_timeout must be a duration"),
            ("", 'approval_timeout = "0s"\n', "schedule.approval_timeout must be a duration")):
        setup(site, web, smtp, newsletter, schedule)
        result = digest("status")
        assert result.exit_code == 2 and said in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("fallback", ["send", "skip"])
def test_the_approval_timeout_sends_or_skips_once_it_has_passed(
        site: Site, web: FeedServer, smtp: SmtpServer, fallback: str) -> None:
    setup(site, web, smtp, f'approval_fallback = "{fallback}"\n', 'approval_timeout = "30m"\n')
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    settings = config.load(site.config)
    with Store(site.database) as store:
        (held,) = store.waiting()
        # The editor had dropped one already: "as it is" means with that choice.
        store.choose(held.id, ids(site)["Bridge repaired"], jobs.Choice.DROP)
    waiting = digest("status")
    assert waiting.exit_code == 1
    deadline = held.held_at + timedelta(minutes=30)
    fate = "sent as it is" if fallback == "send" else "skipped"
    assert (f"edition 1 held for approval since {held.held_at:%Y-%m-%d %H:%M} UTC: {fate} at "
            f"{deadline:%Y-%m-%d %H:%M} UTC (schedule.approval_timeout = 30m)") in waiting.output

    with Store(site.database) as store:
        assert jobs.timeouts(settings, store, deadline - timedelta(seconds=1)) == []
        assert store.state(1) is State.HELD
        (timed,) = jobs.timeouts(settings, store, deadline)
        assert jobs.timeouts(settings, store, deadline + timedelta(hours=1)) == []
    assert timed.held.id == 1 and not timed.problem
    after = digest("send")  # delivers what is due, then makes this period's edition
    if fallback == "send":
        assert timed.edition is not None and state(site, 1) == "timed out"
        assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
        assert headlines(smtp.messages[0].message) == ["Harbour opens", "Lighthouse relit"]
        assert shown_state(1) == "timed out"
        # The story it dropped went back, and the next edition holds it.
        assert list(story_ids(site, 2)) == ["Bridge repaired"]
    else:
        assert timed.edition is None and state(site, 1) == "skipped"
        assert smtp.messages == []
        assert shown_state(1) == "skipped"
        with Store(site.database) as store:
            assert store.archived() == []
        # None of it was mailed: every story is back, in the next edition.
        assert "edition 2: 3 articles held for approval" in after.output
        assert list(story_ids(site, 2)) == ["Harbour opens", "Bridge repaired",
                                            "Lighthouse relit"]


# -- in the real scheduler process, and in Chromium on the preview ------------------------------

SECONDS = 'collect = "1s"\njitter = "0s"\nsend = "*/2 * * * * *"\nreconcile = "1s"\n'


def held_logged(scheduler: Scheduler, edition: int) -> list[dict]:
    return [line for line in logged(scheduler, "edition held for approval")
            if line["edition"] == edition]


@pytest.mark.slow
def test_the_editor_drops_pins_writes_an_intro_and_approves_in_the_browser(
        site: Site, web: FeedServer, smtp: SmtpServer, page: Page, artifacts: Path) -> None:
    setup(site, web, smtp, "", SECONDS)
    with running(site) as scheduler, serving(preview.app(site.config)) as base:
        until(lambda: held_logged(scheduler, 1), what="edition 1 to be held")
        # The slots that follow make none while it waits, and say why.
        until(lambda: any("edition 1 is held for approval" in line["reason"]
                          for line in logged(scheduler, "no edition")), what="a slot let pass")
        assert rows(site.database, "SELECT count(*) FROM editions") == [(1,)]
        assert smtp.messages == []
        # Its own slot is an edition held, not a slot let pass.
        slot = held_logged(scheduler, 1)[0]["period"]
        assert all(line["period"] != slot for line in logged(scheduler, "no edition"))

        page.goto(base)
        assert page.locator("#held-title").inner_text().startswith(
            "Edition 1, held for approval since")
        page.get_by_role("button", name="Drop Bridge repaired").click()
        assert "story" in page.locator("#notice").inner_text()
        page.get_by_role("button", name="Pin Lighthouse relit to the top").click()
        page.frame_locator("#edition").locator("h3").first.wait_for()
        shown = page.frame_locator("#edition").locator("h3").all_inner_texts()
        assert shown == ["Lighthouse relit", "Harbour opens"]
        page.get_by_label("Intro, above the stories").fill(INTRO)
        page.get_by_role("button", name="Save the intro").click()
        assert page.locator("#notice").inner_text() == "intro saved"
        # Shown as written, as text: its markup is not obeyed.
        frame = page.frame_locator("#edition")
        assert INTRO in frame.locator("body").inner_text()
        assert frame.locator("b", has_text="morning").count() == 0
        assert page.get_by_label("Intro, above the stories").input_value() == INTRO
        page.screenshot(path=str(artifacts / "held.png"), full_page=True)
        page.get_by_role("button", name="Approve and send").click()
        assert ("edition 1 approved: the running scheduler delivers it"
                in page.locator("#notice").inner_text())

        smtp.wait_for(2, timeout=30)
        for received in smtp.messages:
            message = received.message
            assert headlines(message) == ["Lighthouse relit", "Harbour opens"]
            page_html = message.get_body(("html",)).get_content()
            assert "Good &lt;b&gt;morning&lt;/b&gt; &amp; welcome" in page_html
            assert "Bridge repaired" not in page_html
            assert "Good <b>morning</b> & welcome" in message.get_body(("plain",)).get_content()

        # The dropped story went back to the pool: the next slot's edition holds it.
        until(lambda: held_logged(scheduler, 2), what="edition 2 to be held")
        assert list(story_ids(site, 2)) == ["Bridge repaired"]
        page.goto(base)
        page.get_by_role("button", name="Approve and send").click()
        smtp.wait_for(4, timeout=30)
        assert scheduler.stop() == 0
    assert headlines(smtp.messages[-1].message) == ["Bridge repaired"]
    assert smtp.recipients() == {"ann@example.com": 2, "bob@example.org": 2}
    assert rows(site.database, "SELECT id, state FROM editions ORDER BY id")[:2] == [
        (1, "approved"), (2, "approved")]


def test_a_post_from_elsewhere_changes_nothing(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    assert digest("collect").exit_code == 0
    assert digest("send").exit_code == 0
    story = ids(site)["Harbour opens"]
    with serving(preview.app(site.config)) as base:
        token = re.search(r'name="token" value="([^"]+)"', httpx.get(base).text)
        assert token is not None
        for headers, token_sent in (({"Origin": "https://elsewhere.example"}, token[1]),
                                    ({}, token[1]), ({"Origin": base}, ""),
                                    ({"Origin": base}, "forged")):
            for path, data in (("/held/choose", {"story": story, "choice": "drop"}),
                               ("/held/intro", {"intro": "hijacked"}),
                               ("/held/approve", {"intro": "hijacked"})):
                answer = httpx.post(f"{base}{path}", headers=headers,
                                    data={"token": token_sent, "edition": "1", **data})
                assert answer.status_code == 303 and "refused" in answer.headers["location"]
        assert state(site, 1) == "held" and smtp.messages == []
        assert rows(site.database, "SELECT intro FROM editions") == [(None,)]
        assert rows(site.database, "SELECT count(*) FROM edition_articles WHERE choice "
                                   "IS NOT NULL") == [(0,)]
        # The page's own post, with its token, is heard.
        mine = httpx.post(f"{base}/held/choose", headers={"Origin": base},
                          data={"token": token[1], "edition": "1", "story": story,
                                "choice": "drop"})
        assert "dropped" in mine.headers["location"]


@pytest.mark.slow
def test_a_restart_while_held_keeps_it_held_and_makes_no_second_edition(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp, "", SECONDS)
    with running(site) as scheduler:
        until(lambda: held_logged(scheduler, 1), what="edition 1 to be held")
        assert scheduler.stop(signal.SIGTERM) == 0
    # News arrives meanwhile: it waits for the edition after the held one.
    web.serve("/feed.xml", rss(LATER, *STORIES))
    with running(site) as again:
        # Several slots come and go in the new process: none makes an edition.
        until(lambda: len([line for line in logged(again, "no edition")
                           if "edition 1 is held" in line["reason"]]) >= 2,
              what="two slots let pass after the restart")
        assert again.stop() == 0
    assert rows(site.database, "SELECT id, state FROM editions") == [(1, "held")]
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(0,)]
    assert smtp.messages == []
    assert not logged(again, "edition held for approval")
    assert logged(again, "collected")[0]["new"] == 1
    # Still the editor's to approve, whole, as it was held.
    assert digest("approve", "1").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    assert headlines(smtp.messages[0].message) == [item.title for item in STORIES]


@pytest.mark.slow
@pytest.mark.parametrize("fallback", ["send", "skip"])
def test_the_scheduler_applies_the_approval_timeout(
        site: Site, web: FeedServer, smtp: SmtpServer, fallback: str) -> None:
    setup(site, web, smtp, f'approval_fallback = "{fallback}"\n',
          SECONDS + 'approval_timeout = "1s"\n')
    with running(site) as scheduler:
        if fallback == "send":
            smtp.wait_for(2, timeout=30)
            until(lambda: logged(scheduler, "approval timed out: edition sent as it was"),
                  what="the timeout to be logged")
        else:
            # Skipped, its stories back in the pool: the next edition holds all of them again.
            until(lambda: held_logged(scheduler, 2), what="edition 2 to be held")
            assert logged(scheduler, "approval timed out: edition skipped, its stories go "
                                     "back to the pool")[0]["edition"] == 1
            assert held_logged(scheduler, 2)[0]["articles"] == 3
        assert scheduler.stop() == 0
    first = rows(site.database, "SELECT state FROM editions WHERE id = 1")
    if fallback == "send":
        assert first == [("timed out",)]
        assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    else:
        assert first == [("skipped",)] and smtp.messages == []
