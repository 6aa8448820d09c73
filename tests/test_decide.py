"""What collect records of one fetch, decided without a network or a database: the rules that
keep every article and the feed's health honest, over every state and answer hypothesis finds
(the same rules end to end, over HTTP and SQLite: test_fetch.py, test_collect.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from digest import feeds, filters
from digest.config import Collect
from digest.jobs import Answer, decide
from digest.records import Article
from digest.store import FeedState

moments = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))
validators = st.none() | st.sampled_from(['"v1"', '"v2"', "Thu, 26 Nov 2026 09:00:00 GMT"])
urls = st.none() | st.sampled_from(["https://example.com/new.xml", "https://example.org/a"])
articles = st.lists(
    st.builds(Article, key=st.text(min_size=1, max_size=4), title=st.just("Headline"),
              link=st.none(), teaser=st.just(""), image=st.none(),
              published=st.none() | moments),
    unique_by=lambda article: article.key, max_size=12).map(tuple)
states = st.builds(
    FeedState, id=st.just(1), url=st.just("https://example.com/feed.xml"), name=st.just("News"),
    etag=validators, last_modified=validators, last_ok=st.none() | moments,
    last_error=st.none() | st.just("HTTP 500 Internal Server Error"),
    error_count=st.integers(0, 3), error_since=st.none() | moments, articles=st.integers(0, 9),
    moved_to=urls, retry_after=st.none() | moments)
errors = (st.builds(feeds.FeedError, st.sampled_from(["HTTP 503 Service Unavailable",
                                                      "timed out", "not a feed: no RSS"]),
                    st.none() | moments)
          | st.builds(feeds.Gone, st.just("HTTP 410 Gone")))
failures = st.builds(Answer, error=errors, moved=urls)
successes = st.builds(Answer, articles=st.none() | articles, etag=validators,
                      last_modified=validators, moved=urls)
settings = st.builds(Collect, first_run=st.integers(0, 6))


@given(states, failures, moments, settings)
def test_an_error_changes_the_feeds_health_and_nothing_else(
        state: FeedState, answer: Answer, now: datetime, collect: Collect) -> None:
    update = decide(state, answer, now, collect)
    after = update.feed
    assert update.articles == () and update.muted == frozenset()
    assert (after.etag, after.last_modified, after.last_ok) == (
        state.etag, state.last_modified, state.last_ok)
    assert after.last_error == str(answer.error)
    assert after.error_count == state.error_count + 1
    assert after.error_since == (state.error_since or now)


@given(states, failures, moments, settings)
def test_a_410_disables_the_feed_and_another_error_says_how_long_to_wait(
        state: FeedState, answer: Answer, now: datetime, collect: Collect) -> None:
    after = decide(state, answer, now, collect).feed
    if isinstance(answer.error, feeds.Gone):
        assert after.disabled_at == now and after.retry_after == state.retry_after
    else:
        assert answer.error is not None
        assert after.disabled_at == state.disabled_at
        assert after.retry_after == answer.error.retry_after


@given(states, successes, moments, settings)
def test_a_success_clears_the_errors(state: FeedState, answer: Answer, now: datetime,
                                     collect: Collect) -> None:
    after = decide(state, answer, now, collect).feed
    assert after.last_ok == now
    assert (after.last_error, after.error_count, after.error_since, after.retry_after) == (
        None, 0, None, None)


@given(states, successes.filter(lambda answer: answer.articles is None), moments, settings)
def test_a_304_changes_no_article_and_keeps_the_validators_it_does_not_repeat(
        state: FeedState, answer: Answer, now: datetime, collect: Collect) -> None:
    update = decide(state, answer, now, collect)
    assert update.articles == () and update.muted == frozenset()
    assert update.feed.etag == (answer.etag or state.etag)
    assert update.feed.last_modified == (answer.last_modified or state.last_modified)


@given(states, successes.filter(lambda answer: answer.articles is not None), moments, settings)
def test_a_read_feed_brings_its_entries_and_only_a_new_feed_mutes_its_back_catalogue(
        state: FeedState, answer: Answer, now: datetime, collect: Collect) -> None:
    update = decide(state, answer, now, collect)
    assert answer.articles is not None and update.articles == answer.articles
    assert (update.feed.etag, update.feed.last_modified) == (answer.etag, answer.last_modified)
    keys = {article.key for article in answer.articles}
    assert update.muted <= keys
    if state.last_ok is not None or state.articles:
        assert update.muted == frozenset()
    elif collect.first_run:
        assert len(keys - update.muted) == min(collect.first_run, len(keys))


@given(states, failures | successes, moments, settings)
def test_a_permanent_move_is_kept_whatever_came_at_the_new_url(
        state: FeedState, answer: Answer, now: datetime, collect: Collect) -> None:
    assert decide(state, answer, now, collect).feed.moved_to == (answer.moved or state.moved_to)


@given(st.lists(st.tuples(failures | successes, st.integers(1, 600)), max_size=12), settings)
def test_error_since_is_the_first_failure_in_a_row_and_a_success_clears_it(
        run: list[tuple[Answer, int]], collect: Collect) -> None:
    state = FeedState(id=1, url="https://example.com/feed.xml", name="News", etag=None,
                      last_modified=None, last_ok=None, last_error=None, error_count=0,
                      error_since=None, articles=0)
    now, first_failure, in_a_row = datetime(2026, 11, 27, tzinfo=UTC), None, 0
    for answer, minutes in run:
        now += timedelta(minutes=minutes)
        state = decide(state, answer, now, collect).feed
        if answer.error is None:
            first_failure, in_a_row = None, 0
        else:
            first_failure, in_a_row = first_failure or now, in_a_row + 1
        assert (state.error_since, state.error_count) == (first_failure, in_a_row)


# -- feed filters: include, exclude, max_age (the same end to end: test_filters.py) ----------

words = st.sampled_from(["Rust", "python", "SPONSORED", "Podcast", "election", "Ünïcode"])
cased = st.tuples(words, st.sampled_from([str, str.upper, str.lower])).map(
    lambda word_case: word_case[1](word_case[0]))
phrases = st.lists(cased, max_size=3).map(" ".join)
tagged = st.lists(
    st.builds(Article, key=st.text(min_size=1, max_size=4), title=phrases, link=st.none(),
              teaser=phrases, image=st.none(), published=st.none() | moments,
              tags=st.lists(phrases, max_size=2).map(tuple)),
    unique_by=lambda article: article.key, max_size=12).map(tuple)
rules = st.builds(filters.Rules,
                  include=st.lists(words, max_size=2).map(filters.patterns),
                  exclude=st.lists(words, max_size=2).map(filters.patterns),
                  max_age=st.none() | st.sampled_from([timedelta(hours=12), timedelta(days=7)]))


def says(article: Article, found: tuple[re.Pattern[str], ...]) -> bool:
    """The patterns here are plain words: any case of one anywhere is a match."""
    texts = (article.title, article.teaser, *article.tags)
    return any(p.pattern.lower() in text.lower() for p in found for text in texts)


@given(states, st.builds(Answer, articles=tagged), moments, settings, rules)
def test_an_entry_is_held_back_by_the_first_rule_it_breaks_and_only_then(
        state: FeedState, answer: Answer, now: datetime, collect: Collect,
        rule: filters.Rules) -> None:
    update = decide(state, answer, now, collect, rule)
    assert answer.articles is not None and update.articles == answer.articles
    for article in answer.articles:
        old = bool(rule.max_age and article.published and now - article.published > rule.max_age)
        unwanted = bool(rule.include) and not says(article, rule.include)
        expected = (filters.Hold.MAX_AGE if old else filters.Hold.INCLUDE if unwanted
                    else filters.Hold.EXCLUDE if says(article, rule.exclude) else None)
        assert update.held.get(article.key) == expected, article


@given(st.builds(FeedState, id=st.just(1), url=st.just("https://example.com/feed.xml"),
                 name=st.just("News"), etag=st.none(), last_modified=st.none(),
                 last_ok=st.none(), last_error=st.none(), error_count=st.just(0),
                 error_since=st.none(), articles=st.just(0)),
       st.builds(Answer, articles=tagged), moments, settings, rules)
def test_a_new_feeds_first_run_mails_its_newest_entries_that_pass_the_filters(
        state: FeedState, answer: Answer, now: datetime, collect: Collect,
        rule: filters.Rules) -> None:
    update = decide(state, answer, now, collect, rule)
    assert answer.articles is not None
    passed = {article.key for article in answer.articles} - update.held.keys()
    assert update.muted <= passed
    if collect.first_run:
        assert len(passed - update.muted) == min(collect.first_run, len(passed))


@given(states, failures | successes.filter(lambda answer: answer.articles is None), moments,
       settings, rules)
def test_without_entries_read_nothing_is_held(state: FeedState, answer: Answer, now: datetime,
                                               collect: Collect, rule: filters.Rules) -> None:
    assert decide(state, answer, now, collect, rule).held == {}


@given(tagged, moments)
def test_an_undated_entry_is_never_too_old(found: tuple[Article, ...], now: datetime) -> None:
    rule = filters.Rules(max_age=timedelta(0))
    for article in found:
        assert (filters.hold(article, rule, now) is None) == (
            article.published is None or article.published >= now)
