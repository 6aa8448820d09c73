"""The two jobs, composed from the stages.

    collect:  feeds due | fetch (concurrent, polite) | read one at a time (parse, cards)
              | decide | store entries with the validators
              | beside them, for the cards that lack a picture or a teaser: read the article
                page | host each card's picture (see enrich.py)
    send:     finish unfinished editions | claim unmailed articles | render once
              | store edition + ledger | deliver
              (with newsletter.approval: claim | hold; then approve, or the timeout,
              | render once with the editor's choices | store + ledger | deliver)
    demo:     a fresh folder | collect the sample | send through a local sink | a web page

Each feed's failure is a value, recorded on the feed; the others go on. Each stage's records
are frozen; side effects (network, SMTP, disk) happen only in the stages named for them.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError

from digest import (
    cards,
    clock,
    compose,
    deliver,
    enrich,
    feeds,
    filters,
    lock,
    mailboxes,
    returns,
    subscribers,
    tokens,
)
from digest import inbox as inboxes
from digest.compose import Composer, Letter, Rendered, message_id
from digest.config import Collect, Config, Feed, Images, Paths, bundled
from digest.deliver import Pool, Tally
from digest.errors import DigestError
from digest.records import CADENCES, Article, Card, Delivery, Edition, Outcome, Subscriber, View
from digest.sink import Sink
from digest.store import (
    Choice,
    Composed,
    FeedState,
    FeedUpdate,
    Held,
    Inbound,
    Said,
    State,
    Store,
    now,
)
from digest.transport import TransportDown

log = logging.getLogger("digest")
_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FeedReport:
    url: str
    name: str
    new: int = 0
    error: str | None = None
    skipped: str | None = None  # why the feed was not fetched this time (gone, asked to wait)


@dataclass(frozen=True)
class Collected:
    feeds: tuple[FeedReport, ...]

    @property
    def new(self) -> int:
        return sum(feed.new for feed in self.feeds)

    @property
    def failed(self) -> list[FeedReport]:
        return [feed for feed in self.feeds if feed.error]

    @property
    def skipped(self) -> list[FeedReport]:
        return [feed for feed in self.feeds if feed.skipped]


def collect(config: Config, store: Store, stop: threading.Event | None = None,
            clock: Callable[[], datetime] = now) -> Collected:
    """feeds due | fetch (threads, bounded per host) | read, one at a time | decide | store.
    SQLite is written from this thread only; `stop` is checked between feeds.

    Each feed's outcome is in the result, for the caller to report (the command line prints
    it, the scheduler logs it): said here as well, it would be said twice."""
    seen = clock()
    states = {feed.url: (feed, store.feed(feed.url, feed.title)) for feed in config.feeds}
    reports = {url: _not_due(feed, state, seen) for url, (feed, state) in states.items()}
    requests = [feeds.Request(state.fetch_url, state.etag, state.last_modified, url)
                for url, (_, state) in states.items() if reports[url] is None]
    hosts = feeds.Hosts(config.collect.per_host)  # one limit for feeds and pages alike
    with (feeds.client(config.newsletter.public_url, config.collect) as http,
          enrich.Enricher(config, hosts) as enricher):
        for url, (feed, state) in states.items():
            if reports[url] is not None:  # not fetched now: its cards may still want pages
                _look_closer(config, store, enricher, feed, state.id, seen)
        for request, outcome in feeds.fetch_all(http, requests, config.collect, seen, hosts):
            if stop is not None and stop.is_set():
                break  # what was not stored is fetched again next time: nothing is lost
            feed, state = states[request.feed]
            at = clock()
            answer = read(feed.url, outcome, config.newsletter.teaser_length, at)
            update = decide(state, answer, at, config.collect, feed.rules)
            if update.feed.moved_to != state.moved_to:
                log.warning("feed %s moved permanently to %s: fetching it from there from now "
                            "on (update the configuration)", feed.url, update.feed.moved_to)
            new = store.apply(update)
            error = None if answer.error is None else str(answer.error) + (
                ": disabled, not fetched again" if isinstance(answer.error, feeds.Gone) else "")
            reports[feed.url] = FeedReport(feed.url, feed.title, new, error)
            _look_closer(config, store, enricher, feed, state.id, seen)
        logo = config.newsletter.logo
        if config.hosting and logo and store.copy_wanted(logo, seen, enrich.TRIES):
            enricher.download_logo(logo)
        _enrich(config, store, enricher, seen, stop)
    return Collected(tuple(report for report in reports.values() if report is not None))


def _not_due(feed: Feed, state: FeedState, at: datetime) -> FeedReport | None:
    """A report for a feed that is not to be fetched now, or None to fetch it."""
    if state.disabled_at:
        why = (f"gone (HTTP 410) since {state.disabled_at:%Y-%m-%d}; remove it from the "
               f"configuration, or `digest enable {feed.url}` if it is back")
        return FeedReport(feed.url, feed.title, skipped=why)
    if state.retry_after and state.retry_after > at:
        why = f"its server asked us to wait until {state.retry_after:%Y-%m-%d %H:%M} UTC"
        return FeedReport(feed.url, feed.title, skipped=why)
    return None


@dataclass(frozen=True)
class Answer:
    """One fetch of a feed with its entries read: what `decide` weighs."""

    articles: tuple[Article, ...] | None = None  # None: 304 Not Modified, or none read
    etag: str | None = None
    last_modified: str | None = None
    moved: str | None = None  # the new URL, when every redirect on the way was permanent
    error: feeds.FeedError | None = None  # why the fetch failed, or its body could not be read


def read(url: str, outcome: feeds.Fetched | feeds.FeedError, teaser_length: int,
         seen: datetime) -> Answer:
    """The fetch of the feed configured at `url`, its body parsed into articles (one per
    key); a body that is no feed is that feed's error."""
    if isinstance(outcome, feeds.FeedError):
        return Answer(error=outcome)
    if outcome.body is None:
        return Answer(None, outcome.etag, outcome.last_modified, outcome.moved)
    try:
        parsed = feeds.parse(outcome)
    except feeds.FeedError as error:
        return Answer(moved=outcome.moved, error=error)
    if parsed.problem:
        log.info("feed %s is not well-formed, kept what could be read: %s", url, parsed.problem)
    articles = unique([cards.article(entry, outcome.url, teaser_length, seen)
                       for entry in parsed.entries])
    return Answer(tuple(articles), outcome.etag, outcome.last_modified, outcome.moved)


