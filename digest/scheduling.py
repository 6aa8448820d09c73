"""The scheduler: collect on its schedule (with jitter), send on its cron lines in the
newsletter's time zone (or each subscriber's, with `newsletter.local_time`), and reconcile
every few minutes.

    start:      lock the state folder | collect | reconcile
    collect:    every `schedule.collect`, up to `schedule.jitter` late
    send:       at each `schedule.send` (daily) and `schedule.weekly` slot: reconcile
    reconcile:  every `schedule.reconcile`: held editions past `schedule.approval_timeout`
                sent or skipped | resume undelivered editions | for each cadence, make the
                latest slot's edition if it is due, missing and within `schedule.grace` |
                deliver the rows whose due time has come

Every moment comes from one clock (digest/clock.py): the system's, or a time lapse that
rehearses a schedule against the outbox or a sink.

APScheduler keeps its jobs in memory, declared from the config at every start: correctness
lives in our tables (one edition per period, the skipped periods, the delivery ledger), not in
the scheduler's. An edition's period is its send slot as wall-clock time in the newsletter's
zone, so a slot that happens twice when the clocks go back is still one edition.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import clock, deliver, jobs, lock, logs, mailboxes
from digest.clock import SYSTEM, Clock, Lapse
from digest.config import Config, duration
from digest.errors import DigestError
from digest.logs import event
from digest.records import CADENCES
from digest.store import Store

log = logging.getLogger("digest.scheduler")

# After a stop signal: the SMTP transaction or feed fetch in flight may take a few timeouts.
STOP_MARGIN = timedelta(seconds=15)
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# A send job this late is still on time (the thread pool may be busy for a moment).
ON_TIME = timedelta(minutes=1)
UTC_ZONE = ZoneInfo("UTC")


# -- triggers and periods: pure, given the config and a moment ------------------------------

def cron(expression: str, zone: ZoneInfo, key: str, jitter: timedelta | None = None
         ) -> CronTrigger:
    """A cron line of 5 fields, or 6 with seconds first (for tests and for the impatient)."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise DigestError(f"schedule.{key} {expression!r} is not a cron line: it has "
                          f"{len(fields)} fields, not 5 (or 6 with seconds first)")
    fields[-1] = _weekdays(fields[-1])
    names: tuple[str, ...] = ("minute", "hour", "day", "month", "day_of_week")
    if len(fields) == 6:
        names = ("second", *names)
    try:
        return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=zone,
                           jitter=int(jitter.total_seconds()) if jitter else None)
    except ValueError as error:
        raise DigestError(f"schedule.{key} {expression!r} is not a cron line: {error}") from None


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(field: str) -> str:
    """Cron counts weekdays from Sunday = 0 (and 7); APScheduler from Monday = 0. Numbers
    become names, so "1-5" means Monday to Friday as in crontab(5)."""
    def named(part: str) -> str:
        span, slash, step = part.partition("/")
        span = re.sub(r"\d+", lambda m: _WEEKDAYS[int(m[0])] if int(m[0]) < 8 else m[0], span)
        return span + slash + step
    return ",".join(named(part) for part in field.split(","))


def collect_trigger(config: Config, start: datetime, jittered: bool = True) -> BaseTrigger:
    """`schedule.collect`, with jitter (feeds' servers see no crowd on the hour)."""
    jitter = config.schedule.span("jitter") if jittered else None
    return _every(config, "collect", start, jitter)


def inbox_trigger(config: Config, start: datetime) -> BaseTrigger | None:
    """`schedule.inbox`; None when empty (the default: reading what came back is the
    operator's choice)."""
    return _every(config, "inbox", start) if config.schedule.inbox else None


def _every(config: Config, key: str, start: datetime,
           jitter: timedelta | None = None) -> BaseTrigger:
    """A `schedule.<key>` that is an interval ("30m") or a cron line.

    An interval counts from `start` (first firing one interval after it): APScheduler's own
    default reads the wall clock, which would make `next_runs` depend on the day it runs.
    """
    expression, zone = getattr(config.schedule, key), config.newsletter.zone
    every = duration(expression)
    if every is None:
        return cron(expression, zone, key, jitter)
    if every <= timedelta(0):
        raise DigestError(f"schedule.{key} {expression!r} must be longer than 0")
    return IntervalTrigger(seconds=every.total_seconds(), timezone=zone,
                           start_date=start + every,
                           jitter=int(jitter.total_seconds()) if jitter else None)


