"""The reader's language: dates and numbers from Babel's CLDR data, the templates' words from
the gettext catalogues in `digest/locale/`, and which way a text runs.

The catalogues ship as .po files and are compiled in memory when first used (Babel's
`read_po` and `write_mo`), so a clone, an editable install and a wheel all work with no build
step, and an edited .po takes effect at the next start.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from datetime import datetime
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

CATALOGUES = Path(__file__).parent / "locale"
DOMAIN = "digest"
ENGLISH = Locale("en")


@functools.cache
def locale(tag: str) -> Locale:
    """The Babel locale of a `newsletter.language` tag ("de", "fr-CA", "pt_BR"); English for
    a tag Babel does not know, as mail in English beats no mail."""
    try:
        return Locale.parse(tag.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return ENGLISH


@functools.cache
def translations(tag: str) -> NullTranslations:
    """The templates' words for `tag`: its own catalogue (fr_CA), else its language's (fr),
    else the English they are written in."""
    found = locale(tag)
    for name in dict.fromkeys((str(found), found.language)):
        path = CATALOGUES / name / "LC_MESSAGES" / f"{DOMAIN}.po"
        if path.is_file():
            with path.open("rb") as source:
                catalogue = read_po(source, locale=name, domain=DOMAIN)
            compiled = io.BytesIO()
            write_mo(compiled, catalogue)
            compiled.seek(0)
            return Translations(compiled, domain=DOMAIN)
    return NullTranslations()


def local_date(moment: datetime, tag: str, long: bool = True) -> str:
    """A date as the language writes it: "Freitag, 27. November 2026" in full, "27. November
    2026" without the weekday."""
    return format_date(moment, "full" if long else "long", locale=locale(tag))


def number(value: int, tag: str) -> str:
    """A count as the language writes it ("1.234" in German)."""
    return format_decimal(value, locale=locale(tag))


def direction(text: str, fallback: str = "ltr") -> str:
    """"rtl" or "ltr": the direction of the first letter that has one (Unicode's rule for
    `dir="auto"`, UAX 9 P2), else `fallback`."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return fallback
