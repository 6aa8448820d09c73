"""The `digest` command.

Exit statuses mean the same everywhere: 0 done (or nothing to do), 1 finished but something
needs a look (a feed failed, a delivery was deferred, failed or is unknown), 2 a usage or
configuration error. A user's mistake is one line naming the thing; a traceback is a bug.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import IO, Any

import click
from email_validator import EmailNotValidError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from digest import check as checks
from digest import config as configuration
from digest import deliver, jobs, lock, logs, mailboxes, report, scheduling
from digest import inbox as inboxes
from digest import subscribers as subscriber_list
from digest.config import Config
from digest.errors import DigestError
from digest.records import CADENCES, Outcome, Subscriber
from digest.sink import Sink
from digest.store import Store, copy_state, now
from digest.web import public

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


PORT = click.IntRange(1, 65535)
CONFIG_KEY = "digest.config"  # ctx.meta: --config as given, before or after the command
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[CONFIG_KEY] = value


def _log_level(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Log lines in the scheduler's format (time, level, job, message, facts) on stderr."""
    if value is not None:
        logs.setup(value.upper(), "text")


def _common(default_level: str | None = None) -> list[click.Parameter]:
    """--config and --log-level, accepted before the command name and after it alike (the
    one after it wins). Only `digest` itself has a default level, set before any command."""
    return [click.Option(["--config"], type=click.Path(dir_okay=False), expose_value=False,
                         callback=_remember_config,
                         help="digest.toml to use (default: $DIGEST_CONFIG, else "
                              "./digest.toml, else built-in defaults)"),
            click.Option(["--log-level"], type=click.Choice(LOG_LEVELS, case_sensitive=False),
                         expose_value=False, default=default_level, callback=_log_level,
                         help="how much to log on stderr  [default: WARNING]")]


class Command(click.Group):
    """Turns a DigestError anywhere below into its message and exit status, and gives every
    command (and sub-group) the common options."""

    group_class = type  # sub-groups are Commands too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as error:
            console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
            ctx.exit(error.status)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(_common())
        super().add_command(cmd, name)


@click.group(cls=Command, params=_common(default_level="WARNING"))
@click.version_option(package_name="newsletter-digest")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Newsletter digests from RSS/Atom feeds, composed once and mailed to every subscriber.

    --config and --log-level go before or after the command: `digest status --config F`.
    """
    # Log lines name the command where the scheduler's name their job.
    logs.JOB.set(ctx.invoked_subcommand or "-")


def _config(ctx: click.Context) -> Config:
    """The configuration, saying once where the state is when no file was found."""
    config = configuration.load(ctx.meta.get(CONFIG_KEY))
    if config.source is None:
        console.print(f"no configuration file (--config, $DIGEST_CONFIG or "
                      f"./{configuration.CONFIG_NAME}): built-in defaults, the bundled sample "
                      f"feed, subscribers {config.paths.subscribers}, mail into the Maildir "
                      f"{config.paths.outbox}; state in {config.paths.state}",
                      markup=False)
    return config


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    with Store(config.paths.database) as store:
        yield store


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} msg/s")


class _Bar:
    """Progress for `jobs.send`: called once per message (from any delivery thread), told
    each edition's size by `expect`. Silent off a terminal."""

    def __init__(self, bar: Progress | None, label: str) -> None:
        self.bar = bar
        self.task = bar.add_task(label, total=0, trouble=0) if bar else None
        self.total = 0
        self.trouble = 0

    def expect(self, count: int) -> None:
        self.total += count
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, total=self.total)

    def __call__(self, outcome: Outcome) -> None:
        self.trouble += outcome is not Outcome.SENT
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, trouble=self.trouble)