def decide(state: FeedState, answer: Answer, now: datetime, settings: Collect,
           rules: filters.Rules = filters.NONE) -> FeedUpdate:
    """What to record of one fetch of the feed in `state`, read at `now`: pure (no network,
    no database), so its rules are tested directly (tests/test_decide.py).

    An error counts against the feed's health and changes nothing else: its entries and
    validators stand, as a failed fetch never deletes anything; a 410 also disables it. A
    success clears the errors and brings its validators and entries, those the feed's
    `rules` hold back marked with the rule, and of a new feed's others its back catalogue
    muted (so the first run mails the newest that pass the filters). Only an entry's first
    storing heeds the verdicts: a rule changed later never brings back an old story. A
    permanent move is kept whatever came from the new URL (the configured one stays the
    feed's identity, so its articles and history stay with it)."""
    moved, error = answer.moved or state.moved_to, answer.error
    if error is not None:
        gone = isinstance(error, feeds.Gone)
        return FeedUpdate(replace(
            state, moved_to=moved, last_error=str(error), error_count=state.error_count + 1,
            error_since=state.error_since or now, disabled_at=now if gone else state.disabled_at,
            retry_after=state.retry_after if gone else error.retry_after))
    healthy = replace(state, moved_to=moved, last_ok=now, last_error=None, error_count=0,
                      error_since=None, retry_after=None)
    if answer.articles is None:
        # A 304 need not repeat the validators; the stored ones still hold.
        return FeedUpdate(replace(healthy, etag=answer.etag or state.etag,
                                  last_modified=answer.last_modified or state.last_modified))
    held = {article.key: rule for article in answer.articles
            if (rule := filters.hold(article, rules, now)) is not None}
    first_run = state.last_ok is None and state.articles == 0
    passed = [article for article in answer.articles if article.key not in held]
    muted = back_catalogue(passed, settings.first_run) if first_run else frozenset()
    return FeedUpdate(replace(healthy, etag=answer.etag, last_modified=answer.last_modified),
                      answer.articles, muted, held)


# -- enrichment: article pages and hosted pictures, beside the feed fetches ------------------

def _look_closer(config: Config, store: Store, enricher: enrich.Enricher, feed: Feed,
                 feed_id: int, at: datetime) -> None:
    """Ask for the pages of the feed's cards that lack a picture or a teaser (unless the
    feed says not to), and, with hosting, for their pictures."""
    if feed.enrich:
        for wanted in store.pages_wanted(feed_id, at, enrich.TRIES, enrich.FRESH):
            enricher.read(feed_id, feed.url, wanted)
    if config.hosting:
        for url in store.pictures_wanted(feed_id, at, enrich.TRIES):
            enricher.download(url, feed.url)


def _enrich(config: Config, store: Store, enricher: enrich.Enricher, at: datetime,
            stop: threading.Event | None) -> None:
    """Store what the pages and pictures give, as it comes, for at most `collect.deadline`
    after the feeds are done; a page with a picture asks for its download. A page that
    fails only leaves its card as the feed made it, so it is logged, not reported."""
    until = time.monotonic() + config.collect.deadline
    for result in enricher.results(until, stop):
        if isinstance(result, enrich.PageRead):
            link = result.wanted.link
            if result.problem:
                log.debug("page %s: %s", link, result.problem)
                store.page_failed(link, result.problem, at)
                continue
            store.page_read(link, result.facts, result.etag, result.last_modified, at)
            if config.hosting:
                for url in store.pictures_wanted(result.feed_id, at, enrich.TRIES):
                    enricher.download(url, result.feed)
        else:
            if result.problem and result.url == config.newsletter.logo:
                # The logo is the operator's own: its problem is theirs to hear of.
                log.warning("newsletter.logo %s: %s; the mail links it as configured",
                            result.url, result.problem)
            elif result.problem:
                log.debug("picture %s: %s (%s)", result.url, result.problem, result.fate)
            store.save_copy(result, at)


