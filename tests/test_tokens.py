"""Signed tokens: any change to one makes it worthless."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from digest import tokens

SECRET = b"secret"
LIST = "test-digest.example.com"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
NOW = datetime(2026, 11, 27, tzinfo=UTC)


@settings(max_examples=300)
@given(email=st.emails(), position=st.integers(min_value=0), char=st.sampled_from(ALPHABET))
def test_an_unsubscribe_token_altered_anywhere_is_refused(email: str, position: int,
                                                          char: str) -> None:
    token = tokens.sign(SECRET, LIST, email)
    assert tokens.verify(SECRET, LIST, token) == email
    position %= len(token)
    altered = token[:position] + char + token[position + 1:]
    if altered != token:  # even a change in base64's unused low bits
        assert tokens.verify(SECRET, LIST, altered) is None


@settings(max_examples=300)
@given(name=st.text(max_size=20), position=st.integers(min_value=0),
       char=st.sampled_from(ALPHABET))
def test_a_signup_token_altered_anywhere_is_refused(name: str, position: int, char: str) -> None:
    signup = tokens.Signup("ann@example.com", name, ("World",))
    token = tokens.sign_signup(SECRET, LIST, signup, NOW + timedelta(hours=1))
    assert tokens.verify_signup(SECRET, LIST, token, NOW) == signup
    assert tokens.verify_signup(SECRET, LIST, token, NOW + timedelta(hours=2)) is None
    assert tokens.verify_signup(SECRET, "other.example.com", token, NOW) is None
    position %= len(token)
    altered = token[:position] + char + token[position + 1:]
    if altered != token:
        assert tokens.verify_signup(SECRET, LIST, altered, NOW) is None
