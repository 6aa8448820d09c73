"""The two jobs, composed from the stages.

    collect:  feeds in the config | fetch | parse | cards | store entries, then the validators
    send:     finish unfinished editions | claim unmailed articles | render once
              | store edition + ledger | deliver

Each feed's failure is a value, recorded on the feed; the others go on. Each stage's records
are frozen; side effects (network, SMTP, disk) happen only in the stages named for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace

from digest import cards, deliver, feeds, subscribers, tokens
from digest.compose import Composer, Letter, Rendered
from digest.config import Config
from digest.deliver import Tally, Transport
from digest.errors import DigestError
from digest.records import Card, Edition, Outcome, Subscriber
from digest.store import Store, now

log = logging.getLogger("digest")


@dataclass(frozen=True)
class FeedReport:
    url: str
    name: str
    new: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Collected:
    feeds: tuple[FeedReport, ...]

    @property
    def new(self) -> int:
        return sum(feed.new for feed in self.feeds)

    @property
    def failed(self) -> list[FeedReport]:
        return [feed for feed in self.feeds if feed.error]


def collect(config: Config, store: Store, stop: threading.Event | None = None) -> Collected:
    """Every configured feed, one after the other; `stop` is checked between feeds."""
    reports = []
    with feeds.client(config.newsletter.public_url) as http:
        for feed in config.feeds:
            if stop is not None and stop.is_set():
                break
            reports.append(_collect_one(config, store, http, feed.url, feed.title))
    return Collected(tuple(reports))


def _collect_one(config: Config, store: Store, http, url: str, name: str) -> FeedReport:
    state = store.feed(url, name)
    seen = now()
    try:
        fetched = feeds.fetch(http, url, state.etag, state.last_modified)
        if fetched.body is None:
            store.feed_ok(state.id, state.etag, state.last_modified, seen)
            return FeedReport(url, name)
        parsed = feeds.parse(fetched)
    except feeds.FeedError as error:
        store.feed_failed(state.id, str(error), seen)
        log.warning("feed %s: %s", url, error)
        return FeedReport(url, name, error=str(error))
    if parsed.problem:
        log.info("feed %s is not well-formed, kept what could be read: %s", url, parsed.problem)
    articles = [cards.article(entry, fetched.url, config.newsletter.teaser_length, seen)
                for entry in parsed.entries]
    new = store.save_articles(state.id, articles, seen)
    # Only now that the entries are committed: a crash before this costs a refetch, not mail.
    store.feed_ok(state.id, fetched.etag, fetched.last_modified, seen)
    return FeedReport(url, name, new)


@dataclass(frozen=True)
class Sent:
    tallies: tuple[Tally, ...]
    edition: Edition | None  # the new edition, if one was made
    note: str  # why none was made, or what was made, in words
    recovered: int = 0  # rows found `sending` after a crash, now `unknown`

    def count(self, outcome: Outcome) -> int:
        return sum(tally.counts[outcome.value] for tally in self.tallies)

    @property
    def troubled(self) -> bool:
        return bool(self.recovered) or any(tally.troubled for tally in self.tallies)


def roster(config: Config, store: Store) -> tuple[list[Subscriber], subscribers.Roster]:
    """Who gets the next edition: the valid rows of the CSV, less the suppressed addresses."""
    listed = subscribers.read(config.paths.subscribers)
    for problem in listed.problems:
        log.warning("%s:%d: skipped: %s", config.paths.subscribers, problem.line, problem.reason)
    suppressed = store.suppressed()
    return [s for s in listed.subscribers if s.email not in suppressed], listed


def _claim(config: Config, store: Store) -> list[Card]:
    """The next edition's articles; those past the limit roll into the one after."""
    chosen, _ = store.unmailed([feed.url for feed in config.feeds],
                               config.newsletter.max_articles)
    return chosen


def preview(config: Config, store: Store) -> Rendered | None:
    """The edition that would go out now, rendered but neither stored nor sent."""
    chosen = _claim(config, store)
    return Composer(config).render(chosen, 0, now()) if chosen else None


def send(config: Config, store: Store, carrier: Transport, period: str | None = None,
         progress: Callable[[Outcome], None] = lambda outcome: None,
         stop: threading.Event | None = None, new_edition: bool = True) -> Sent:
    """Finish what earlier runs left undelivered, then (unless `new_edition` is false) make
    this period's edition and deliver it. The transport is opened first: with the relay down
    no row is touched."""
    composer = Composer(config)  # fails early on a broken template folder
    secret = tokens.secret(config.secret, config.paths.state)
    public = config.newsletter.public_url.rstrip("/")
    list_id = config.newsletter.list_id

    def unsubscribe_url(email: str) -> str:
        return f"{public}/unsubscribe/{tokens.sign(secret, list_id, email)}"

    recovered = store.recover()
    if recovered:
        log.warning("%d deliveries were in flight when the last run stopped; marked unknown "
                    "(see `digest status`, `digest resend`)", recovered)
    destination = deliver.where(config)
    try:
        carrier.open()
    except deliver.TransportDown as error:
        raise DigestError(f"cannot reach {destination}: {error}; nothing was sent, "
                          "the next run will try again", 1) from None
    def deliver_edition(edition: Edition) -> Tally:
        letter = Letter(config, edition, unsubscribe_url)
        return deliver.run(store, edition.id, letter.bytes_for, carrier,
                           config.newsletter.sender, destination, progress, stop)

    edition, note = None, "stopped before making a new edition"
    try:
        tallies = [deliver_edition(store.edition(number)) for number in store.unfinished()]
        if not new_edition:
            note = "no new edition asked for"
        elif stop is None or not stop.is_set():
            edition, note = _make_edition(config, store, composer, period)
            if edition is not None:
                tallies.append(deliver_edition(edition))
    finally:
        carrier.close()
    return Sent(tuple(tallies), edition, note, recovered)


def _make_edition(config: Config, store: Store, composer: Composer,
                  period: str | None) -> tuple[Edition | None, str]:
    chosen = _claim(config, store)
    if not chosen:
        return None, "no new articles since the last edition: nothing to send"
    if len(chosen) < config.newsletter.min_articles:
        return None, (f"only {len(chosen)} new articles, fewer than newsletter.min_articles = "
                      f"{config.newsletter.min_articles}: no edition, they wait for the next")
    recipients, _ = roster(config, store)
    if not recipients:
        return None, f"no subscribers to send to in {config.paths.subscribers}"
    when = now()
    # A manual run is its own period; the scheduler passes the slot it fires for.
    key = period or when.astimezone(config.newsletter.zone).isoformat()
    edition = store.create_edition(
        key, lambda edition_id: astuple(composer.render(chosen, edition_id, when)),
        chosen, recipients)
    if edition is None:
        return None, f"the edition for {key} exists already"
    return edition, (f"edition {edition.id}: {len(chosen)} articles "
                     f"to {len(recipients)} subscribers")


def with_transport(config: Config, **smtp: object) -> Config:
    """The configuration with SMTP delivery pointed elsewhere (the demo's embedded sink)."""
    return replace(config, delivery=replace(config.delivery, transport="smtp"),
                   smtp=replace(config.smtp, **smtp))

