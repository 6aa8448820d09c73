"""What `digest status` tells an operator, as one record: feeds' health, the last editions
with their delivery counts, subscribers, the scheduler's next runs, and what needs attention.
Built from the state at a given moment; the command line renders it, `--json` serialises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from digest import jobs, lock, scheduling
from digest.config import Config
from digest.filters import Hold
from digest.records import CADENCES
from digest.store import EditionSummary, FeedState, Held, Refusals, State, Store

# A feed failing this long is down, not having a bad moment.
FEED_DOWN = timedelta(hours=24)


@dataclass(frozen=True)
class FeedStatus:
    feed: FeedState  # id 0: configured, not collected yet
    state: str  # "ok", or those that apply of new, failing, disabled, waiting, moved
    notes: tuple[str, ...]  # what to tell beyond the table and the attention list
    # How many of its articles each filter rule held back, every rule named (0 for none).
    held: dict[Hold, int]

    @property
    def states(self) -> tuple[str, ...]:
        """The words of `state` one by one."""
        return tuple(self.state.split("; "))

    def as_json(self) -> dict[str, Any]:
        f = self.feed
        return {"url": f.url, "name": f.name, "articles": f.articles,
                "last_ok": _iso(f.last_ok), "last_error": f.last_error,
                "error_count": f.error_count, "error_since": _iso(f.error_since),
                "state": self.state, "moved_to": f.moved_to,
                "disabled_at": _iso(f.disabled_at), "retry_after": _iso(f.retry_after),
                "held": {str(rule): count for rule, count in self.held.items()}}


@dataclass(frozen=True)
class StatusReport:
    feeds: tuple[FeedStatus, ...]
    editions: tuple[EditionSummary, ...]  # the last ones of each cadence, newest first
    returned: dict[int, dict[str, int]]  # per edition: hard and soft bounces, complaints
    active: int  # subscribers the next edition goes to
    cadences: dict[str, int]  # of those, how many get each cadence
    suppressed: int
    suppressed_by_reason: dict[str, int]
    rejected_rows: int
    pid: int | None  # the process at work on the state folder (the scheduler), if any
    runs: tuple[scheduling.NextRun, ...]
    attention: tuple[str, ...]  # what an operator must look at; status exits 1 while any
    held: tuple[Held, ...] = ()  # editions waiting for approval, oldest first

    def as_json(self) -> dict[str, Any]:
        return {
            "feeds": [feed.as_json() for feed in self.feeds],
            "editions": [{"id": e.id, "cadence": e.cadence, "period": e.period,
                          "created_at": _iso(e.created_at),
                          "subject": e.subject, "articles": e.articles, "deliveries": e.counts,
                          "returns": self.returned[e.id], "state": str(e.state),
                          "held_at": _iso(e.held_at)}
                         for e in self.editions],
            "held": [{"id": h.id, "period": h.period, "held_at": _iso(h.held_at),
                      "intro": h.intro,
                      "stories": [{"id": card.id, "title": card.title, "section": card.section,
                                   "choice": h.choices.get(card.id)} for card in h.cards]}
                     for h in self.held],
            "subscribers": {"active": self.active, "cadences": self.cadences,
                            "suppressed": self.suppressed,
                            "suppressed_by_reason": self.suppressed_by_reason,
                            "rejected_rows": self.rejected_rows},
            "scheduler": {"pid": self.pid,
                          "next": [{"job": run.job, "schedule": run.schedule,
                                    "at": _iso(run.at), "problem": run.problem}
                                   for run in self.runs]},
            "attention": list(self.attention),
        }


def status(config: Config, store: Store, moment: datetime) -> StatusReport:
    """The report as of `moment`: the state file, the subscriber list, the lock, the config's
    schedules. Nothing is written."""
    feeds = _feeds(config, store)
    # Each cadence's last editions: a week of dailies must not hide the weekly ones.
    editions = sorted((e for cadence in CADENCES for e in store.editions(cadence=cadence)),
                      key=lambda e: e.id, reverse=True)
    listed, roster = jobs.roster(config, store)
    cadences = {cadence: sum(s.cadence == cadence for s in listed) for cadence in CADENCES}
    runs = scheduling.next_runs(config, moment)
    pid = lock.holder(config.paths)
    numbers = [e.id for e in editions]
    returned, refused = store.returned(numbers), store.refusals(numbers)
    held = store.waiting()
    return StatusReport(
        _statuses(feeds, store, moment), tuple(editions), returned,
        len(listed), cadences, len(store.suppressed()), store.suppressed_by_reason(),
        len(roster.problems), pid, tuple(runs),
        tuple(attention(feeds, editions, moment, runs, busy=pid is not None)
              + returns_attention(editions, returned, refused) + waiting(config, held)),
        tuple(held))


def waiting(config: Config, held: Sequence[Held]) -> list[str]:
    """Editions held for approval: since when, and what happens at the timeout."""
    wait = config.schedule.approval_wait
    fate = "sent as it is" if config.newsletter.approval_fallback == "send" else "skipped"
    return [f"edition {h.id} held for approval since {when(h.held_at)}: "
            + (f"{fate} at {when(h.held_at + wait)} (schedule.approval_timeout = "
               f"{config.schedule.approval_timeout}) unless approved before"
               if wait is not None else "it waits (no schedule.approval_timeout)")
            + f"; `digest approve {h.id}` or the preview sends it" for h in held]


# How `status` names an edition's state beside its delivery counts.
STATE_WORDS = {State.MAILED: "", State.HELD: "held for approval", State.APPROVED: "approved",
               State.TIMED_OUT: "sent as it was at the approval timeout",
               State.SKIPPED: "skipped at the approval timeout"}


def feed_statuses(config: Config, store: Store, moment: datetime) -> tuple[FeedStatus, ...]:
    """Every feed's health as of `moment`, as `status` reports it (and /metrics exposes it)."""
    return _statuses(_feeds(config, store), store, moment)