def composer_for(config: Config, store: Store) -> Composer:
    """The templates, and the hosted copy of the logo once collect has made one (until then
    the mail links the configured one)."""
    logo = config.newsletter.logo
    copy = store.copies([logo]).get(logo) if logo and config.hosting else None
    return Composer(config, copy.wide if copy else None)


def dressed(config: Config, store: Store, chosen: list[Card]) -> list[Card]:
    """The cards with what collect found for them: their pages' pictures and teasers, and
    the hosted copies of their pictures."""
    pages = store.pages(card.link for card in chosen if card.link)
    found = [(card, pages.get(card.link or "")) for card in chosen]
    hosted_at = config.images_url if config.hosting else None
    copies = store.copies(picture.url for card, page in found
                          if (picture := enrich.picture(card, page))) if hosted_at else {}
    return [enrich.dress(card, page, copies, hosted_at, config.newsletter.teaser_length)
            for card, page in found]


def unique(articles: list[Article]) -> list[Article]:
    """One article per key, the first the feed lists: feeds that repeat a guid mean one entry,
    and the first is the one they show on top."""
    found: dict[str, Article] = {}
    for article in articles:
        found.setdefault(article.key, article)
    return list(found.values())


def back_catalogue(articles: Iterable[Article], newest: int) -> frozenset[str]:
    """The keys of a new feed's entries beyond its `newest` latest (0: mute none): stored as
    seen, never mailed, so adding a feed with 500 old entries does not flood anyone. Undated
    entries rank after dated ones; entries dated alike keep the feed's order, latest first."""
    if newest <= 0:
        return frozenset()
    ranked = sorted(articles, key=lambda article: article.published or _FAR_PAST, reverse=True)
    return frozenset(article.key for article in ranked[newest:])


@dataclass(frozen=True)
class Sent:
    tallies: tuple[Tally, ...]
    edition: Edition | None  # the new edition, if one was made
    note: str  # why none was made, or what was made, in words
    recovered: int = 0  # rows found `sending` after a crash, now `unknown`
    expired: int = 0  # deferred rows past smtp.deferred_max_age, now `failed`
    held: Held | None = None  # the new edition, made and held for approval

    def count(self, outcome: Outcome) -> int:
        return sum(tally.counts[outcome.value] for tally in self.tallies)

    @property
    def troubled(self) -> bool:
        return bool(self.recovered or self.expired) or any(tally.troubled for tally in self.tallies)


def roster(config: Config, store: Store, quiet: bool = False
           ) -> tuple[list[Subscriber], subscribers.Roster]:
    """Who gets the next edition: the valid rows of the CSV as their subscribers chose on
    their preferences page, less those who paused and the suppressed addresses; and the whole
    reading of the file. Rejected rows are logged unless `quiet` (for a command
    that prints them itself)."""
    names = [feed.title for feed in config.feeds]
    listed = subscribers.read(config.paths.subscribers, names)
    for problem in () if quiet else listed.problems:
        log.warning("%s:%d: skipped: %s", config.paths.subscribers, problem.line, problem.reason)
    chosen = subscribers.preferred(listed.subscribers, store.preferences(), names)
    return subscribers.without(chosen, store.suppressed()), listed


def view(chosen: tuple[str, ...], present: list[str]) -> str | None:
    """Which rendering of an edition a subscriber gets: '' the whole edition, else the key of
    the view made of their sections that have news (in edition order), or None when none has:
    then they get no mail at all rather than an empty digest. Keys are `;`-joined section
    names, the CSV's own separator, so that a key names its sections."""
    if not chosen:
        return ""
    mine = [name for name in present if name in chosen]
    if not mine:
        return None
    return "" if len(mine) == len(present) else ";".join(mine)


def messages(config: Config, store: Store, edition: Edition,
              unsubscribe_url: Callable[[str], str],
              mailto: Callable[[str], str] | None = None) -> Callable[[Delivery], bytes]:
    """Each delivery's bytes, from the Letter of its view (built once per view, on first use)."""
    views = store.edition_views(edition)
    preferences_url = tokens.preferences_links(config)
    letters = {"": Letter(config, edition, unsubscribe_url, mailto, preferences_url)}

    def message_for(delivery: Delivery) -> bytes:
        letter = letters.get(delivery.view)
        if letter is None:
            letter = letters[delivery.view] = Letter(
                config, views.get(delivery.view, edition), unsubscribe_url, mailto,
                preferences_url)
        return letter.bytes_for(delivery)

    return message_for


def _claim(config: Config, store: Store, cadence: str = "daily") -> list[Card]:
    """The next edition's articles. A daily one's past the limit, or past their feed's
    max_per_edition, roll into the one after. A weekly one takes the whole week, newest
    first, whatever the daily editions mailed: the mail shows `max_articles` of them and
    links to its web version for the rest (see `cut`)."""
    urls = [feed.url for feed in config.feeds]
    if cadence == "weekly":
        chosen, _ = store.unmailed(urls, sys.maxsize, cadence, since=_week_from(store))
        chosen.sort(key=lambda card: card.published, reverse=True)
        return dressed(config, store, chosen)
    caps = {feed.url: feed.max_per_edition for feed in config.feeds if feed.max_per_edition}
    chosen, _ = store.unmailed(urls, config.newsletter.max_articles, caps=caps)
    return dressed(config, store, chosen)