@contextmanager
def _progress(label: str) -> Iterator[_Bar]:
    """A live bar on a terminal: done/total, rate, ETA, failures; silence in logs and pipes."""
    if not console.is_terminal:
        yield _Bar(None, label)
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), _Rate(),
               TextColumn("{task.fields[trouble]} deferred/failed"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        yield _Bar(bar, label)


def _report_collect(collected: jobs.Collected) -> None:
    for feed in collected.failed:
        console.print(f"[yellow]feed failed:[/yellow] {feed.url}: {feed.error}")
    for feed in collected.skipped:
        console.print(f"[yellow]feed skipped:[/yellow] {feed.url}: {feed.skipped}")
    console.print(f"collected {collected.new} new articles from {len(collected.feeds)} feeds"
                  + (f", {len(collected.failed)} failed" if collected.failed else ""))


def _report_send(sent: jobs.Sent) -> None:
    console.print(sent.note)
    _report_deliveries(sent)


def _report_deliveries(sent: jobs.Sent) -> None:
    for tally in sent.tallies:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(tally.counts.items()))
        console.print(f"edition {tally.edition_id}: {counts or 'nothing due'} "
                      f"in {tally.seconds:.1f}s")
    if sent.recovered:
        console.print(f"[yellow]{sent.recovered} deliveries in doubt after an interrupted run "
                      "are marked unknown[/yellow]")


@main.command()
@click.pass_context
def collect(ctx: click.Context) -> None:
    """Fetch every feed now and store the new articles."""
    config = _config(ctx)
    with _store(config) as store:
        collected = jobs.collect(config, store)
    _report_collect(collected)
    ctx.exit(1 if collected.failed else 0)


@main.command()
@click.option("--dry-run", is_flag=True,
              help="render and count what would go out, with the time it would take; "
                   "send and record nothing")
@click.option("--cadence", type=click.Choice(CADENCES), default=CADENCES[0], show_default=True,
              help="which edition to make: the daily one, or the weekly round-up (for the "
                   "subscribers of that cadence)")
@click.pass_context
def send(ctx: click.Context, dry_run: bool, cadence: str) -> None:
    """Finish unfinished editions, then make and deliver this period's edition of the
    cadence (daily, or the weekly round-up with `--cadence weekly`).

    Ctrl-C or SIGTERM stops after the messages in flight, recorded; the rest wait for the
    next run (exit status 130 after Ctrl-C, 143 after SIGTERM). A second one stops at once."""
    config = _config(ctx)
    if dry_run:
        with _store(config) as store:
            _report_plan(config, jobs.plan(config, store, cadence))
        return
    started, stop = time.monotonic(), threading.Event()
    # Ctrl-C or SIGTERM: the messages in flight are finished and recorded, the rest wait.
    # Never beside a running scheduler: two senders on one ledger would mail people twice.
    with scheduling.stopped_by_signals(stop, logging.WARNING) as signals, \
            lock.held(config.paths, shared=True), _store(config) as store, \
            _progress("sending") as progress:
        sent = jobs.send(config, store, deliver.transport(config), progress=progress,
                         stop=stop, expect=progress.expect, cadence=cadence)
    _report_send(sent)
    _summarise(sent, time.monotonic() - started)
    if signals:
        console.print(f"stopped by {signal.Signals(signals[0]).name}: the messages in flight "
                      "were finished and recorded; the rest stay pending for the next run")
        ctx.exit(128 + signals[0])
    ctx.exit(1 if sent.troubled else 0)


def _report_plan(config: Config, plan: jobs.Plan) -> None:
    if plan.recipients:
        console.print(f"a new edition: {plan.articles} articles to {plan.recipients} "
                      f"subscribers, composed in {plan.compose_seconds * 1000:.0f} ms")
    else:
        console.print("no new edition would be made (no new articles or no subscribers)")
    if plan.queued:
        console.print(f"{plan.queued} messages still due from earlier editions")
    smtp = config.smtp
    if not plan.messages:
        console.print("dry run: nothing would be sent")
        return
    if smtp.rate:
        estimate = f"about {_duration(plan.messages / smtp.rate)} at smtp.rate = {smtp.rate:g}/s"
    else:
        estimate = ("no smtp.rate set: the relay sets the pace "
                    f"(about {_duration(plan.messages / 1000)} at 1,000 messages/s)")
    if smtp.hourly_cap and plan.messages > smtp.hourly_cap:
        estimate += (f"; smtp.hourly_cap = {smtp.hourly_cap} spreads it over at least "
                     f"{-(-plan.messages // smtp.hourly_cap)} hourly windows")
    console.print(f"dry run: {plan.messages} messages would be sent, {estimate}; nothing sent")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _summarise(sent: jobs.Sent, seconds: float) -> None:
    done = {outcome: sent.count(outcome) for outcome in Outcome}
    total = sum(done.values())
    console.print(f"sent {done[Outcome.SENT]}, deferred {done[Outcome.DEFERRED]}, "
                  f"failed {done[Outcome.FAILED] + sent.expired}, unknown {sent.recovered}; "
                  f"{seconds:.1f} s, {total / seconds if seconds else 0:,.0f} messages/s")


