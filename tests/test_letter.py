"""Splicing personal values into the pre-encoded message never breaks its encoding."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.compose import Letter, Personal
from digest.config import Config
from digest.records import Delivery, Edition

PERSONAL = Personal.fresh("")
TEXT = (f"Hello {PERSONAL.name},\n.leading dot line\n" + "x" * 120 + f"\nSent to {PERSONAL.email}"
        f".\nUnsubscribe: {PERSONAL.unsubscribe}\n")
HTML = (f"<p>Hello {PERSONAL.name}</p><p>{'é' * 90}</p>"
        f'<a href="{PERSONAL.unsubscribe}">unsubscribe</a>\n')
EDITION = Edition(1, "p", datetime(2026, 11, 27, tzinfo=UTC), "Subject", HTML, TEXT,
                  PERSONAL.marker)
LETTER = Letter(Config(), EDITION, lambda email: f"https://news.example.com/u/{len(email)}")


@settings(max_examples=150, deadline=None)
@given(name=st.text(st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)),
                    max_size=120), local=st.from_regex(r"[a-z0-9._+-]{1,30}", fullmatch=True))
def test_any_name_and_address_round_trip_through_the_encoding(name: str, local: str) -> None:
    email = f"{local}@example.org"
    data = LETTER.bytes_for(Delivery(1, email, name, "pending", 0))
    lines = data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert not any(line.startswith(b".") for line in lines)  # goes out untouched by SMTP
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert message["To"].addresses[0].addr_spec == email
    text = message.get_body(("plain",)).get_content()
    expected = TEXT.replace(PERSONAL.name, name).replace(PERSONAL.email, email).replace(
        PERSONAL.unsubscribe, f"https://news.example.com/u/{len(email)}")
    assert text.replace("\r\n", "\n") == expected
    body = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert f"<p>Hello {html.escape(name, quote=True)}</p>" in body
