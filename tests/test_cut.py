"""Teaser cutting, for any text: never too long, at a word boundary where there are words,
never splitting a letter from its accents or an emoji from its joiners, always valid Unicode."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from digest.cards import ELLIPSIS, cut

limits = st.integers(min_value=1, max_value=80)
words = st.lists(st.text(st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=12),
                 min_size=1, max_size=30).map(" ".join)
cjk = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1,
              max_size=120)
# Letters with combining accents, emoji with skin tones and zero-width joiners, flags.
clusters = st.lists(st.sampled_from(["e\u0301", "a", " ", "n\u0303\u0304", "👩\u200d👩\u200d👧",
                                     "👍🏽", "🇫🇷", "🇩🇪", "字", "\u05e9\u05c1"]),
                    max_size=60).map("".join)
anything = st.text(max_size=300)
korean = st.lists(st.text(st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), min_size=1,
                          max_size=6), min_size=1, max_size=20).map(" ".join)


def kept(plain: str, result: str) -> str:
    """The part of `plain` the cut kept."""
    if result == plain:
        return plain
    assert result.endswith(ELLIPSIS)
    head = result[: -len(ELLIPSIS)]
    assert plain.startswith(head)
    return head


@given(anything | words | cjk | clusters, limits)
def test_never_longer_than_the_limit_plus_the_ellipsis(plain: str, limit: int) -> None:
    result = cut(plain, limit)
    assert len(result) <= limit + len(ELLIPSIS)
    assert (result == plain) == (len(plain) <= limit)
    kept(plain, result)


@example("0 0 0 000 000000000\uff10", 19)  # a fullwidth digit is part of a word, not CJK
@example("한국어 문장은 띄어쓰기를 합니다", 9)  # Korean writes spaces between words
@given(words | korean, limits)
def test_never_ends_mid_word_when_a_space_exists(plain: str, limit: int) -> None:
    result = cut(plain, limit)
    head = kept(plain, result)
    if result != plain and " " in plain[1: limit + 1]:
        assert plain[len(head)] == " ", (plain, result)


@given(cjk, limits)
def test_text_without_spaces_is_cut_between_characters(plain: str, limit: int) -> None:
    result = cut(plain, limit)
    if len(plain) > limit:
        assert result == plain[:limit] + ELLIPSIS


@given(anything | clusters, limits)
def test_always_valid_unicode_and_whole_characters(plain: str, limit: int) -> None:
    result = cut(plain, limit)
    result.encode("utf-8")  # a lone surrogate would raise
    head = kept(plain, result)
    if head != plain and head:
        following = plain[len(head)]
        assert not unicodedata.combining(following)
        assert following not in "\u200d\ufe0f" and head[-1] != "\u200d"
        assert not "\U0001f3fb" <= following <= "\U0001f3ff", "a skin tone cut off"
        flags = len(head) - len(head.rstrip("".join(map(chr, range(0x1F1E6, 0x1F200)))))
        assert flags % 2 == 0, "a flag cut in half"
