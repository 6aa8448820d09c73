"""Delivery: the ledger loop that drives the transports (digest.transport).

The ledger loop commits a row `sending` before the transaction and its outcome right after the
reply, so a crash leaves at most one row in doubt per connection, never a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr

from digest.config import Config, Smtp
from digest.errors import DigestError
from digest.records import Delivery, Outcome, Result, Status
from digest.store import UNDELIVERED, Settled, Store
from digest.transport import MaildirTransport, SmtpTransport, Transport, TransportDown

log = logging.getLogger(__name__)

# 4xx replies and lost connections are tried again on the next run, a little later each time.
RETRY_BASE = timedelta(minutes=5)
# A running edition looks for new opt-outs this often (seconds), looking back past its last
# look by a margin: an opt-out is stamped before it is committed, and may wait for the lock.
OPT_OUTS_EVERY = 1.0
OPT_OUTS_MARGIN = timedelta(minutes=1)


class Bucket:
    """A token bucket shared by the connections: `rate` messages per second overall, with
    at most one second's worth in a burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.tokens = 1.0
        self.at = time.monotonic()

    def wait(self, stop: _Either) -> bool:
        """Take a token, sleeping as long as needed; False if told to stop meanwhile."""
        if not self.rate:
            return not stop.is_set()
        while True:
            with self.lock:
                moment = time.monotonic()
                self.tokens = min(max(self.rate, 1.0),
                                  self.tokens + (moment - self.at) * self.rate)
                self.at = moment
                if self.tokens >= 1:
                    self.tokens -= 1
                    return not stop.is_set()
                pause = (1 - self.tokens) / self.rate
            if stop.wait(pause):
                return False


class Pool:
    """`size` transports of one kind, one per delivery thread, and what they share: the policy
    (the [smtp] settings: how hard to push, when to give up), the rate bucket, the hourly cap."""

    def __init__(self, make: Callable[[], Transport], size: int, policy: Smtp,
                 destination: str) -> None:
        self.make = make
        self.size = size
        self.policy = policy
        self.destination = destination
        self.bucket = Bucket(policy.rate)
        self.budget: int | None = None  # messages left under the hourly cap, once counted
        self.transports: list[Transport] = []

    def open(self) -> None:
        """Open the first connection: with the relay down, no row has been touched yet."""
        first = self.make()
        first.open()
        self.transports = [first]

    def transport(self, number: int) -> Transport:
        while len(self.transports) <= number:
            self.transports.append(self.make())
        return self.transports[number]

    def close(self) -> None:
        for carrier in self.transports:
            carrier.close()
        self.transports = []


def transport(config: Config) -> Pool:
    if config.delivery.transport == "smtp":
        return Pool(lambda: SmtpTransport(config.smtp), config.smtp.connections, config.smtp,
                    where(config))
    # One writer into the Maildir: it is for editors and tests, speed is no concern.
    return Pool(lambda: MaildirTransport(config.paths.outbox), 1,
                replace(config.smtp, rate=0, hourly_cap=0), where(config))


def send_one(config: Config, recipient: str, message: bytes) -> Result:
    """One message outside any edition's ledger (a sign-up confirmation, an editor's test),
    through the configured transport. Raises TransportDown when the relay cannot be reached."""
    pool = transport(config)
    try:
        pool.open()
        return pool.transport(0).send(parseaddr(config.newsletter.sender)[1], recipient,
                                      message)
    finally:
        pool.close()


def where(config: Config) -> str:
    if config.delivery.transport == "smtp":
        return f"SMTP relay {config.smtp.host}:{config.smtp.port}"
    return f"Maildir {config.paths.outbox}"


@dataclass(frozen=True)
class Tally:
    edition_id: int
    counts: Counter[Status]
    seconds: float
    halted: str = ""  # why the run stopped before the edition's end, if it did
    suppressed: tuple[str, ...] = ()  # addresses suppressed after repeated hard failures

    @property
    def troubled(self) -> int:
        return sum(self.counts[o.value] for o in (Outcome.DEFERRED, Outcome.FAILED))