@main.command()
@click.option("--out", "out_path", required=True,
              type=click.Path(dir_okay=False, allow_dash=True),
              help="file to write, - for standard output")
@click.option("--text", is_flag=True, help="write the plain-text part instead of the HTML")
@click.pass_context
def render(ctx: click.Context, out_path: str, text: bool) -> None:
    """Write the edition that would go out now, without sending or recording anything."""
    config = _config(ctx)
    with _store(config) as store:
        rendered = jobs.preview(config, store)
    if rendered is None:
        console.print("no new articles: there is no edition to render (run `digest collect`)")
        return
    page = jobs.as_anyone(config, rendered.text if text else rendered.html,
                          rendered.marker)
    with _output(out_path) as (handle, where):
        handle.write(page)
    console.print(f"wrote {where} ({len(page.encode()):,} bytes): {rendered.subject}",
                  markup=False)


@contextmanager
def _output(path: str) -> Iterator[tuple[IO[str], str]]:
    """The file a command writes (`-`: standard output) and its name in words; a file that
    cannot be made is one line naming it."""
    if path == "-":
        yield sys.stdout, "standard output"
        return
    try:
        handle = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise DigestError(f"{path}: cannot write: {error.strerror or error}") from None
    with handle:
        yield handle, path


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Feeds' health, the last editions with their delivery counts, subscribers, the next
    runs; exit status 1 when something needs attention."""
    config = _config(ctx)
    with _store(config) as store:
        found = report.status(config, store, now())
    if as_json:
        out.print_json(json.dumps(found.as_json()))
    else:
        _print_status(config, found)
    ctx.exit(1 if found.attention else 0)


def _print_status(config: Config, found: report.StatusReport) -> None:
    table = Table("feed", "articles", "last success", "last error", "failures", "since",
                  "state", title="Feeds", title_justify="left")
    for shown in found.feeds:
        f = shown.feed
        table.add_row(f.name, str(f.articles), report.when(f.last_ok), f.last_error or "",
                      str(f.error_count) if f.error_count else "",
                      report.when(f.error_since) if f.error_count else "", shown.state)
    out.print(table)
    for shown in found.feeds:
        for note in shown.notes:
            out.print(f"{shown.feed.name} ({shown.feed.url}): {note}", markup=False)
    table = Table("id", "cadence", "created", "articles", "deliveries", "came back", "subject",
                  title="Editions", title_justify="left")
    for e in found.editions:
        words = report.STATE_WORDS[e.state]
        counts = ", ".join([f"{n} {s}" for s, n in sorted(e.counts.items())]
                           + ([words] if words else []))
        back = ", ".join(f"{n} {word}" for word, n in found.returned[e.id].items() if n)
        table.add_row(str(e.id), e.cadence, report.when(e.created_at), str(e.articles), counts,
                      back, e.subject)
    out.print(table)
    for held in found.held:
        table = Table("story", "section", "title", "choice", title_justify="left",
                      title=f"Edition {held.id}, held for approval")
        for card in held.cards:
            table.add_row(str(card.id), card.section, card.title,
                          str(held.choices.get(card.id, "")))
        out.print(table)
    by_cadence = ", ".join(f"{n} {cadence}" for cadence, n in found.cadences.items())
    out.print(f"Subscribers: {found.active} active ({by_cadence}), {found.suppressed} suppressed"
              + (f" ({report.reasons(found.suppressed_by_reason)})"
                 if found.suppressed_by_reason else "")
              + (f", {found.rejected_rows} rows rejected" if found.rejected_rows else ""))
    table = Table("job", "schedule", f"next run ({config.newsletter.timezone})",
                  title="Schedule", title_justify="left")
    for run in found.runs:
        at = run.at and run.at.astimezone(config.newsletter.zone).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(run.job, run.schedule,
                      "not a schedule (see below)" if run.problem else at or "never")
    out.print(table)
    out.print(f"Scheduler: running, PID {found.pid}" if found.pid else
              "Scheduler: not running on this state folder")
    for problem in found.attention:
        out.print(f"[red]needs attention:[/red] {problem}")


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


@main.command()
@click.argument("url")
@click.pass_context
def enable(ctx: click.Context, url: str) -> None:
    """Fetch a feed disabled after a 410 Gone again, from its configured URL."""
    config = _config(ctx)
    with _store(config) as store:
        if not store.feed_enabled(url):
            raise DigestError(f"{url}: no such feed in {config.paths.database} (give its URL "
                              "as configured)")
    console.print(f"{url}: enabled; the next collect fetches it")


@main.command()
@click.option("--to", "target", required=True, metavar="URL",
              help="an empty PostgreSQL database, postgresql://user@host/name (its password "
                   "from PGPASSWORD or ~/.pgpass, never on the command line)")
@click.pass_context
def migrate(ctx: click.Context, target: str) -> None:
    """Copy the SQLite state, every table, into an empty PostgreSQL database and check the
    rows of each; then set [store] url to it. The SQLite file is left as it was."""
    config = _config(ctx)
    wanted = configuration.Store(target)
    configuration.check_store(wanted, "--to")
    if not wanted.postgres:
        raise DigestError(f"--to must be a postgresql:// URL, not {target!r}")
    source = config.paths.database
    if not isinstance(source, Path):
        raise DigestError(f"the state is in PostgreSQL already ({source}): migrate copies a "
                          "SQLite state")
    if not source.is_file():
        raise DigestError(f"{source}: no SQLite state to copy")
    # Under the state folder's lock: nothing writes to the file while it is copied.
    with lock.held(config.paths), Store(source) as sqlite, Store(target) as postgres:
        copied = copy_state(sqlite, postgres)
    for table, count in copied.items():
        console.print(f"{table}: {count:,} rows", markup=False)
    console.print(f"copied {sum(copied.values()):,} rows in {len(copied)} tables into {target}, "
                  f"every count checked; set [store] url = \"{target}\" to run on it",
                  markup=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2525, show_default=True, type=PORT)
@click.option("--maildir", type=click.Path(file_okay=False), help="default: paths.outbox")
@click.pass_context
def sink(ctx: click.Context, host: str, port: int, maildir: str | None) -> None:
    """Run the local SMTP sink: accepts every message and writes it into a Maildir."""
    config = _config(ctx)
    folder = Path(maildir) if maildir else config.paths.outbox
    server = Sink(folder, host, port)
    try:
        server.__enter__()
    except OSError as error:
        raise DigestError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    console.print(f"SMTP sink listening on {server.host}:{server.port}, writing to {folder}/new "
                  "(Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print(f"stopped after {server.received} messages")
    finally:
        server.__exit__(None, None, None)


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """One whole cycle on the embedded defaults: the bundled sample feed and list, a local
    SMTP sink, and a folder of its own, ./digest-demo, made afresh at each run. It reads no
    configuration file and never touches a newsletter's state or list."""
    folder = Path.cwd() / jobs.DEMO_FOLDER
    console.print(f"demo: the bundled sample feed and subscriber list; state, mail and page "
                  f"in {folder} (made afresh; no configuration is read)", markup=False)
    with _progress("sending") as progress:
        done = jobs.demo(folder, progress=progress, expect=progress.expect)
    _report_collect(done.collected)
    _report_send(done.sent)
    console.print(f"\n[bold]Demo done.[/bold] {done.collected.new} articles collected; "
                  f"{done.sent.count(Outcome.SENT)} messages delivered over SMTP to the sink")
    console.print(f"  Maildir:  {done.maildir}/new", markup=False)
    if done.page:
        console.print(f"  Edition:  {done.page.resolve().as_uri()}  (open in a browser)",
                      markup=False)
    ctx.exit(1 if done.sent.troubled else 0)