# The first weekly edition looks back a week.
WEEK = timedelta(days=7)
# Later ones take what no weekly edition carried, collected since the previous one was made,
# less this margin: an article read just before that edition but stored just after it (the
# collect job runs beside the send job) is in the next one, not lost. Every article older
# than the previous edition that it did not carry is outside its own week anyway.
WEEK_OVERLAP = timedelta(days=1)


def _week_from(store: Store) -> datetime:
    previous = store.latest_made("weekly")
    return store.clock() - WEEK if previous is None else previous - WEEK_OVERLAP


def cut(config: Config, cadence: str, cards: list[Card]) -> tuple[list[Card], int]:
    """The cards an edition's mail shows, and how many more its web version holds: a weekly
    one stops at `newsletter.max_articles` (a daily one was claimed within it)."""
    if cadence != "weekly":
        return cards, 0
    shown = cards[:config.newsletter.max_articles]
    return shown, len(cards) - len(shown)


def preview(config: Config, store: Store) -> Rendered | None:
    """The edition that would go out now, rendered but neither stored nor sent."""
    chosen = _claim(config, store)
    return composer_for(config, store).render(chosen, 0, store.clock()) if chosen else None


def send(config: Config, store: Store, carrier: Pool, period: str | None = None,
         progress: Callable[[Outcome], None] = lambda outcome: None,
         stop: threading.Event | None = None,
         expect: Callable[[int], None] = lambda count: None, new_edition: bool = True,
         cadence: str = "daily") -> Sent:
    """Finish what earlier runs left undelivered, then (unless `new_edition` is false) make
    this period's edition of the `cadence` and deliver it. The transport is opened first:
    with the relay down no row is touched. `expect` hears how many messages each edition is
    about to send (for a progress bar)."""
    composer = composer_for(config, store)  # fails early on a broken template folder
    unsubscribe_url, address_id = tokens.unsubscribe_links(config), tokens.ids(config)
    # With a return path, bounces and mailto unsubscribes name the delivery they answer.
    tokened = returns.returns(config) if config.delivery.return_path else None
    sender = tokened.envelope if tokened else config.newsletter.sender

    recovered = store.recover()
    if recovered:
        log.warning("%d deliveries were in flight when the last run stopped; marked unknown "
                    "(see `digest status`, `digest resend`)", recovered)
    expired = store.expire_deferred(
        store.clock() - timedelta(hours=carrier.policy.deferred_max_age))
    if expired:
        log.warning("%d deliveries still deferred past smtp.deferred_max_age are now failed",
                    expired)
    try:
        carrier.open()
    except TransportDown as error:
        raise DigestError(f"cannot reach {carrier.destination}: {error}; nothing was sent, "
                          "the next run will try again", 1) from None

    def deliver_edition(edition: Edition) -> Tally:
        withheld = store.withhold_suppressed(edition.id)
        if withheld:
            log.info("edition %d: %d addresses unsubscribed since it was made, not mailed",
                     edition.id, len(withheld))
        expect(store.due_count(edition.id))
        store.name_due(edition.id, address_id)  # before any link naming them goes out
        tally = deliver.run(store, edition.id,
                            messages(config, store, edition, unsubscribe_url,
                                     tokened.mailto if tokened else None), carrier,
                            sender, progress, stop)
        if tally.halted:
            log.warning("edition %d: %s", edition.id, tally.halted)
        for email in tally.suppressed:
            log.warning("%s suppressed: hard failures in %d editions in a row", email,
                        carrier.policy.suppress_after_bounces)
        return tally

    edition, held, note = None, None, "stopped before making a new edition"
    try:
        tallies = []
        for number in store.unfinished():
            tallies.append(deliver_edition(store.edition(number)))
            if tallies[-1].halted:
                break
        halted = next((tally.halted for tally in tallies if tally.halted), "")
        if halted:
            note = f"stopped: {halted}"
        elif not new_edition:
            note = "no new edition asked for"
        elif stop is None or not stop.is_set():
            made, note = _make_edition(config, store, composer, period, cadence)
            if isinstance(made, Held):
                held = made
            elif made is not None:
                edition = made
                tallies.append(deliver_edition(edition))
    finally:
        carrier.close()
    return Sent(tuple(tallies), edition, note, recovered, expired, held)


