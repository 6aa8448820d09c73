"""Delivery: the ledger loop that drives the transports (digest.transport).

One event loop drives every connection of a run. The ledger commits a row `sending` before
its transaction and its outcome right after the reply, so a crash leaves at most one row in
doubt per connection, never a duplicate; the connections' steps that fall due in the same turn
of the loop share one commit (see _Ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any, TypeVar

from digest.config import Config, Smtp
from digest.errors import DigestError
from digest.records import Delivery, Outcome, Result, Status
from digest.store import UNDELIVERED, Settled, Store
from digest.transport import Formed, MaildirTransport, SmtpTransport, Transport, TransportDown

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        self.tokens = 1.0
        self.at = time.monotonic()

    async def wait(self, stop: _Either) -> bool:
        """Take a token, sleeping as long as needed; False if told to stop meanwhile."""
        if not self.rate:
            return not stop.is_set()
        while True:
            moment = time.monotonic()
            self.tokens = min(max(self.rate, 1.0), self.tokens + (moment - self.at) * self.rate)
            self.at = moment
            if self.tokens >= 1:
                self.tokens -= 1
                return not stop.is_set()
            if await stop.sleep((1 - self.tokens) / self.rate):
                return False


class Pool:
    """`size` transports of one kind, one per connection, and what they share: the event loop
    that drives them, the policy (the [smtp] settings: how hard to push, when to give up), the
    rate bucket, the hourly cap. Used from one thread at a time, between `open` and `close`."""

    def __init__(self, make: Callable[[], Transport], size: int, policy: Smtp,
                 destination: str) -> None:
        self.make = make
        self.size = size
        self.policy = policy
        self.destination = destination
        self.bucket = Bucket(policy.rate)
        self.budget: int | None = None  # messages left under the hourly cap, once counted
        self.transports: list[Transport] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the pool's event loop, where its connections live, and wait for it.
        The loop has a thread of its own: a caller may itself be inside an event loop (the
        preview's handler, a browser driver), where no other loop can run. (A signal still
        reaches the caller's thread while it waits: the stop event is set there.)"""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                           name="delivery")
            self.thread.start()
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def open(self) -> None:
        """Open the first connection: with the relay down, no row has been touched yet."""
        first = self.make()
        self.transports = [first]
        try:
            self.run(first.open())
        except BaseException:  # nobody closes a pool that did not open
            self.close()
            raise

    def transport(self, number: int) -> Transport:
        while len(self.transports) <= number:
            self.transports.append(self.make())
        return self.transports[number]

    def close(self) -> None:
        async def close_all() -> None:
            for carrier in self.transports:
                await carrier.close()

        try:
            if self.loop is not None:
                self.run(close_all())
        finally:
            self.transports = []
            if self.loop is not None and self.thread is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join()
                self.loop.close()
                self.loop = self.thread = None


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
        return pool.run(pool.transport(0).send(parseaddr(config.newsletter.sender)[1],
                                               recipient, message))
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


class _Ledger:
    """The ledger's steps (store.step) from every connection, committed together once per
    turn of the event loop: each connection waits for the commit of its step before it
    offers its next message, so the window stays one message per connection, and with many
    connections a commit covers several of them. (One thread per connection, each with its
    own commit, spent more on switching threads than on the wire.)"""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiting: list[tuple[Settled | None, Delivery | None]] = []
        self.committed: asyncio.Future[None] | None = None

    async def step(self, done: Settled | None, starting: Delivery | None) -> None:
        """Returns once the step is committed; raises what the commit raised."""
        self.waiting.append((done, starting))
        if self.committed is None:
            self.committed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._commit)
        await asyncio.shield(self.committed)

    def _commit(self) -> None:
        steps, committed = self.waiting, self.committed
        self.waiting, self.committed = [], None
        assert committed is not None
        try:
            self.store.steps(steps)
        except Exception as error:  # every connection waiting on it hears of it
            committed.set_exception(error)
        else:
            committed.set_result(None)