@main.command()
@click.option("--host", help="address to listen on (default: web.host)")
@click.option("--port", type=PORT, help="port to listen on (default: web.port)")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the public web app: one-click unsubscribe, sign-up, archive of editions."""
    import uvicorn  # only this command needs it

    config = _config(ctx)
    host, port = host or config.web.host, port or config.web.port
    application = public.app(config)
    listening = _listen(host, port)
    console.print(f"serving on http://{host}:{port} for {config.newsletter.public_url} "
                  "(Ctrl-C to stop)")
    uvicorn.Server(uvicorn.Config(
        application, proxy_headers=True, server_header=False,
        forwarded_allow_ips=config.web.trusted_proxies, log_level="warning",
        lifespan="off")).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """The web server's socket, bound here: a port in use is one line, before anything says
    "serving on" (uvicorn would log its own error first, then exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise DigestError(f"cannot listen on {host}:{port}: {why}") from None


@main.group(name="subscribers")
def subscribers_group() -> None:
    """Check the subscriber list, or write it as the next send will see it."""


@subscribers_group.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Report every rejected row of subscribers.csv; exit status 1 if there is one."""
    config = _config(ctx)
    with _store(config) as store:
        listed, roster = jobs.roster(config, store, quiet=True)
        gone = {subscriber_list.key(email) for email in store.suppressed()}
        resting = {address for address, chosen in store.preferences().items() if chosen.paused}
    path = config.paths.subscribers
    for problem in roster.problems:
        out.print(f"{path}:{problem.line}: {problem.reason}", markup=False)
    # Who is left out and why: an opt-out first, then a pause on the preferences page.
    keys = [subscriber_list.key(s.email) for s in roster.subscribers]
    suppressed = sum(address in gone for address in keys)
    paused = sum(address in resting and address not in gone for address in keys)
    out.print(f"{len(listed)} to mail, {suppressed} suppressed, {paused} paused on their "
              f"preferences page, {roster.held} paused or unsubscribed in the file, "
              f"{len(roster.problems)} rows rejected", markup=False)
    ctx.exit(1 if roster.problems else 0)


@subscribers_group.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
              default="-", show_default=True, help="file to write, - for standard output")
@click.pass_context
def export(ctx: click.Context, out_path: str) -> None:
    """Write the list as the next send will see it: valid, active, with the subscribers' own
    preferences and the suppressions applied."""
    config = _config(ctx)
    with _store(config) as store:
        listed, roster = jobs.roster(config, store, quiet=True)
        by_reason = store.suppressed_by_reason()
    with _output(out_path) as (handle, _):
        count = subscriber_list.write(listed, roster.fields, handle)
    console.print(f"{count} subscribers written"
                  + (f"; {len(roster.problems)} rows rejected (see `digest subscribers check`)"
                     if roster.problems else "")
                  + (f"; suppressed, not written: {report.reasons(by_reason)}"
                     if by_reason else ""))


@subscribers_group.command()
@click.argument("addresses", nargs=-1, required=True)
@click.pass_context
def unsubscribe(ctx: click.Context, addresses: tuple[str, ...]) -> None:
    """Suppress addresses (e.g. from the List-Unsubscribe mailbox): never mailed again unless
    they sign up and confirm. One that is not an address is named and skipped; the others are
    still suppressed (exit status 1)."""
    config = _config(ctx)
    emails, wrong = [], 0
    for address in addresses:
        try:
            emails.append(subscriber_list.normalise(address))
        except EmailNotValidError as error:
            # The others are still suppressed: each one asked not to be mailed.
            console.print(f"{address}: not an address, not suppressed: {error}", markup=False)
            wrong += 1
    with _store(config) as store:
        for email in emails:
            store.suppress(email, "unsubscribed", "operator")
    console.print(f"{len(emails)} addresses suppressed"
                  + (f"; {wrong} not an address (see above)" if wrong else ""))
    ctx.exit(1 if wrong else 0)


@main.command()
@click.argument("edition", type=int)
@click.option("--to-failed", is_flag=True, help="the addresses whose delivery failed (5xx)")
@click.option("--to-unknown", is_flag=True,
              help="the addresses in doubt after a crash (they may have it already)")
@click.option("--to", "address", metavar="ADDRESS",
              help="one address, whether or not it was on the list")
@click.pass_context
def resend(ctx: click.Context, edition: int, to_failed: bool, to_unknown: bool,
           address: str | None) -> None:
    """Deliver an edition again to the addresses you choose: the operator's decision."""
    statuses = tuple(s for s, chosen in (("failed", to_failed), ("unknown", to_unknown))
                     if chosen)
    if not statuses and not address:
        raise DigestError("say whom to resend to: --to-failed, --to-unknown or --to ADDRESS")
    config = _config(ctx)
    with _store(config) as store:
        try:
            state = store.state(edition)
        except KeyError:
            raise DigestError(f"edition {edition} does not exist (see `digest status`)") from None
        if not state.mailed:
            raise DigestError(f"edition {edition} was never mailed (it is {state}): nothing "
                              "to resend")
        one = _recipient(config, store, address) if address else None
        chosen = store.requeue(edition, statuses) if statuses else []
        if one is not None:
            store.requeue_address(edition, one)
            chosen.append(one.email)
        console.print(f"edition {edition}: {len(chosen)} deliveries back to pending"
                      + (f" ({', '.join(chosen[:5])}{', …' if len(chosen) > 5 else ''})"
                         if chosen else ""))
        holder = lock.holder(config.paths)
        if not chosen:
            return
        if holder:
            console.print(f"the running scheduler (PID {holder}) delivers them at its next "
                          f"reconcile (every {config.schedule.reconcile})")
            return
        started = time.monotonic()
        with lock.held(config.paths), _progress("resending") as progress:
            sent = jobs.send(config, store, deliver.transport(config), progress=progress,
                             expect=progress.expect, new_edition=False)
    _report_deliveries(sent)
    _summarise(sent, time.monotonic() - started)
    ctx.exit(1 if sent.troubled else 0)


@main.command()
@click.argument("edition", type=int)
@click.option("--drop", multiple=True, type=int, metavar="ID",
              help="leave this story out (repeatable); it goes back to the pool")
@click.option("--pin", multiple=True, type=int, metavar="ID",
              help="put this story first (repeatable)")
@click.option("--intro", metavar="TEXT", help="the edition's intro, above the stories")
@click.option("--discard", is_flag=True,
              help="the dropped stories are never mailed, not kept for the next edition")
@click.pass_context
def approve(ctx: click.Context, edition: int, drop: tuple[int, ...], pin: tuple[int, ...],
            intro: str | None, discard: bool) -> None:
    """Send an edition held for approval (newsletter.approval), with these choices on top of
    those saved in the preview. `digest status` lists its stories' IDs."""
    config = _config(ctx)
    started = time.monotonic()
    with _store(config) as store:
        approved = jobs.approve(config, store, edition, drop, pin, intro, discard)
        console.print(f"edition {approved.id} approved: {approved.subject}", markup=False)
        with _progress("sending") as progress:
            sent = jobs.deliver_released(config, store, progress, progress.expect)
    if sent is None:
        console.print(f"the running scheduler (PID {lock.holder(config.paths)}) "
                      f"delivers it at its next reconcile (every {config.schedule.reconcile})")
        return
    _report_deliveries(sent)
    _summarise(sent, time.monotonic() - started)
    ctx.exit(1 if sent.troubled else 0)


def _recipient(config: Config, store: Store, address: str) -> Subscriber:
    """The address as a subscriber (with the list's name for it, if it is on the list)."""
    try:
        email = subscriber_list.normalise(address)
    except EmailNotValidError as error:
        raise DigestError(f"{address}: not an address: {error}") from None
    if email in store.suppressed():
        raise DigestError(f"{email} is suppressed (unsubscribed or bounced): not resending")
    listed, _ = jobs.roster(config, store)
    return next((s for s in listed if s.email == email), Subscriber(email))


@main.command("check")
@click.pass_context
def check_command(ctx: click.Context) -> None:
    """Try config, schedule, templates, subscribers, state and the relay without sending."""
    config = _config(ctx)
    if config.source:
        console.print(f"configuration: {config.source}", markup=False)
    findings = checks.run(config)
    colours = {checks.Level.OK: "green", checks.Level.WARNING: "yellow",
               checks.Level.PROBLEM: "red"}
    for finding in findings:
        level = finding.level
        out.print(f"[{colours[level]}]{level:<7}[/{colours[level]}] {finding.part}: "
                  f"{escape(finding.detail)}")
    problems = sum(finding.level is checks.Level.PROBLEM for finding in findings)
    warnings = sum(finding.level is checks.Level.WARNING for finding in findings)
    console.print((_count(problems, "problem") if problems else "everything checks out")
                  + (f"; {_count(warnings, 'warning')}" if warnings else ""))
    ctx.exit(1 if problems else 0)


@main.command()
@click.option("--port", default=8081, show_default=True, type=PORT)
@click.option("--feed", metavar="URL|PATH",
              help="preview this feed instead of the articles collected and not yet mailed")
@click.pass_context
def preview(ctx: click.Context, port: int, feed: str | None) -> None:
    """The editors' live preview of the next edition, on 127.0.0.1 only."""
    import uvicorn

    from digest.web import preview as previewing

    config = _config(ctx)  # a broken config stops here, with its message
    app = previewing.app(ctx.meta.get(CONFIG_KEY), feed)
    listening = _listen(previewing.HOST, port)
    console.print(f"preview of {feed or 'the next edition'} at "
                  f"http://{previewing.HOST}:{port}/ (templates: {config.paths.templates}; "
                  "Ctrl-C to stop)", markup=False)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])