def _make_edition(config: Config, store: Store, composer: Composer, period: str | None,
                  cadence: str = "daily") -> tuple[Edition | Held | None, str]:
    """This period's edition of the cadence, delivered at once, or with newsletter.approval
    held; None and why when none is made."""
    waiting = store.waiting(cadence) if config.newsletter.approval else []
    if waiting:
        return None, (f"edition {waiting[0].id} is held for approval since "
                      f"{waiting[0].held_at:%Y-%m-%d %H:%M} UTC: no new edition until it is "
                      f"approved (`digest approve {waiting[0].id}` or the preview)")
    chosen = _claim(config, store, cadence)
    what = "weekly edition" if cadence == "weekly" else "edition"
    if not chosen:
        return None, f"no new articles since the last {what}: nothing to send"
    if len(chosen) < config.newsletter.min_articles:
        return None, (f"only {len(chosen)} new articles, fewer than newsletter.min_articles = "
                      f"{config.newsletter.min_articles}: no {what}, they wait for the next")
    present = list(dict.fromkeys(card.section for card in chosen))
    count, wanted, recipients = _audience(config, store, present, cadence)
    if not count:
        return None, (f"no {cadence} subscriber in {config.paths.subscribers} gets this "
                      f"{what} (none active and not suppressed, or none whose sections have "
                      "news)")
    when = store.clock()
    # A manual run is its own period; the scheduler passes the slot it fires for.
    key = period or when.astimezone(config.newsletter.zone).isoformat()
    # Its number, printed in it and in its links, is the id the store gives it next: editions
    # are made under the state folder's lock, one process at a time.
    number = store.next_edition()
    if config.newsletter.approval:
        held = Held(number, key, when, tuple(chosen), cadence=cadence)
        if not store.hold(held):
            return None, f"the {what} for {key} exists already"
        return held, (f"{what} {number}: {len(chosen)} articles held for approval "
                      f"(`digest approve {number}` or the preview)")
    composed = _composed(config, composer, chosen, number, key, when, wanted, cadence)
    edition = store.create_edition(composed, recipients(),
                                   lambda subscriber: view(subscriber.sections, present) or "",
                                   _due(config, period))
    if edition is None:
        return None, f"the {what} for {key} exists already"
    return edition, f"{what} {edition.id}: {len(chosen)} articles to {count} subscribers"


def _composed(config: Config, composer: Composer, chosen: list[Card], number: int, key: str,
              when: datetime, wanted: list[str], cadence: str) -> Composed:
    """The edition rendered once for the mail, once for the web, once per partial view."""
    personal = composer.personal(chosen)

    def render(cards: list[Card], fit: bool = True, web: bool = False) -> Rendered:
        shown, more = (cards, 0) if web else cut(config, cadence, cards)
        return composer.render(shown, number, when, more, fit=fit, personal=personal, web=web,
                               cadence=cadence)

    mailed = render(chosen)
    # The web version, where "view in browser" and "N more stories" point, is nobody's
    # copy: a sign-up link in place of the mail's footer, and every card, also those the
    # clipping guard or the weekly cut left out of the mail.
    web = render(chosen, fit=False, web=True).html
    # Once per distinct view, however many subscribers share it.
    views: dict[str, View] = {name: render([c for c in chosen if c.section in name.split(";")])
                              for name in wanted if name}
    return Composed(number, key, when, mailed, web, personal.marker, tuple(chosen), views,
                    cadence)


# -- the editor's hold: approve, or the approval timeout ----------------------------------------

def approve(config: Config, store: Store, number: int, drop: Iterable[int] = (),
            pin: Iterable[int] = (), intro: str | None = None, discard: bool = False,
            clock: Callable[[], datetime] = now) -> Edition:
    """The held edition `number` composed once with the editor's choices (those saved in the
    preview, and `drop`, `pin`, `intro` on top) and its delivery rows made; delivering it is
    the caller's next step (`send`, or the running scheduler's next reconcile). Dropped
    stories go back to the pool, or with `discard` are never mailed. A mistake (no such
    edition, one not held, a story not in it) is a DigestError of status 2."""
    try:
        held = store.holding(number)
    except KeyError:
        raise DigestError(f"edition {number} does not exist (see `digest status`)", 2) from None
    if held is None:
        state = store.state(number)
        raise DigestError(f"edition {number} is not held for approval (it is {state}): "
                          "nothing to approve", 2)
    drop, pin = set(drop), set(pin)
    stories = [card.id for card in held.cards]
    for story in sorted(drop | pin):
        if story not in stories:
            raise DigestError(f"story {story} is not in edition {number} (its stories: "
                              f"{', '.join(map(str, stories))})", 2)
    if drop & pin:
        raise DigestError(f"story {min(drop & pin)}: both --drop and --pin", 2)
    dropped = (held.chosen(Choice.DROP) - pin) | drop
    pinned = (held.chosen(Choice.PIN) - drop) | pin
    if dropped >= set(stories):
        raise DigestError(f"edition {number}: every story is dropped, nothing would be sent", 2)
    edition = _release(config, store, held, _ordered(held, dropped, pinned),
                       held.intro if intro is None else intro,
                       State.APPROVED, clock(), dropped if discard else frozenset())
    if edition is None:
        raise DigestError(f"edition {number} was released meanwhile (approved, or its "
                          "approval timed out)", 2)
    return edition


def deliver_released(config: Config, store: Store,
                     progress: Callable[[Outcome], None] = lambda outcome: None,
                     expect: Callable[[int], None] = lambda count: None) -> Sent | None:
    """Deliver what is due (an edition just approved, say) under the state folder's lock;
    None when a running scheduler holds it: its next reconcile delivers."""
    if lock.holder(config.paths):
        return None
    with lock.held(config.paths, shared=True):
        return send(config, store, deliver.transport(config), progress=progress,
                    expect=expect, new_edition=False)


def as_chosen(config: Config, held: Held) -> tuple[Config, list[Card]]:
    """A held edition as the editor's choices so far make it: the configuration with its
    intro, and its cards (dropped ones out, pinned ones first)."""
    return (with_intro(config, held.intro),
            _ordered(held, held.chosen(Choice.DROP), held.chosen(Choice.PIN)))