# The schedule key of each cadence's send slot.
SLOTS = {"daily": "send", "weekly": "weekly"}


def send_trigger(config: Config, cadence: str = "daily",
                 zone: ZoneInfo | None = None) -> CronTrigger:
    """The cadence's send slots in `zone` (the newsletter's unless given)."""
    key = SLOTS[cadence]
    return cron(getattr(config.schedule, key), zone or config.newsletter.zone, key)


def slots_trigger(config: Config, zones: Iterable[ZoneInfo], cadence: str) -> BaseTrigger:
    """When the scheduler wakes for a cadence's slot: in the newsletter's zone, or with
    `newsletter.local_time` in each zone in use (its subscribers' own)."""
    if not config.newsletter.local_time:
        return send_trigger(config, cadence)
    return OrTrigger([send_trigger(config, cadence, zone)
                      for zone in sorted(zones, key=str)])


def local_due_period(config: Config, cadence: str, zones: Iterable[ZoneInfo],
                     moment: datetime, grace: timedelta) -> str | None:
    """With `newsletter.local_time`: the slot whose edition should exist at `moment`, the
    latest any zone in use has reached (within the grace period). The slots are wall-clock
    times, the same in every zone, so they are read off the cron line in UTC (where every
    wall-clock time happens exactly once); a zone reaches one at clock.wall_moment."""
    walls = send_trigger(config, cadence, UTC_ZONE)
    found: str | None = None
    for zone in zones:
        # The zone's wall clock, read as if it were UTC.
        seen = moment.astimezone(zone).replace(tzinfo=UTC_ZONE)
        slot = latest_slot(walls, seen, grace)
        while slot is not None and clock.wall_moment(zone, slot.replace(tzinfo=None)) > moment:
            # A slot in a gap (clocks sprung forward over it) comes a little later.
            slot = latest_slot(walls, slot - timedelta(microseconds=1), grace)
        if slot is not None:
            key = period(slot, UTC_ZONE)
            found = max(found or key, key)
    return found


def latest_slot(trigger: BaseTrigger, moment: datetime, within: timedelta) -> datetime | None:
    """The trigger's last firing at or before `moment`, if one lies within `within` of it.

    Triggers only look forward, so look back from `moment` a doubling step at a time (a few
    calls even for a seconds-level schedule), then walk forward to the last firing.
    """
    back = min(timedelta(seconds=1), within)
    while True:
        slot: datetime | None = trigger.get_next_fire_time(None, moment - back)
        if slot is not None and slot <= moment:
            break
        if back >= within:
            return None
        back = min(back * 2, within)
    while True:
        later: datetime | None = trigger.get_next_fire_time(slot, moment)
        if later is None or later > moment or later <= slot:
            return slot
        slot = later


def period(slot: datetime, zone: ZoneInfo) -> str:
    """The edition's key: the slot's wall-clock time in the newsletter's zone. 02:30 happens
    twice when the clocks go back; both firings are the one period of that day."""
    return slot.astimezone(zone).replace(tzinfo=None).isoformat(timespec="seconds")


def due_period(trigger: BaseTrigger, zone: ZoneInfo, moment: datetime,
               grace: timedelta) -> str | None:
    """The period whose edition should exist at `moment`: the latest send slot, as long as
    it is within the grace period. Only the latest: after three days down, one edition."""
    slot = latest_slot(trigger, moment, grace)
    return period(slot, zone) if slot is not None else None


@dataclass(frozen=True)
class NextRun:
    job: str
    at: datetime | None  # None: never, or the schedule is wrong (see `problem`)
    schedule: str
    problem: str | None = None  # why `schedule` is not a schedule