@main.command("inbox")
@click.argument("stdin", required=False, metavar="[-]")
@click.option("--maildir", type=click.Path(file_okay=False, path_type=Path),
              help="read every message in this Maildir's new/ and cur/")
@click.option("--imap", is_flag=True, help="read inbox.folder on the [inbox] IMAP server "
                                           "(password: DIGEST_INBOX_PASSWORD)")
@click.option("--dry-run", is_flag=True, help="decide and report; change and move nothing")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per message")
@click.pass_context
def inbox_command(ctx: click.Context, stdin: str | None, maildir: Path | None, imap: bool,
                  dry_run: bool, as_json: bool) -> None:
    """Act on what came back: bounces, complaints, mailto unsubscribes.

    `-` reads one message on standard input (an MTA piping to digest) and keeps it in
    inbox.maildir. Handled messages are moved aside (the Maildir's .handled subfolder, the
    IMAP folder inbox.handled_folder); any other mail is left exactly where it was."""
    if stdin not in (None, "-") or (stdin == "-") + (maildir is not None) + imap != 1:
        raise DigestError("say what to read: --maildir DIR, --imap, or - for one message on "
                          "standard input")
    config = _config(ctx)
    with ExitStack() as stack:
        if stdin == "-":
            # A dry run keeps nothing: the message goes to a folder that is gone afterwards.
            folder = Path(stack.enter_context(TemporaryDirectory())) if dry_run \
                else config.inbox.maildir
            box: mailboxes.Mailbox = mailboxes.keep(folder, sys.stdin.buffer)
        elif maildir is not None:
            box = mailboxes.Maildir(maildir)
        else:
            box = mailboxes.Imap(config.inbox)
        stack.callback(box.close)
        store = stack.enter_context(_store(config))
        read = [_report_inbound(handled, as_json)
                for handled in jobs.inbox(config, store, box, dry_run)]
    _summarise_inbox(read, dry_run)
    ctx.exit(1 if any(handled.report is None for handled in read) else 0)


