"""Tokens: any change to one makes it worthless, and none tells whose it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import tokens
from digest.records import Subscriber
from digest.store import Store

SECRET = b"secret"
LIST = "test-digest.example.com"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
NOW = datetime(2026, 11, 27, tzinfo=UTC)

# Links as digest mailed them before ids existed, for SECRET and LIST: an unsubscribe token
# for ann@example.com, and her confirmation token ("Ann", section World) expiring NOW + 1 h.
LEGACY_UNSUBSCRIBE = "YW5uQGV4YW1wbGUuY29t.cT8ZtHQqIHTlj42L0OgW3gT4PuR9pc_X7ZFdXgQGZXo"
LEGACY_SIGNUP = ("eyJlIjoiYW5uQGV4YW1wbGUuY29tIiwibiI6IkFubiIsInMiOlsiV29ybGQiXSwieCI6MTc5NT"
                 "c0MTIwMH0.CKrd58-7ujEIxvVNbBT9EdhEPxUekYkRK1BmajUmLgQ")


def altered(token: str, position: int, char: str) -> str:
    position %= len(token)
    return token[:position] + char + token[position + 1:]


@settings(max_examples=300)
@given(email=st.emails(), position=st.integers(min_value=0), char=st.sampled_from(ALPHABET))
def test_an_unsubscribe_id_altered_anywhere_is_refused(email: str, position: int,
                                                       char: str) -> None:
    token = tokens.address_id(SECRET, LIST, email)
    known = {token: email}
    assert tokens.verify(SECRET, LIST, token, known.get) == email
    changed = altered(token, position, char)
    if changed != token:
        known[changed] = email  # even one the store held for that address
        assert tokens.verify(SECRET, LIST, changed, known.get) is None


def test_an_id_is_good_only_for_its_secret_and_list_and_names_nobody() -> None:
    email = "ann@example.com"
    mine = tokens.address_id(SECRET, LIST, email)
    for other in (tokens.address_id(b"guessed", LIST, email),
                  tokens.address_id(SECRET, "other.example.com", email)):
        assert other != mine
        assert tokens.verify(SECRET, LIST, other, {other: email}.get) is None
    assert tokens.verify(SECRET, LIST, mine, {}.get) is None  # never issued here
    assert len(mine) == 22 and "." not in mine  # 128 bits, and no room for an address


def test_links_mailed_before_ids_still_work_as_they_promised() -> None:
    nothing: dict[str, str] = {}
    assert tokens.verify(SECRET, LIST, LEGACY_UNSUBSCRIBE, nothing.get) == "ann@example.com"
    assert tokens.verify(SECRET, "other.example.com", LEGACY_UNSUBSCRIBE, nothing.get) is None
    assert tokens.verify_legacy_signup(SECRET, LIST, LEGACY_SIGNUP, NOW) == Subscriber(
        "ann@example.com", "Ann", {}, ("World",))
    assert tokens.verify_legacy_signup(SECRET, LIST, LEGACY_SIGNUP,
                                       NOW + timedelta(hours=2)) is None  # expired, as said
    assert tokens.verify_legacy_signup(SECRET, "other.example.com", LEGACY_SIGNUP, NOW) is None
    # One kind can never pass for the other.
    assert tokens.verify(SECRET, LIST, LEGACY_SIGNUP, nothing.get) is None
    assert tokens.verify_legacy_signup(SECRET, LIST, LEGACY_UNSUBSCRIBE, NOW) is None


@settings(max_examples=300)
@given(position=st.integers(min_value=0), char=st.sampled_from(ALPHABET))
def test_a_legacy_token_altered_anywhere_is_refused(position: int, char: str) -> None:
    for token in (LEGACY_UNSUBSCRIBE, LEGACY_SIGNUP):
        changed = altered(token, position, char)
        if changed != token:  # even a change in base64's unused low bits
            assert tokens.verify(SECRET, LIST, changed, {}.get) is None
            assert tokens.verify_legacy_signup(SECRET, LIST, changed, NOW) is None


@pytest.mark.backends
def test_a_kept_sign_up_is_found_by_its_id_until_it_expires(state: Path | str) -> None:
    signup = Subscriber("ann@example.com", "Ann", {}, ("World",))
    token = tokens.signup_id()
    assert len(token) >= 22 and token != tokens.signup_id()
    with Store(state) as store:
        assert store.add_signup(token, signup, "ann@example.com", NOW, NOW + timedelta(hours=1),
                                most=3, window=timedelta(days=1))
        assert store.signup(token, NOW + timedelta(minutes=59)) == signup
        assert store.signup(token, NOW + timedelta(hours=1, seconds=1)) is None
        assert store.signup(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW) is None


@pytest.mark.backends
def test_confirmations_per_recipient_are_counted_over_the_window(state: Path | str) -> None:
    signup = Subscriber("ann@example.com")
    day, hour = timedelta(days=1), timedelta(hours=1)
    with Store(state) as store:
        def ask(at: datetime, recipient: str = "ann@example.com") -> bool:
            return store.add_signup(tokens.signup_id(), signup, recipient, at, at + hour,
                                    most=2, window=day)

        assert [ask(NOW), ask(NOW + hour), ask(NOW + 2 * hour)] == [True, True, False]
        assert ask(NOW, "bob@example.org")  # another recipient has a count of its own
        # A day on, the first has aged out of the window: one more, not two.
        assert [ask(NOW + day), ask(NOW + day)] == [True, False]
