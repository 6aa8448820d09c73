"""The store's answers as records, in a real SQLite file and a real PostgreSQL database: an
edition is rendered with the number the store will give it, then handed over to be stored,
and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from digest import config as configuration
from digest import jobs
from digest.compose import Composer, Rendered, anonymous
from digest.errors import DigestError
from digest.records import Card, Outcome, Result, Status, Subscriber
from digest.store import Composed, Settled, Store

pytestmark = pytest.mark.backends

WHEN = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
CONFIG = configuration.load(None)
ANN, BOB = Subscriber("ann@example.com", "Ann"), Subscriber("bob@example.org", "Bob")
CARDS = [Card(n, f"Story {n}", f"https://example.com/{n}", "A teaser.", None, WHEN, section)
         for n, section in ((1, "World"), (2, "Sport"))]


def composed(store: Store, period: str) -> Composed:
    """An edition of CARDS with a Sport view, as send composes it: numbered, then rendered."""
    composer, number = Composer(CONFIG), store.next_edition()
    personal = composer.personal(CARDS)

    def render(cards: list[Card], **how: Any) -> Rendered:
        return composer.render(cards, number, WHEN, personal=personal, **how)

    # No cards claimed: these are not articles of the database.
    return Composed(number, period, WHEN, render(CARDS),
                    render(CARDS, fit=False, web=True).html, personal.marker, (),
                    {"Sport": render(CARDS[1:])})


def html_of(message: bytes) -> str:
    return message_from_bytes(message, policy=policy.default).get_body(("html",)).get_content()


def test_an_edition_is_stored_under_the_number_it_was_rendered_with(state: Path | str) -> None:
    with Store(state) as store:
        store.create_edition(composed(store, "first"), [ANN])
        edition = store.create_edition(composed(store, "second"), [ANN, BOB],
                                       lambda subscriber: "Sport" if subscriber is BOB else "")
        assert edition is not None and edition.id == 2
        assert store.create_edition(composed(store, "second"), [ANN]) is None
        message_for = jobs.messages(CONFIG, store, edition, lambda email: "https://u.example")
        mails = {d.email: html_of(message_for(d)) for d in store.due(edition.id)}
        page = anonymous(store.web_page(edition.id).html, edition.marker, "https://s.example")
    assert "Story 1" in mails[ANN.email] and "Story 1" not in mails[BOB.email]
    assert f'href="{CONFIG.newsletter.public_url}/archive/2"' in mails[BOB.email]
    for shown in (mails[ANN.email], mails[BOB.email], page):
        assert "No. 2" in shown and "/archive/2" in shown


def test_a_number_taken_meanwhile_is_refused_and_nothing_recorded(state: Path | str) -> None:
    with Store(state) as store:
        first, second = composed(store, "first"), composed(store, "second")  # both number 1
        store.create_edition(first, [ANN])
        with pytest.raises(DigestError, match="edition 1 was made meanwhile"):
            store.create_edition(second, [BOB])
        assert [e.period for e in store.editions()] == ["first"]
        assert [d.email for d in store.due(1)] == [ANN.email]


def test_editions_count_each_editions_own_deliveries(state: Path | str) -> None:
    with Store(state) as store:
        for period in ("first", "second", "third"):
            store.create_edition(composed(store, period), [ANN, BOB])
        sent = next(store.due(2))
        store.step(Settled(sent, Result(Outcome.SENT, "250 accepted")), next(store.due(3)))
        assert {e.id: e.counts for e in store.editions()} == {
            3: {Status.SENDING: 1, Status.PENDING: 1}, 2: {Status.SENT: 1, Status.PENDING: 1},
            1: {Status.PENDING: 2}}
        assert [(e.id, e.counts) for e in store.editions(1)] == [
            (3, {Status.SENDING: 1, Status.PENDING: 1})]