def next_runs(config: Config, moment: datetime) -> list[NextRun]:
    """When each scheduled job fires next after `moment`, from the config alone (the send
    slots of each cadence in the newsletter's zone). A wrong schedule is a run's problem,
    not an error: status still shows everything else."""
    triggers: dict[str, Callable[[], BaseTrigger | None]] = {
        "collect": lambda: collect_trigger(config, moment, jittered=False),
        "send": lambda: send_trigger(config),
        "weekly": lambda: send_trigger(config, "weekly")}
    if config.schedule.inbox:
        triggers["inbox"] = lambda: inbox_trigger(config, moment)
    runs = []
    for job, trigger in triggers.items():
        schedule = getattr(config.schedule, job)
        try:
            made = trigger()
            runs.append(NextRun(job, made and made.get_next_fire_time(None, moment), schedule))
        except DigestError as error:
            runs.append(NextRun(job, None, schedule, str(error)))
    return runs


# How many of its fire times a Lapsed trigger remembers: APScheduler hands back the last
# few it was given (a run's times, then the next one).
GIVEN = 16


class Lapsed(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A trigger read on the scheduler's clock. APScheduler asks in real time and waits in
    real time; the trigger inside computes its fire times in the clock's time (a time lapse
    in a rehearsal, the identity in production: one code path for both). APScheduler 3 has
    no clock of its own to replace, and its maintainers suggest wrapping the triggers."""

    def __init__(self, trigger: BaseTrigger, lapse: Lapse) -> None:
        self.trigger, self.lapse = trigger, lapse
        # The last fire times handed out, real to simulated: APScheduler gives them back as
        # previous ones, and mapping one back through floats could land a microsecond before
        # its slot, which would then fire again and again.
        self._given: OrderedDict[datetime, datetime] = OrderedDict()

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        previous = None
        if previous_fire_time is not None:
            previous = self._given.get(previous_fire_time)
            if previous is None:
                previous = self.lapse.simulated(previous_fire_time)
        upcoming: datetime | None = self.trigger.get_next_fire_time(
            previous, self.lapse.simulated(now))
        if upcoming is None:
            return None
        real = self.lapse.real(upcoming)
        self._given[real] = upcoming
        while len(self._given) > GIVEN:
            self._given.popitem(last=False)
        return real

    def __str__(self) -> str:
        return f"{self.trigger} on {self.lapse}"


# -- the jobs ----------------------------------------------------------------------------------

class Runner:
    """The jobs as the scheduler runs them: each in its own thread with its own Store, never
    two sends at once (two would mail the same pending rows), and all of them stoppable."""

    def __init__(self, config: Config, stop: threading.Event, clock: Clock = SYSTEM) -> None:
        self.config = config
        self.stop = stop
        self.clock = clock
        self.triggers = {cadence: send_trigger(config, cadence) for cadence in CADENCES}
        self.grace = config.schedule.span("grace")
        self._collecting = threading.Lock()
        self._sending = threading.Lock()
        self._reading = threading.Lock()
        self._active = 0
        self._idle = threading.Condition()

    @contextmanager
    def _job(self, name: str, guard: threading.Lock, wait: bool = False) -> Iterator[bool]:
        """Runs the body unless stopping or the same work is already under way (unless
        `wait`: then once that is done)."""
        token = logs.JOB.set(name)
        with self._idle:
            self._active += 1
        try:
            if self.stop.is_set():
                yield False
            elif not guard.acquire(blocking=wait):
                event(log, logging.INFO, "skipped: the previous run is still working")
                yield False
            else:
                try:
                    yield True
                finally:
                    guard.release()
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()
            logs.JOB.reset(token)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def collect(self, wait: bool = False) -> None:
        with self._job("collect", self._collecting, wait) as go:
            if not go:
                return
            with self._store() as store:
                collected = jobs.collect(self.config, store, self.stop, self.clock.now)
            for feed in collected.failed:
                event(log, logging.WARNING, f"feed {feed.url}: {feed.error}")
            for feed in collected.skipped:
                event(log, logging.INFO, f"feed {feed.url} skipped: {feed.skipped}")
            event(log, logging.INFO, "collected", new=collected.new,
                  feeds=len(collected.feeds), failed=len(collected.failed))

    def inbox(self) -> None:
        """Read what came back from the configured mailbox and act on it."""
        with self._job("inbox", self._reading) as go:
            if not go:
                return
            try:
                box = mailboxes.configured(self.config.inbox)
            except DigestError as error:
                event(log, logging.ERROR, str(error))
                return
            try:
                with self._store() as store:
                    read = list(jobs.inbox(self.config, store, box))
            finally:
                box.close()
            for handled in read:
                if handled.problem:
                    event(log, logging.WARNING, f"message {handled.name} skipped: "
                                                f"{handled.problem}")
            actions = Counter(handled.action.value for handled in read)
            event(log, logging.INFO, "inbox read", messages=len(read),
                  set_aside=sum(handled.set_aside for handled in read), **actions)

    def _store(self) -> Store:
        return Store(self.config.paths.database, self.clock.now)

    def reconcile(self, name: str = "reconcile") -> None:
        with self._job(name, self._sending) as go:
            if go:
                self._reconcile(self.clock.now())

    def due_period(self, zones: Mapping[str, set[ZoneInfo]], cadence: str, moment: datetime,
                   window: timedelta) -> str | None:
        """The cadence's slot whose edition should exist at `moment`, if any; `zones` are
        the cadences' zones in use, with `newsletter.local_time` (see jobs.zones)."""
        config = self.config
        if config.newsletter.local_time:
            return local_due_period(config, cadence, zones[cadence], moment, window)
        return due_period(self.triggers[cadence], config.newsletter.zone, moment, window)

    def _reconcile(self, moment: datetime) -> None:
        """Each cadence on its own: its latest slot's edition made if missing (or the slot
        let pass, with the reason), and every delivery due delivered."""
        config = self.config
        with self._store() as store:
            # Held editions past their approval timeout first: one sent as it was has its
            # rows now, and is delivered below with the rest.
            for timed in jobs.timeouts(config, store, moment):
                _timed_out(timed, config.schedule.approval_timeout)
            # The send job itself runs a moment after its slot: even a grace of "0s" must
            # let it find the slot it fired for.
            window = max(self.grace, ON_TIME)
            zones = jobs.zones(config, store) if config.newsletter.local_time else {}
            due: dict[str, str | None] = {cadence: period for cadence in CADENCES
                   if (period := self.due_period(zones, cadence, moment, window)) is not None
                   and not store.decided(period, cadence)}
            if not due and not store.anything_due():
                log.debug("nothing due")
                return
            for cadence, period in (due or {"daily": None}).items():
                if self.stop.is_set():
                    break
                try:
                    sent = jobs.send(config, store, deliver.transport(config), period=period,
                                     stop=self.stop, new_edition=period is not None,
                                     cadence=cadence)
                except DigestError as error:
                    event(log, logging.ERROR, str(error), period=period, cadence=cadence)
                    continue
                if period is not None and sent.edition is None and sent.held is None and (
                        not self.stop.is_set()):
                    store.skip(period, sent.note, cadence)
                    event(log, logging.INFO, "no edition", period=period, cadence=cadence,
                          reason=sent.note)
                self._said(sent, cadence)

    def _said(self, sent: jobs.Sent, cadence: str) -> None:
        if sent.recovered:
            event(log, logging.WARNING, "deliveries in doubt after an interrupted run marked "
                  "unknown (see `digest status`, `digest resend`)", unknown=sent.recovered)
        if sent.edition is not None:
            event(log, logging.INFO, "edition made", edition=sent.edition.id,
                  period=sent.edition.period, cadence=cadence, subject=sent.edition.subject)
        if sent.held is not None:
            event(log, logging.INFO, "edition held for approval", edition=sent.held.id,
                  period=sent.held.period, cadence=cadence, articles=len(sent.held.cards))
        for tally in sent.tallies:
            if not tally.counts:
                continue
            counts = {status: tally.counts[status] for status in sorted(tally.counts)}
            event(log, logging.WARNING if tally.troubled else logging.INFO, "delivered",
                  edition=tally.edition_id, seconds=round(tally.seconds, 1), **counts)
        if self.stop.is_set():
            event(log, logging.INFO, "stopped: undelivered mail stays pending for the next run")

    def start(self) -> None:
        """At start-up: settle what a crash left in flight (we hold the lock: nobody else is
        sending), then fresh articles, so that a made-up edition carries them."""
        token = logs.JOB.set("start")
        try:
            with self._store() as store:
                recovered = store.recover()
            if recovered:
                event(log, logging.WARNING, "deliveries in doubt after an interrupted run "
                      "marked unknown (see `digest status`, `digest resend`)", unknown=recovered)
        finally:
            logs.JOB.reset(token)
        # A collect already under way (its schedule fired first) is waited for: a slot made
        # up now must not be let pass for want of the articles it is fetching.
        self.collect(wait=True)
        self.reconcile("start")