class _Run:
    """One edition through the pool: one thread per connection, each taking the next due
    row from a shared stream. The ledger is one SQLite connection under a lock: its commits
    are microseconds against milliseconds on the wire, and one writer never waits on
    SQLite's busy handler. (A feeder thread and a queue between them cost more in thread
    hand-offs than they saved.)"""

    def __init__(self, store: Store, edition_id: int, message_for: Callable[[Delivery], bytes],
                 pool: Pool, sender: str | Callable[[Delivery], str],
                 progress: Callable[[Outcome], None], stop: threading.Event | None) -> None:
        self.store, self.edition_id, self.message_for = store, edition_id, message_for
        self.pool, self.policy = pool, pool.policy
        # MAIL FROM: one address for all, or each row's own return path (see returns.py).
        address = "" if callable(sender) else parseaddr(sender)[1]
        self.envelope = sender if callable(sender) else lambda delivery: address
        self.progress = progress
        self.stop = stop or threading.Event()
        self.halt = threading.Event()  # set by the run itself: pause, cap, relay gone
        self.either = _Either(self.stop, self.halt)
        self.lock = threading.Lock()
        self.due = store.due(edition_id)
        self.looked, self.since = -OPT_OUTS_EVERY, store.clock() - OPT_OUTS_MARGIN  # look at once
        self.opted_out: set[str] = set()  # seen since the run began
        self.withheld: set[str] = set()  # their rows, never to be offered in this run
        self.counts: Counter[Status] = Counter()
        self.failed: list[str] = []
        self.streak = 0
        self.halted = ""
        self.down: TransportDown | None = None
        self.fault = ""  # why a delivery thread broke off, if one did: the run stops

    def __call__(self) -> Tally:
        started = time.monotonic()
        workers = [threading.Thread(target=self._work, args=(number,), daemon=True,
                                    name=f"deliver-{number}") for number in range(self.pool.size)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if self.fault:
            raise DigestError(self._broken_off(), 1)
        self.store.note_fault(self.edition_id, None)  # this run went without one
        suppressed: list[str] = []
        if self.failed and self.policy.suppress_after_bounces:
            suppressed = self.store.suppress_bounced(self.failed,
                                                     self.policy.suppress_after_bounces)
        if self.down is not None:
            raise DigestError(f"cannot reach {self.pool.destination}: {self.down}; "
                              "undelivered mail stays queued for the next run", 1)
        return Tally(self.edition_id, self.counts, time.monotonic() - started, self.halted,
                     tuple(suppressed))

    def _halt(self, why: str) -> None:
        """Called with the lock held."""
        self.halted = self.halted or why
        self.halt.set()

    def _work(self, number: int) -> None:
        carrier = self.pool.transport(number)
        done: Settled | None = None  # an outcome not yet committed
        try:
            while True:
                with self.lock:
                    if done is not None:
                        self._count(done)
                    delivery = None if self.either.is_set() else self._next()
                    allowed = delivery is not None and self._within_cap()
                if done is not None:
                    self.progress(done.result.outcome)
                if not allowed or not self.pool.bucket.wait(self.either):
                    break
                assert delivery is not None
                message = self.message_for(delivery)
                with self.lock:
                    self.store.step(done, delivery)
                done = None
                done = self._deliver(carrier, delivery, message)
        except Exception as error:  # whatever it is, the run stops and says why
            self._broke(error)
        finally:
            if done is not None:
                try:
                    with self.lock:
                        self.store.step(done, None)
                except Exception as error:
                    self._broke(error)

    def _broke(self, error: Exception) -> None:
        """A delivery thread cannot go on: every thread stops after its message in flight.
        The ledger still keeps its promise: the row in flight here stays `sending` (in
        doubt), the rest stay pending."""
        if isinstance(error, DigestError):  # the machine's: a full disk, a damaged file
            why = str(error)
        else:  # a bug of ours: its traceback is for the log
            log.error("delivery thread %s failed", threading.current_thread().name,
                      exc_info=error)
            why = f"{type(error).__name__}: {error}"
        with self.lock:
            self.fault = self.fault or why
        self.halt.set()

    def _broken_off(self) -> str:
        """The run's fault in one line, also noted on the edition for `digest status`, when
        the state can still be written (a full disk may not let it: then the rows left
        `sending` show it)."""
        with contextlib.suppress(DigestError):
            self.store.note_fault(self.edition_id, self.fault)
        left = ""
        with contextlib.suppress(DigestError):
            counts = self.store.counts(self.edition_id)
            left = (f"; {counts.get(Status.SENDING, 0)} in doubt, "
                    f"{sum(counts.get(s, 0) for s in UNDELIVERED)} left for the next run")
        return (f"delivery of edition {self.edition_id} stopped: {self.fault}{left} "
                "(see `digest status`)")

    def _next(self) -> Delivery | None:
        """The next due row whose address has not opted out meanwhile; lock held. Opt-outs
        are looked for once a second, not once a message: rows already read ahead are
        skipped, the others are withheld in the ledger."""
        moment = time.monotonic()
        if moment - self.looked >= OPT_OUTS_EVERY:
            self.looked, since = moment, self.store.clock() - OPT_OUTS_MARGIN
            fresh = self.store.opted_out_since(self.since) - self.opted_out
            if fresh:
                self.opted_out |= fresh
                withheld = self.store.withhold_suppressed(self.edition_id, self.since)
                self.withheld.update(withheld)
                log.info("edition %d: %d addresses unsubscribed during the run, not mailed",
                         self.edition_id, len(withheld))
            self.since = since
        return next((row for row in self.due if row.email not in self.withheld), None)

    def _within_cap(self) -> bool:
        """The hourly cap, counted once from the ledger, then in memory; lock held."""
        if not self.policy.hourly_cap:
            return True
        if self.pool.budget is None:
            since = self.store.clock() - timedelta(hours=1)
            self.pool.budget = self.policy.hourly_cap - self.store.sent_since(since)
        if self.pool.budget <= 0:
            self._halt(f"hourly cap of {self.policy.hourly_cap} messages reached; the rest "
                       "stay queued for the next run")
            return False
        self.pool.budget -= 1
        return True

    def _deliver(self, carrier: Transport, delivery: Delivery, message: bytes) -> Settled:
        """Send with retries on a fresh connection; the row is `sending` meanwhile."""
        attempt = 0
        while True:
            try:
                result = carrier.send(self.envelope(delivery), delivery.email, message)
            except TransportDown as error:
                result = Result(Outcome.DEFERRED, f"cannot connect: {error}")
                if attempt >= self.policy.retries:
                    self.down = error
                    self.halt.set()
                    return Settled(delivery, result, offered=False)
            if result.outcome is not Outcome.DEFERRED or attempt >= self.policy.retries:
                break
            attempt += 1
            carrier.reset()
            pause = self.policy.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if self.either.wait(pause):
                break  # told to stop: nothing in flight, the row stays deferred
        deferred = result.outcome is Outcome.DEFERRED
        return Settled(delivery, result,
                       _next_try(delivery, self.store.clock()) if deferred else None)

    def _count(self, done: Settled) -> None:
        """Tally an outcome and watch the failure streak; lock held."""
        if not done.offered:
            return
        delivery, result = done.delivery, done.result
        self.counts[result.outcome.value] += 1
        if result.outcome is Outcome.SENT:
            self.streak = 0
            return
        self.streak += 1
        if result.outcome is Outcome.FAILED:
            self.failed.append(delivery.email)
        limit = self.policy.pause_after_failures
        if limit and self.streak >= limit:
            self._halt(f"paused after {self.streak} failed or deferred messages in a row, the "
                       f"last: {delivery.email}: {result.response}; check the relay, then run "
                       "`digest send` again to go on")


class _Either:
    """Two events read as one: the operator's stop and the run's own halt."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.second.wait(min(left, 0.05))
        return True


def run(store: Store, edition_id: int, message_for: Callable[[Delivery], bytes],
        pool: Pool, sender: str | Callable[[Delivery], str],
        progress: Callable[[Outcome], None] = lambda outcome: None,
        stop: threading.Event | None = None) -> Tally:
    """Deliver every due row of an edition through the pool (its first connection already
    open); `message_for` makes each row's bytes.

    Each row is committed `sending` before its transaction and its outcome after the reply.
    `stop` is checked between messages: transactions in flight are finished and recorded,
    the rest stay pending for the next run.
    """
    return _Run(store, edition_id, message_for, pool, sender, progress, stop)()


def _next_try(delivery: Delivery, moment: datetime) -> datetime:
    return moment + RETRY_BASE * int(2 ** min(delivery.attempts, 6))