def with_intro(config: Config, intro: str | None) -> Config:
    """The configuration with an edition's own intro in place of newsletter.intro (None:
    the configured one). The templates print it escaped; the edition's placeholders are
    drawn not to occur in it, as in any text they are given (see compose.Personal)."""
    if intro is None:
        return config
    return replace(config, newsletter=replace(config.newsletter, intro=intro))


def _ordered(held: Held, dropped: frozenset[int], pinned: frozenset[int]) -> list[Card]:
    """The held edition's cards less the dropped, the pinned first, each group in edition
    order."""
    return sorted((card for card in held.cards if card.id not in dropped),
                  key=lambda card: card.id not in pinned)


@dataclass(frozen=True)
class TimedOut:
    """A held edition past schedule.approval_timeout, and what became of it."""

    held: Held
    edition: Edition | None  # delivered as it was; None: skipped (approval_fallback)
    problem: str = ""  # why it could not be sent as it was (then it stays held)


def timeouts(config: Config, store: Store, moment: datetime,
             cadence: str | None = None) -> list[TimedOut]:
    """The held editions (of one cadence, or all) whose approval timeout has passed at
    `moment`: each composed as it stands (the choices saved so far) with its delivery rows
    made, or with newsletter.approval_fallback = "skip" let pass, its stories back to the
    pool. Nothing when there is no timeout."""
    wait = config.schedule.approval_wait
    if wait is None:
        return []
    done = []
    for held in store.waiting(cadence):
        if moment < held.held_at + wait:
            continue
        _, kept = as_chosen(config, held)
        # Every story dropped: sending it as it is would send nothing.
        if config.newsletter.approval_fallback == "skip" or not kept:
            if store.let_pass(held.id):
                done.append(TimedOut(held, None))
            continue
        try:
            edition = _release(config, store, held, kept, held.intro, State.TIMED_OUT,
                               moment)
        except DigestError as error:
            done.append(TimedOut(held, None, str(error)))
            continue
        if edition is not None:
            done.append(TimedOut(held, edition))
    return done


def _release(config: Config, store: Store, held: Held, chosen: list[Card], intro: str | None,
             state: State, when: datetime, discarded: Iterable[int] = ()) -> Edition | None:
    """A held edition composed with these cards and intro, and its ledger made."""
    config = with_intro(config, intro)
    chosen = dressed(config, store, chosen)
    present = list(dict.fromkeys(card.section for card in chosen))
    count, wanted, recipients = _audience(config, store, present, held.cadence)
    if not count:
        raise DigestError(f"edition {held.id}: no subscriber in {config.paths.subscribers} "
                          "gets it (none active and not suppressed, or none whose sections "
                          "have news)", 1)
    composed = _composed(config, composer_for(config, store), chosen, held.id, held.period,
                         when, wanted, held.cadence)
    return store.release(composed, recipients(),
                         lambda subscriber: view(subscriber.sections, present) or "", state,
                         intro, discarded, _due(config, held.period))


def zone(config: Config, subscriber: Subscriber) -> ZoneInfo:
    """The zone a subscriber's slots are read in: their own, else the newsletter's."""
    return ZoneInfo(subscriber.timezone) if subscriber.timezone else config.newsletter.zone


def _due(config: Config, period: str | None) -> Callable[[Subscriber], datetime | None]:
    """When each subscriber's delivery of a slot's edition becomes due: with
    `newsletter.local_time`, when their own zone reaches the slot; otherwise (and for a
    manual run, which is nobody's slot) at once."""
    if period is None or not config.newsletter.local_time:
        return lambda subscriber: None
    wall = datetime.fromisoformat(period)
    return lambda subscriber: clock.wall_moment(zone(config, subscriber), wall)


def zones(config: Config, store: Store) -> dict[str, set[ZoneInfo]]:
    """By cadence, the zones its active, unsuppressed subscribers read their slots in (the
    newsletter's when there are none): where a local-time slot is reached first. One walk of
    the list for every cadence, streamed: the scheduler asks at each reconcile."""
    _, rows = _chosen(config, store)
    suppressed = {subscribers.key(email) for email in store.suppressed()}
    found: dict[str, set[ZoneInfo]] = {cadence: set() for cadence in CADENCES}
    for row in rows():
        if isinstance(row, Subscriber) and subscribers.key(row.email) not in suppressed:
            found[row.cadence].add(zone(config, row))
    return {cadence: used or {config.newsletter.zone} for cadence, used in found.items()}


def _chosen(config: Config, store: Store) -> tuple[
        subscribers.Listing, Callable[[], Iterator[Subscriber | subscribers.Problem | None]]]:
    """The list, and a walk of its rows as their subscribers chose on their preferences page
    (a paused one is None, as if held in the file)."""
    names = [f.title for f in config.feeds]
    listing = subscribers.Listing(config.paths.subscribers, names)
    preferences = store.preferences()

    def rows() -> Iterator[Subscriber | subscribers.Problem | None]:
        for found in listing.walk():
            yield (subscribers.prefer(found, preferences.get(subscribers.key(found.email)),
                                      names) if isinstance(found, Subscriber) else found)

    return listing, rows