def _statuses(feeds: list[FeedState], store: Store, moment: datetime) -> tuple[FeedStatus, ...]:
    held = store.held()
    return tuple(_feed_status(feed, moment, held.get(feed.url, {})) for feed in feeds)


def _feeds(config: Config, store: Store) -> list[FeedState]:
    """Every feed the state knows, then each configured feed it has not seen yet (`new`)."""
    known = store.feeds()
    seen = {feed.url for feed in known}
    return known + [FeedState(id=0, url=feed.url, name=feed.title)
                    for feed in config.feeds if feed.url not in seen]


def _failing(feed: FeedState, moment: datetime) -> bool:
    """Down for a day, or never fetched successfully at all: a feed that has never worked (a
    wrong URL, a page that is no feed) is not having a bad moment either."""
    if not feed.error_count or feed.error_since is None:
        return False
    return feed.last_ok is None or moment - feed.error_since >= FEED_DOWN


def attention(feeds: Sequence[FeedState], editions: Sequence[EditionSummary], moment: datetime,
              runs: Sequence[scheduling.NextRun] = (), busy: bool = False) -> list[str]:
    """What an operator must look at. Each kind of trouble is one of the lists added up here.
    `busy`: a process is at work on the state folder, so rows `sending` are in flight, not in
    doubt."""
    return ([f"feed {f.url} failing since {when(f.error_since)}: {f.last_error}"
             for f in feeds if _failing(f, moment)]
            + _edition_problems(editions, busy) + [run.problem for run in runs if run.problem])


def _edition_problems(editions: Sequence[EditionSummary], busy: bool) -> list[str]:
    """Editions whose last run stopped on an error, with deliveries that failed or are in
    doubt (`sending` while no process is at work): the operator decides."""
    problems = []
    for e in editions:
        if e.fault:
            problems.append(f"edition {e.id}: its last run stopped on an error: {e.fault}")
        stuck = {s: e.counts[s] for s in ("failed", "unknown") if e.counts.get(s)}
        if e.counts.get("sending") and not busy:
            # In flight when a run stopped short: the next send marks them unknown.
            stuck["in doubt (left sending)"] = e.counts["sending"]
        if stuck:
            counts = ", ".join(f"{n} {s}" for s, n in stuck.items())
            problems.append(f"edition {e.id}: {counts} (see `digest resend {e.id} --help`)")
    return problems


# Gmail's and Yahoo's bulk-sender rules: complaints under 0.3%. Past 5% hard bounces a list
# is old or bought, and providers treat its sender as such.
COMPLAINT_RATE = 0.003
HARD_BOUNCE_RATE = 0.05
# This many addresses at one provider refusing an edition for reasons not theirs (spam,
# policy, blocklist): the provider is refusing the sending.
REFUSAL_RUN = 3


def returns_attention(editions: Sequence[EditionSummary], returned: dict[int, dict[str, int]],
                      refused: Sequence[Refusals]) -> list[str]:
    """Editions that came back badly: complaints or hard bounces over the rates providers
    hold senders to, or a provider refusing many of its messages."""
    problems = []
    for e in editions:
        mailed = e.counts.get("sent", 0) + e.counts.get("bounced", 0)
        back = returned[e.id]
        if mailed and back["complaints"] / mailed > COMPLAINT_RATE:
            problems.append(f"edition {e.id}: {back['complaints']} complaints from {mailed} "
                            f"mailed ({back['complaints'] / mailed:.1%}, over "
                            f"{COMPLAINT_RATE:.1%}): those who complain are suppressed; ask "
                            "why they did not unsubscribe instead")
        if mailed and back["hard"] / mailed > HARD_BOUNCE_RATE:
            problems.append(f"edition {e.id}: {back['hard']} hard bounces from {mailed} "
                            f"mailed ({back['hard'] / mailed:.1%}, over "
                            f"{HARD_BOUNCE_RATE:.0%}): the list has dead addresses")
    for run in refused:
        if run.addresses >= REFUSAL_RUN:
            problems.append(f"edition {run.edition_id}: {run.domain} refused {run.addresses} "
                            f"messages for reasons not the addresses' (e.g. {run.status}): "
                            "check the sending (reputation, authentication, content)")
    return problems


def reasons(by_reason: dict[str, int]) -> str:
    """Suppressions by reason, in words: "3 unsubscribed, 1 bounce"."""
    return ", ".join(f"{n} {reason}" for reason, n in by_reason.items())


def _feed_status(feed: FeedState, moment: datetime, held: dict[Hold, int]) -> FeedStatus:
    notes: dict[str, str | None] = {}  # the state's words, and what to say of each
    if feed.last_ok is None and not feed.error_count:
        notes["new"] = "not collected yet"
    if _failing(feed, moment):
        notes["failing"] = None  # the attention list says it
    if feed.disabled_at:
        notes["disabled"] = (f"disabled: gone since {when(feed.disabled_at)} "
                             f"(`digest enable {feed.url}` once it is back)")
    if feed.retry_after and feed.retry_after > moment:
        notes["waiting"] = f"waiting until {when(feed.retry_after)}, as its server asked"
    if feed.moved_to:
        notes["moved"] = (f"moved to {feed.moved_to} (fetched from there; update the "
                          "configuration)")
    counts = {rule: held.get(rule, 0) for rule in Hold}
    said = [f"{count} by {rule}" for rule, count in counts.items() if count]
    told = (*filter(None, notes.values()), *(
        [f"held back, never mailed: {', '.join(said)}"] if said else []))
    return FeedStatus(feed, "; ".join(notes) or "ok", told, counts)


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