class _Run:
    """One edition through the pool: one task per connection on one event loop, each taking
    the next due row from a shared stream. Between two awaits a task has the run to itself,
    so what they share needs no lock."""

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
        self.ledger = _Ledger(store)
        self.due = store.due(edition_id)
        self.looked, self.since = -OPT_OUTS_EVERY, store.clock() - OPT_OUTS_MARGIN  # look at once
        self.opted_out: set[str] = set()  # seen since the run began
        self.withheld: set[str] = set()  # their rows, never to be offered in this run
        self.counts: Counter[Status] = Counter()
        self.failed: list[str] = []
        self.streak = 0
        self.halted = ""
        self.down: TransportDown | None = None
        self.fault = ""  # why a connection's task broke off, if one did: the run stops

    def __call__(self) -> Tally:
        started = time.monotonic()

        async def connections() -> None:
            await asyncio.gather(*(self._work(number) for number in range(self.pool.size)))

        self.pool.run(connections())
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
        self.halted = self.halted or why
        self.halt.set()

    async def _work(self, number: int) -> None:
        carrier = self.pool.transport(number)
        done: Settled | None = None  # an outcome not yet committed
        try:
            while True:
                if done is not None:
                    self._count(done)
                    self.progress(done.result.outcome)
                delivery = None if self.either.is_set() else self._next()
                if delivery is None or not self._within_cap() \
                        or not await self.pool.bucket.wait(self.either):
                    break
                message = Formed(self.message_for(delivery))
                await self.ledger.step(done, delivery)
                done = None
                done = await self._deliver(carrier, delivery, message)
        except Exception as error:  # whatever it is, the run stops and says why
            self._broke(number, error)
        finally:
            if done is not None:
                try:
                    await self.ledger.step(done, None)
                except Exception as error:
                    self._broke(number, error)

    def _broke(self, number: int, error: Exception) -> None:
        """A connection cannot go on: every connection stops after its message in flight.
        The ledger still keeps its promise: the row in flight here stays `sending` (in
        doubt), the rest stay pending."""
        if isinstance(error, DigestError):  # the machine's: a full disk, a damaged file
            why = str(error)
        else:  # a bug of ours: its traceback is for the log
            log.error("delivery on connection %d failed", number, exc_info=error)
            why = f"{type(error).__name__}: {error}"
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
        """The next due row whose address has not opted out meanwhile. Opt-outs
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
        """The hourly cap, counted once from the ledger, then in memory."""
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

    async def _deliver(self, carrier: Transport, delivery: Delivery, message: bytes) -> Settled:
        """Send with retries on a fresh connection; the row is `sending` meanwhile."""
        attempt = 0
        while True:
            try:
                result = await carrier.send(self.envelope(delivery), delivery.email, message)
            except TransportDown as error:
                result = Result(Outcome.DEFERRED, f"cannot connect: {error}")
                if attempt >= self.policy.retries:
                    self.down = error
                    self.halt.set()
                    return Settled(delivery, result, offered=False)
            if result.outcome is not Outcome.DEFERRED or attempt >= self.policy.retries:
                break
            attempt += 1
            await carrier.reset()
            pause = self.policy.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if await self.either.sleep(pause):
                break  # told to stop: nothing in flight, the row stays deferred
        deferred = result.outcome is Outcome.DEFERRED
        return Settled(delivery, result,
                       _next_try(delivery, self.store.clock()) if deferred else None)

    def _count(self, done: Settled) -> None:
        """Tally an outcome and watch the failure streak."""
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
    """Two events read as one: the operator's stop (set by a signal handler or another
    thread) and the run's own halt."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep on the loop, looking every 50 ms; True if set meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.05))
        return True


def run(store: Store, edition_id: int, message_for: Callable[[Delivery], bytes],
        pool: Pool, sender: str | Callable[[Delivery], str],
        progress: Callable[[Outcome], None] = lambda outcome: None,
        stop: threading.Event | None = None) -> Tally:
    """Deliver every due row of an edition through the pool (its first connection already
    open); `message_for` makes each row's bytes, as DATA carries them (compose's Letter
    does: see transport.Formed).

    Each row is committed `sending` before its transaction and its outcome after the reply.
    `stop` is checked between messages: transactions in flight are finished and recorded,
    the rest stay pending for the next run.
    """
    return _Run(store, edition_id, message_for, pool, sender, progress, stop)()


def _next_try(delivery: Delivery, moment: datetime) -> datetime:
    return moment + RETRY_BASE * int(2 ** min(delivery.attempts, 6))