def _audience(config: Config, store: Store, present: list[str], cadence: str = "daily"
              ) -> tuple[int, list[str], Callable[[], Iterator[Subscriber]]]:
    """Who an edition of this cadence with these sections goes to: how many, the views they
    need, and a walk of them (the valid, active, unsuppressed rows of that cadence, as their
    subscribers chose and not paused, with news in their sections).

    The list is walked, never held: a first walk counts and reports bad rows, a second feeds
    the ledger, so memory does not grow with the list."""
    listing, rows = _chosen(config, store)
    suppressed = {subscribers.key(email) for email in store.suppressed()}

    def gets(found: Subscriber | subscribers.Problem | None) -> str | None:
        if (not isinstance(found, Subscriber) or found.cadence != cadence
                or subscribers.key(found.email) in suppressed):
            return None
        return view(found.sections, present)

    count, wanted = 0, dict[str, None]()  # the views, in the order first needed
    for found in rows():
        if isinstance(found, subscribers.Problem):
            log.warning("%s:%d: skipped: %s", listing.path, found.line, found.reason)
        elif (chosen := gets(found)) is not None:
            count += 1
            wanted[chosen] = None

    def walk() -> Iterator[Subscriber]:
        return (found for found in rows()
                if isinstance(found, Subscriber) and gets(found) is not None)

    return count, list(wanted), walk


@dataclass(frozen=True)
class Plan:
    """What `send` would do now, worked out without sending or recording anything."""

    queued: int  # messages still due from earlier editions
    recipients: int  # subscribers a new edition would go to; 0 when none would be made
    articles: int
    compose_seconds: float  # render + inline + text of the new edition, 0 when none

    @property
    def messages(self) -> int:
        return self.queued + self.recipients


def plan(config: Config, store: Store, cadence: str = "daily") -> Plan:
    queued = sum(store.due_count(number) for number in store.unfinished())
    chosen = _claim(config, store, cadence)
    if not chosen:
        return Plan(queued, 0, 0, 0.0)
    started = time.perf_counter()
    shown, more = cut(config, cadence, chosen)
    composer_for(config, store).render(shown, 0, store.clock(), more, cadence=cadence)
    seconds = time.perf_counter() - started
    present = list(dict.fromkeys(card.section for card in chosen))
    return Plan(queued, _audience(config, store, present, cadence)[0], len(chosen), seconds)


def through_sink(config: Config, sink: Sink) -> Config:
    """The configuration with delivery over plain SMTP to a local sink (the demo's)."""
    return replace(config, delivery=replace(config.delivery, transport="smtp"),
                   smtp=replace(config.smtp, host=sink.host, port=sink.port, security="none",
                                username=""))


def as_anyone(config: Config, page: str, marker: str) -> str:
    """A rendering for a person to open, not a subscriber: no placeholders left in it."""
    return compose.anonymous(page, marker,
                             f"{config.newsletter.public_url.rstrip('/')}/subscribe")


# -- the demo: one whole cycle on the embedded defaults, in a folder of its own ----------------

DEMO_FOLDER = "digest-demo"
# Only a folder carrying this file is replaced: the demo never deletes anything else.
DEMO_MARK = "made-by-digest-demo.txt"


@dataclass(frozen=True)
class Demo:
    collected: Collected
    sent: Sent
    maildir: Path  # where the sink wrote the messages
    page: Path | None  # the edition as a browser opens it, when one was made


def demo_config(folder: Path) -> Config:
    """The embedded defaults with everything written under `folder`. Built without reading
    any configuration file, so the demo never touches a real state or list, and never
    mails anyone but the sample list through its own sink."""
    state = folder / "state"
    return Config(
        # Every bundled story: the first-run guard is for real feeds' back catalogues.
        collect=Collect(first_run=0),
        paths=Paths(subscribers=bundled("subscribers.csv"), state=state,
                    templates=bundled("templates"), outbox=folder / "outbox"),
        # The sample's pictures are hosted as a newsletter's are (from the package's copies),
        # and shown from the demo's folder: its page and mail need no network, nor a server.
        images=Images(host=True, url=(state / "images").resolve().as_uri() + "/"),
        # Its links are the demo's own: no secret of the installation's signs them.
        secret=secrets.token_hex(32))


def demo(folder: Path, progress: Callable[[Outcome], None] = lambda outcome: None,
         expect: Callable[[int], None] = lambda count: None) -> Demo:
    """fresh folder | collect the sample feed | send to the sample list through a local SMTP
    sink | write the edition's web page. Each run starts afresh, so its counts are its own."""
    _fresh(folder)
    config = demo_config(folder)
    with lock.held(config.paths), Store(config.paths.database) as store:
        collected = collect(config, store)
        with Sink(config.paths.outbox) as server:
            local = through_sink(config, server)
            sent = send(local, store, deliver.transport(local), progress=progress,
                        expect=expect)
        page = None
        if sent.edition is not None:
            page = folder / f"edition-{sent.edition.id}.html"
            shown = store.web_page(sent.edition.id)
            page.write_text(as_anyone(config, shown.html, shown.marker), encoding="utf-8")
    return Demo(collected, sent, config.paths.outbox, page)