def _timed_out(timed: jobs.TimedOut, timeout: str) -> None:
    number = timed.held.id
    if timed.problem:
        event(log, logging.ERROR, f"approval timed out, not sent: {timed.problem}",
              edition=number, timeout=timeout)
    elif timed.edition is None:
        event(log, logging.WARNING, "approval timed out: edition skipped, its stories go "
              "back to the pool", edition=number, timeout=timeout)
    else:
        event(log, logging.WARNING, "approval timed out: edition sent as it was",
              edition=number, timeout=timeout, subject=timed.edition.subject)


def _listen(scheduler: BlockingScheduler) -> None:
    """Job errors and missed runs, logged in our format: APScheduler's own lines are muted."""
    def report(happened: JobExecutionEvent | JobSubmissionEvent) -> None:
        job = happened.job_id
        # Called after the job has left its thread (or from the scheduler's): name it again.
        token = logs.JOB.set(job)
        try:
            _report(happened, job)
        finally:
            logs.JOB.reset(token)

    def _report(happened: JobExecutionEvent | JobSubmissionEvent, job: str) -> None:
        if happened.code == EVENT_JOB_ERROR:
            assert isinstance(happened, JobExecutionEvent)
            log.error("job failed", exc_info=(type(happened.exception), happened.exception,
                                              happened.exception.__traceback__),
                      extra={"facts": {"job_id": job}})
        elif happened.code == EVENT_JOB_MISSED:
            assert isinstance(happened, JobExecutionEvent)
            event(log, logging.WARNING, "run missed", job_id=job,
                  scheduled=happened.scheduled_run_time.isoformat())
        elif happened.code == EVENT_JOB_MAX_INSTANCES:
            event(log, logging.WARNING, "run skipped: the previous one is still working",
                  job_id=job)
    scheduler.add_listener(report, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)


