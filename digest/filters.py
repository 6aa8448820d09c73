"""A feed's rules for which of its entries may be mailed: `include` and `exclude` patterns and
`max_age`. Pure: an article and the moment it is first seen in, a verdict out.

The verdict is given once, when an entry is first stored, and kept with it: a rule changed
later holds back only what comes after, and never brings an old story back into an edition.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.records import Article


class Hold(enum.StrEnum):
    """Why an entry is stored as seen but never mailed: the rule that held it back."""

    INCLUDE = "include"  # it matched none of the feed's include patterns
    EXCLUDE = "exclude"  # it matched one of the exclude patterns
    MAX_AGE = "max_age"  # dated longer ago than max_age when first seen


@dataclass(frozen=True)
class Rules:
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    max_age: timedelta | None = None


NONE = Rules()  # a feed without filters: every entry may be mailed


def patterns(texts: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Case-insensitive patterns; re.error for one that is not a regular expression."""
    return tuple(re.compile(text, re.IGNORECASE) for text in texts)


def hold(article: Article, rules: Rules, seen: datetime) -> Hold | None:
    """Which rule holds back `article`, first seen at `seen`, or None to mail it.

    Patterns are searched in the title, the teaser and each category or tag, one at a time,
    so that a pattern cannot match across the end of one and the start of the next. An entry
    without a date is as old as the moment it is first seen: never too old."""
    if rules.max_age is not None and article.published is not None and (
            seen - article.published > rules.max_age):
        return Hold.MAX_AGE
    texts = (article.title, article.teaser, *article.tags)

    def matches(found: tuple[re.Pattern[str], ...]) -> bool:
        return any(pattern.search(text) for pattern in found for text in texts)

    if rules.include and not matches(rules.include):
        return Hold.INCLUDE
    if matches(rules.exclude):
        return Hold.EXCLUDE
    return None