def _fresh(folder: Path) -> None:
    """An empty demo folder: what an earlier demo left there is replaced; a folder the demo
    did not make is refused, never deleted."""
    try:
        if folder.exists():
            if not (folder / DEMO_MARK).is_file():
                raise DigestError(f"{folder} exists and was not made by `digest demo`, which "
                                  "replaces its folder at each run: move it away, or run the "
                                  "demo from another folder")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / DEMO_MARK).write_text(
            "`digest demo` made this folder and replaces it at each run. Its state, outbox "
            "and edition page belong to the demo, never to a newsletter.\n", encoding="utf-8")
    except OSError as error:
        raise DigestError(f"{folder}: cannot make the demo's folder: "
                          f"{error.strerror or error}") from None



# -- what comes back ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Handled:
    """One message `inbox` read, and what became of it."""

    name: str  # the file name, IMAP UID or "-"
    report: inboxes.Report | None  # None: it could not be read
    decision: inboxes.Decision | None
    problem: str = ""  # why it was skipped
    repeated: bool = False  # acted on by an earlier run: nothing done again
    set_aside: bool = False

    @property
    def action(self) -> inboxes.Action:
        return self.decision.action if self.decision else inboxes.Action.IGNORED


def inbox(config: Config, store: Store, mailbox: mailboxes.Mailbox,
          dry_run: bool = False) -> Iterator[Handled]:
    """read (bounded) | classify | match against the ledger | decide | record, then set the
    handled aside. The record comes first: a crash before the move leaves the message to be
    read again and found done, never acted on twice. Nothing is written or moved in a
    dry run."""
    tokened = returns.returns(config)
    limit = config.inbox.max_bytes
    for item in mailbox.items():
        if item.size > limit:
            yield Handled(item.name, None, None, f"{item.size:,} bytes, more than "
                                                 f"inbox.max_bytes = {limit:,}: left where it is")
            continue
        data = mailbox.read(item)
        if data is None:
            continue
        try:
            report = inboxes.classify(inboxes.read(data), data, tokened.addresses)
        except inboxes.Unreadable as error:
            yield Handled(item.name, None, None, f"{error}: left where it is")
            continue
        repeated = store.inbound(report.identity)
        if repeated:
            decision = inboxes.Decision(inboxes.Action.IGNORED,
                                        note="read before: nothing done again")
        else:
            matches = _matches(config, store, tokened, report)
            soft = {match.email: store.soft_bounced(match.email) for match in matches}
            decision = inboxes.decide(report, matches, soft, config.inbox.soft_bounce_limit)
            if not dry_run:
                store.record_inbound(_kept(report, matches, decision))
        aside = report.kind.handled and not dry_run
        if aside:
            mailbox.set_aside(item)
        yield Handled(item.name, report, decision, repeated=repeated, set_aside=aside)


def _matches(config: Config, store: Store, tokened: returns.Returns,
             report: inboxes.Report) -> list[inboxes.Match]:
    """The subscribers a report is about. A return path token names the delivery row
    exactly; the ids of a mailto or of the returned original's unsubscribe link name the
    address; failing those, a recipient the report names is ours if this list mailed it."""
    found: dict[str, inboxes.Match] = {}

    def about(email: str) -> inboxes.Recipient | None:
        """What the report says about `email`: its own recipient block, else its only one."""
        named = [r for r in report.recipients if r.address.lower() == email.lower()]
        return next(iter(named or report.recipients), None)

    for token in report.returns:
        row = tokened.delivery(token, store.named, store.mailed)
        if row is not None:
            found.setdefault(row[0], inboxes.Match(row[0], row[1], about(row[0]),
                                                   "return path"))
    if found or (report.kind is inboxes.Kind.BOUNCE and report.returns):
        return list(found.values())  # a bounce with a token: the token alone decides
    for ident in (*report.mailto, *report.links):
        email = tokened.subscriber(ident, store.named)
        if email is not None:
            how = "mailto" if ident in report.mailto else "unsubscribe link"
            found.setdefault(email, inboxes.Match(email, _edition(config, store, email,
                                                                  report), about(email), how))
    if found or report.kind is inboxes.Kind.UNSUBSCRIBE:
        return list(found.values())  # a mail to the mailto speaks only through its token
    for recipient in report.recipients:
        try:
            email = store.spelling(subscribers.normalise(recipient.address))
        except EmailNotValidError:
            continue
        edition = _edition(config, store, email, report) if email else None
        if email and edition is not None:
            found.setdefault(email, inboxes.Match(email, edition, recipient, "address"))
    return list(found.values())


def _edition(config: Config, store: Store, email: str, report: inboxes.Report) -> int | None:
    """The edition a report about `email` answers: the one whose Message-ID the returned
    original carries, else the latest mailed to it; None if none was."""
    mailed = store.mailed(email)
    domain = config.newsletter.domain
    return next((number for number in mailed
                 if message_id(number, email, domain) == report.original),
                mailed[0] if mailed else None)


def _kept(report: inboxes.Report, matches: list[inboxes.Match],
          decision: inboxes.Decision) -> Inbound:
    said = tuple(Said(m.email, m.edition_id, m.recipient.status if m.recipient else "",
                      bool(m.recipient and m.recipient.hard),
                      m.recipient.diagnostic if m.recipient else report.why)
                 for m in matches)
    return Inbound(report.identity, report.kind.value, decision.action.value, said,
                   tuple((s.email, s.reason, s.evidence) for s in decision.suppress))