def scheduler_for(config: Config, runner: Runner, lapse: Lapse = SYSTEM) -> BlockingScheduler:
    """Every job on a trigger read on the lapse, the runner's clock (see Lapsed):
    APScheduler's own times, the misfire grace included, are real ones."""
    schedule = config.schedule
    zone = config.newsletter.zone
    scheduler = BlockingScheduler(timezone=zone, job_defaults={
        "coalesce": True, "max_instances": 1,
        # A run late by less than the grace period still runs, once (coalesce).
        "misfire_grace_time": int(lapse.span(runner.grace).total_seconds()) or 1})
    _listen(scheduler)
    start = lapse.now()
    scheduler.add_job(runner.start, id="start", next_run_time=lapse.real(start))
    scheduler.add_job(runner.collect, Lapsed(collect_trigger(config, start), lapse),
                      id="collect")
    zones: set[ZoneInfo] = set()
    if config.newsletter.local_time:
        with runner._store() as store:
            zones = set().union(*jobs.zones(config, store).values())
    for cadence, key in SLOTS.items():
        scheduler.add_job(runner.reconcile, Lapsed(slots_trigger(config, zones, cadence),
                                                   lapse), args=(key,), id=key)
    every = schedule.span("reconcile")
    scheduler.add_job(runner.reconcile, Lapsed(IntervalTrigger(
        seconds=every.total_seconds(), timezone=zone, start_date=start + every), lapse),
        id="reconcile")
    reading = inbox_trigger(config, start)
    if reading is not None:
        scheduler.add_job(runner.inbox, Lapsed(reading, lapse), id="inbox")
    return scheduler


