"""The scheduler: collect and send on their cron schedules, in the newsletter's time zone.

APScheduler keeps its jobs in memory, declared from the config at every start: correctness
lives in our tables (an edition per period, the delivery ledger), not in the scheduler's.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from digest import deliver, jobs
from digest.config import Config
from digest.errors import DigestError
from digest.store import Store

log = logging.getLogger("digest.scheduler")


def trigger(config: Config, key: str) -> CronTrigger:
    expression = getattr(config.schedule, key)
    try:
        return CronTrigger.from_crontab(expression, timezone=config.newsletter.zone)
    except ValueError as error:
        raise DigestError(f"schedule.{key} {expression!r} is not a cron expression: "
                          f"{error}") from None


def run_collect(config: Config) -> None:
    with Store(config.paths.database) as store:
        collected = jobs.collect(config, store)
    log.info("collect: %d new articles from %d feeds, %d failed", collected.new,
             len(collected.feeds), len(collected.failed))


def run_send(config: Config) -> None:
    with Store(config.paths.database) as store:
        try:
            sent = jobs.send(config, store, deliver.transport(config))
        except DigestError as error:
            log.error("send: %s", error)
            return
    log.info("send: %s", sent.note)
    for tally in sent.tallies:
        log.info("send: edition %d: %s", tally.edition_id, dict(tally.counts))


def once(config: Config) -> None:
    run_collect(config)
    run_send(config)


def forever(config: Config) -> None:
    scheduler = BlockingScheduler(timezone=config.newsletter.zone,
                                  job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(run_collect, trigger(config, "collect"), args=(config,), id="collect")
    scheduler.add_job(run_send, trigger(config, "send"), args=(config,), id="send")
    log.info("scheduler started: collect %r, send %r (%s)", config.schedule.collect,
             config.schedule.send, config.newsletter.timezone)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler stopped")