def _report_inbound(handled: jobs.Handled, as_json: bool) -> jobs.Handled:
    report, decision = handled.report, handled.decision
    note = handled.problem or (decision.note if decision else "")
    if as_json:
        click.echo(json.dumps({
            "message": handled.name, "kind": report.kind.value if report else None,
            "recipients": [{"address": r.address, "status": r.status, "hard": r.hard}
                           for r in (report.recipients if report else ())],
            "action": handled.action.value, "note": note,
            "suppressed": [s.email for s in decision.suppress] if decision else [],
            "moved": handled.set_aside}))
        return handled
    if report is None:
        out.print(f"{handled.name}: skipped: {note}", markup=False)
        return handled
    named = ", ".join(f"{r.address} {r.status or '(no code)'} {'hard' if r.hard else 'soft'}"
                      for r in report.recipients) if report.kind is inboxes.Kind.BOUNCE else ""
    done = handled.action.value
    if decision and decision.suppress:
        done += " " + ", ".join(f"{s.email} ({s.reason})" for s in decision.suppress)
    out.print(f"{handled.name}: {report.kind.value}{f' [{named}]' if named else ''}: {done}"
              + (f" ({note})" if note else ""), markup=False)
    return handled


def _summarise_inbox(read: list[jobs.Handled], dry_run: bool) -> None:
    kinds = Counter(h.report.kind.value for h in read if h.report)
    actions = Counter(h.action.value for h in read if h.report and h.action.value != "ignored")
    skipped = sum(h.report is None for h in read)
    aside = sum(h.set_aside for h in read)
    parts = [", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "nothing",
             ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
             or "no change", f"{aside} set aside, {len(read) - aside - skipped} left in place"
             + (f", {skipped} skipped" if skipped else "")]
    console.print(f"read {len(read)} messages: " + "; ".join(parts)
                  + ("; dry run: nothing changed or moved" if dry_run else ""))