def forever(config: Config, clock: Lapse = SYSTEM) -> int:
    """Run until SIGTERM or SIGINT. The first stops taking work, lets the message in flight
    finish and be recorded, and exits 0; a second exits at once (the ledger stays consistent:
    a row still `sending` becomes `unknown` at the next start)."""
    with lock.held(config.paths, wait=True):
        logs.JOB.set("scheduler")
        stop = threading.Event()
        runner = Runner(config, stop, clock)
        scheduler = scheduler_for(config, runner, clock)
        # Python runs signal handlers in the main thread only when it wakes, and the kernel
        # may hand the signal to a busy worker while the main thread sleeps until the next
        # job. So every thread blocks the signals (threads started later inherit the mask)
        # and one thread takes them with sigwait, at once.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=_on_signals, args=(stop, scheduler), daemon=True,
                         name="signals").start()
        event(log, logging.INFO, "scheduler started", pid=os.getpid(),
              collect=config.schedule.collect, send=config.schedule.send,
              weekly=config.schedule.weekly, timezone=config.newsletter.timezone,
              local_time=config.newsletter.local_time, state=str(config.paths.state),
              **({} if clock == SYSTEM else {"time_lapse": f"{clock.origin.isoformat()} at "
                                             f"{clock.real_origin}, x{clock.speed:g}"}))
        scheduler.start()
        limit = 2 * config.smtp.timeout + STOP_MARGIN.total_seconds()
        if not runner.wait_idle(limit):
            event(log, logging.ERROR, "work still running after the stop limit; exiting",
                  seconds=limit)
            os._exit(1)
        event(log, logging.INFO, "scheduler stopped")
    return 0


def _on_signals(stop: threading.Event, scheduler: BlockingScheduler) -> None:
    logs.JOB.set("scheduler")
    number = signal.sigwait(STOP_SIGNALS)
    event(log, logging.INFO, "stopping: finishing the work in flight",
          signal=signal.Signals(number).name)
    stop.set()
    # A signal may come before the main thread has started the scheduler: wait for it.
    while True:
        try:
            scheduler.shutdown(wait=False)
            break
        except SchedulerNotRunningError:
            time.sleep(0.05)
    number = signal.sigwait(STOP_SIGNALS)
    event(log, logging.WARNING, "second signal: exiting now", signal=signal.Signals(number).name)
    logging.shutdown()
    os._exit(128 + number)


@contextmanager
def stopped_by_signals(stop: threading.Event, level: int = logging.INFO) -> Iterator[list[int]]:
    """While inside, SIGTERM and SIGINT set `stop`: the work in flight finishes and is
    recorded, the rest is left for the next run. A second signal exits at once (a message
    then in flight stays `sending`: in doubt, marked `unknown` at the next start). Yields the
    signals taken, for the exit status. From the main thread only, as Python's signals are."""
    taken: list[int] = []

    def on_signal(number: int, frame: object) -> None:
        name = signal.Signals(number).name
        if taken:
            event(log, logging.WARNING, "second signal: exiting now", signal=name)
            os._exit(128 + number)
        taken.append(number)
        event(log, level, "stopping: finishing the work in flight", signal=name)
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    try:
        yield taken
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def once(config: Config) -> int:
    """Collect, then send (a manual period), under the same lock as the scheduler. Signals
    stop it as they stop the scheduler: the first after the message in flight, the second
    at once."""
    stop = threading.Event()
    with lock.held(config.paths), stopped_by_signals(stop):
        Runner(config, stop).collect()
        token = logs.JOB.set("send")  # its report too is the send job's
        try:
            with Store(config.paths.database) as store:
                sent = jobs.send(config, store, deliver.transport(config), stop=stop)
            event(log, logging.INFO, sent.note)
            for tally in sent.tallies:
                event(log, logging.INFO, "delivered", edition=tally.edition_id,
                      **{status: tally.counts[status] for status in sorted(tally.counts)})
        finally:
            logs.JOB.reset(token)
        return 1 if sent.troubled else 0
