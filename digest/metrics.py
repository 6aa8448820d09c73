"""What `digest serve` answers at /metrics, in Prometheus' text format.

Every value is read from the state database when Prometheus scrapes, in one read snapshot,
never counted in this process's memory: the sender, the scheduler and `digest inbox` run in
processes of their own (on other machines, later), and the numbers must be right whichever
of them did the work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from digest import lock, report
from digest.config import Config
from digest.store import Store, now

# The newest editions whose deliveries and returns are exposed: older ones no longer change
# much, and each edition is a set of series Prometheus keeps.
EDITIONS = 10
# The words of report.FeedStatus.state, each exposed for every feed (0 or 1).
FEED_STATES = ("ok", "new", "failing", "disabled", "waiting", "moved")
# A run sends a message every second or so (unless smtp.rate is set far lower); a pause this
# long between two of an edition's messages separates two runs (a later run retrying the
# deferred rows, say).
RUN_GAP = timedelta(minutes=5)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed(networks: Iterable[Network], client: str) -> bool:
    """Whether `client` (an address as the server names it) is in one of `networks`. An IPv4
    client of a dual-stack socket shows as ::ffff:a.b.c.d: it is compared as a.b.c.d."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:  # "unknown": no peer address (a Unix socket)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


@dataclass(frozen=True)
class Run:
    """The messages of a run and the whole seconds from its first to its last, both counted:
    the ledger times rows to the second."""

    messages: int
    seconds: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def last_run(sent: Sequence[tuple[datetime, int]], gap: timedelta = RUN_GAP) -> Run | None:
    """The last run among an edition's messages, counted per second, newest first: back from
    the newest second until a pause longer than `gap`."""
    if not sent:
        return None
    end = start = sent[0][0]
    messages = 0
    for moment, count in sent:
        if start - moment > gap:
            break
        start, messages = moment, messages + count
    return Run(messages, int((end - start).total_seconds()) + 1)


class StateCollector(Collector):
    """Reads the state database at each scrape (see the module's docstring)."""

    def __init__(self, config: Config, clock: Callable[[], datetime] = now) -> None:
        self.config = config
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        moment = self.clock()
        with Store(self.config.paths.database) as store, store.snapshot():
            feeds = report.feed_statuses(self.config, store, moment)
            editions = store.archived(EDITIONS)  # newest first
            numbers = [edition.id for edition in editions]
            counts, returned = store.delivery_counts(numbers), store.returned(numbers)
            by_reason = store.suppressed_by_reason()
            in_flight = store.in_flight()
            sending = next((n for n in numbers if counts[n]["sent"]), None)
            run = last_run(store.sent_per_second(sending)) if sending else None
        holder = lock.holder(self.config.paths)

        deliveries = GaugeMetricFamily(
            "digest_deliveries", f"Delivery rows of each of the {EDITIONS} newest editions, "
            "by status", labels=["edition", "status"])
        bounces = GaugeMetricFamily("digest_bounces", "Addresses that bounced each edition, "
                                    "hard or soft (digest inbox)", labels=["edition", "kind"])
        complaints = GaugeMetricFamily("digest_complaints", "Addresses that reported each "
                                       "edition as spam (digest inbox)", labels=["edition"])
        # Every status, zeros too, so that an alert on one (`unknown`) has a series to watch.
        for number in numbers:
            for status, count in counts[number].items():
                deliveries.add_metric([str(number), status], count)
            for kind in ("hard", "soft"):
                bounces.add_metric([str(number), kind], returned[number][kind])
            complaints.add_metric([str(number)], returned[number]["complaints"])
        yield from (deliveries, bounces, complaints)

        yield GaugeMetricFamily("digest_deliveries_in_flight", "Rows `sending` in any edition: "
                                "offered to the relay, its answer not recorded yet",
                                value=in_flight)
        yield GaugeMetricFamily("digest_sender_running", "1 while a process holds the state "
                                "folder's lock (the scheduler at work); rows `sending` "
                                "without one are in doubt", value=int(holder is not None))
        # A bounce read later re-times its row: the run counts the rows still `sent`.
        yield GaugeMetricFamily("digest_last_run_messages", "Messages the relay took in the "
                                "last run of the newest edition that sent any (not counting "
                                "those that bounced since)",
                                value=run.messages if run else 0)
        yield GaugeMetricFamily("digest_last_run_messages_per_second", "Their rate, from the "
                                "first to the last of them (whole seconds of the ledger)",
                                value=run.rate if run else 0)

        state = GaugeMetricFamily("digest_feed_state", "1 for each state a feed is in (as "
                                  "`digest status` says: failing = down for a day, or never "
                                  "read), else 0", labels=["feed", "name", "state"])
        failures = GaugeMetricFamily("digest_feed_consecutive_failures", "Failed fetches of "
                                     "the feed since its last good one", labels=["feed", "name"])
        for feed in feeds:
            for word in FEED_STATES:
                state.add_metric([feed.feed.url, feed.feed.name, word],
                                 int(word in feed.states))
            failures.add_metric([feed.feed.url, feed.feed.name], feed.feed.error_count)
        yield from (state, failures)

        suppressions = GaugeMetricFamily("digest_suppressions", "Addresses never mailed again, "
                                         "by reason", labels=["reason"])
        for reason, count in by_reason.items():
            suppressions.add_metric([reason], count)
        yield suppressions

        if editions:
            latest = editions[0].created_at
            yield GaugeMetricFamily("digest_latest_edition_age_seconds", "Seconds since the "
                                    "newest edition was made",
                                    value=(moment - latest).total_seconds())


def registry(config: Config, clock: Callable[[], datetime] = now) -> CollectorRegistry:
    """A registry of its own, holding only the state's numbers (none of this process's)."""
    registered = CollectorRegistry(auto_describe=False)
    registered.register(StateCollector(config, clock))
    return registered
