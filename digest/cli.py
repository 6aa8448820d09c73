"""The `digest` command.

Exit statuses mean the same everywhere: 0 done (or nothing to do), 1 finished but something
needs a look (a feed failed, a delivery was deferred, failed or is unknown), 2 a usage or
configuration error. A user's mistake is one line naming the thing; a traceback is a bug.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from email_validator import EmailNotValidError, validate_email
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from digest import check as checks
from digest import config as configuration
from digest import deliver, jobs, lock, scheduling
from digest.config import Config
from digest.errors import DigestError
from digest.records import Outcome, Subscriber
from digest.sink import Sink
from digest.store import EditionSummary, FeedState, Store, now

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class Command(click.Group):
    """Turns a DigestError anywhere below into its message and exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as error:
            console.print(f"[red]error:[/red] {error}", markup=True, soft_wrap=True)
            ctx.exit(error.status)


@click.group(cls=Command)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="digest.toml to use (default: $DIGEST_CONFIG, else ./digest.toml, else "
                   "built-in defaults)")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.version_option(package_name="digest")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Newsletter digests from RSS/Atom feeds, composed once and mailed to every subscriber."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)
    ctx.obj = config_path


def _config(ctx: click.Context) -> Config:
    return configuration.load(ctx.obj)


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    with Store(config.paths.database) as store:
        yield store


@contextmanager
def _progress(label: str) -> Iterator[Callable[[Outcome], None]]:
    """A live bar on a terminal; silence in logs and pipes."""
    if not console.is_terminal:
        yield lambda outcome: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[trouble]} deferred/failed"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, trouble=0)
        trouble = 0

        def advance(outcome: Outcome) -> None:
            nonlocal trouble
            trouble += outcome is not Outcome.SENT
            bar.update(task, advance=1, trouble=trouble)

        yield advance


def _report_collect(collected: jobs.Collected) -> None:
    for feed in collected.failed:
        console.print(f"[yellow]feed failed:[/yellow] {feed.url}: {feed.error}")
    console.print(f"collected {collected.new} new articles from {len(collected.feeds)} feeds"
                  + (f", {len(collected.failed)} failed" if collected.failed else ""))


def _report_send(sent: jobs.Sent) -> None:
    console.print(sent.note)
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
@click.pass_context
def send(ctx: click.Context) -> None:
    """Finish unfinished editions, then make and deliver this period's edition."""
    config = _config(ctx)
    # Never beside a running scheduler: two senders on one ledger would mail people twice.
    with lock.held(config.paths.state), _store(config) as store, \
            _progress("sending") as progress:
        sent = jobs.send(config, store, deliver.transport(config), progress=progress)
    _report_send(sent)
    ctx.exit(1 if sent.troubled else 0)


@main.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="file to write")
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
    path = Path(out_path)
    path.write_text(rendered.text if text else rendered.html, encoding="utf-8")
    console.print(f"wrote {path} ({path.stat().st_size:,} bytes): {rendered.subject}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Feeds' health, the last editions with their delivery counts, subscribers."""
    config = _config(ctx)
    with _store(config) as store:
        feeds, editions = store.feeds(), store.editions()
        listed, roster = jobs.roster(config, store)
        suppressed = len(store.suppressed())
    report = {
        "feeds": [{"url": f.url, "name": f.name, "articles": f.articles,
                   "last_ok": f.last_ok and f.last_ok.isoformat(), "last_error": f.last_error,
                   "error_count": f.error_count,
                   "error_since": f.error_since and f.error_since.isoformat()} for f in feeds],
        "editions": [{"id": e.id, "period": e.period, "created_at": e.created_at.isoformat(),
                      "subject": e.subject, "articles": e.articles, "deliveries": e.counts}
                     for e in editions],
        "subscribers": {"active": len(listed), "suppressed": suppressed,
                        "rejected_rows": len(roster.problems)},
    }
    moment = now()
    runs = scheduling.next_runs(config, moment)
    report["scheduler"] = {"pid": lock.holder(config.paths.state),
                           "next": [{"job": run.job, "schedule": run.schedule,
                                     "at": run.at and run.at.isoformat()} for run in runs]}
    report["attention"] = attention(feeds, editions, moment)
    if as_json:
        out.print_json(json.dumps(report))
        ctx.exit(1 if report["attention"] else 0)
    table = Table(title="Feeds", title_justify="left")
    for column in ("feed", "articles", "last success", "last error", "failures"):
        table.add_column(column)
    for f in feeds:
        table.add_row(f.name, str(f.articles), _when(f.last_ok), f.last_error or "",
                      str(f.error_count) if f.error_count else "")
    out.print(table)
    table = Table(title="Editions", title_justify="left")
    for column in ("id", "created", "articles", "deliveries", "subject"):
        table.add_column(column)
    for e in editions:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(e.counts.items()))
        table.add_row(str(e.id), _when(e.created_at), str(e.articles), counts, e.subject)
    out.print(table)
    out.print(f"Subscribers: {len(listed)} active, {suppressed} suppressed"
              + (f", {len(roster.problems)} rows rejected" if roster.problems else ""))
    _print_schedule(config, report["scheduler"]["pid"], runs)
    for problem in report["attention"]:
        out.print(f"[red]needs attention:[/red] {problem}")
    ctx.exit(1 if report["attention"] else 0)


# A feed failing this long is down, not having a bad moment.
FEED_DOWN = timedelta(hours=24)


def attention(feeds: list[FeedState], editions: list[EditionSummary],
              moment: datetime) -> list[str]:
    """What an operator must look at: feeds failing for a day, editions with deliveries that
    failed or are in doubt. `digest status` exits 1 while this is not empty."""
    problems = [f"feed {f.url} failing since {_when(f.error_since)}: {f.last_error}"
                for f in feeds if f.error_since and moment - f.error_since >= FEED_DOWN]
    for e in editions:
        stuck = {s: e.counts[s] for s in ("failed", "unknown") if e.counts.get(s)}
        if stuck:
            counts = ", ".join(f"{n} {s}" for s, n in stuck.items())
            problems.append(f"edition {e.id}: {counts} (see `digest resend {e.id} --help`)")
    return problems


def _print_schedule(config: Config, pid: int | None, runs: list[scheduling.NextRun]) -> None:
    zone = config.newsletter.zone
    table = Table(title="Schedule", title_justify="left")
    for column in ("job", "schedule", f"next run ({config.newsletter.timezone})"):
        table.add_column(column)
    for run in runs:
        table.add_row(run.job, run.schedule,
                      run.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if run.at else "never")
    out.print(table)
    out.print(f"Scheduler: running, PID {pid}" if pid else
              "Scheduler: not running on this state folder")


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2525, show_default=True, type=int)
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
    """One whole cycle on embedded defaults: collect, compose, send through a local SMTP sink."""
    config = _config(ctx)
    with _store(config) as store:
        collected = jobs.collect(config, store)
        _report_collect(collected)
        with Sink(config.paths.outbox) as server:
            local = jobs.with_transport(config, host=server.host, port=server.port,
                                        security="none", username="")
            with _progress("sending") as progress:
                sent = jobs.send(local, store, deliver.transport(local), progress=progress)
        _report_send(sent)
        latest = store.editions(1)
        page = None
        if latest:
            edition = store.edition(latest[0].id)
            page = config.paths.state / f"edition-{edition.id}.html"
            page.write_text(edition.html, encoding="utf-8")
    console.print(f"\n[bold]Demo done.[/bold] {collected.new} articles collected; "
                  f"{sent.count(Outcome.SENT)} messages delivered over SMTP to the sink")
    console.print(f"  Maildir:  {config.paths.outbox}/new")
    if page:
        console.print(f"  Edition:  {page.resolve().as_uri()}  (open in a browser)")
    ctx.exit(1 if sent.troubled else 0)


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
            store.edition(edition)
        except KeyError:
            raise DigestError(f"edition {edition} does not exist (see `digest status`)") from None
        one = _recipient(config, store, address) if address else None
        chosen = store.requeue(edition, statuses) if statuses else []
        if one is not None:
            store.requeue_address(edition, one)
            chosen.append(one.email)
        console.print(f"edition {edition}: {len(chosen)} deliveries back to pending"
                      + (f" ({', '.join(chosen[:5])}{', …' if len(chosen) > 5 else ''})"
                         if chosen else ""))
        holder = lock.holder(config.paths.state)
        if not chosen:
            return
        if holder:
            console.print(f"the running scheduler (PID {holder}) delivers them at its next "
                          f"reconcile (every {config.schedule.reconcile})")
            return
        with lock.held(config.paths.state), _progress("resending") as progress:
            sent = jobs.send(config, store, deliver.transport(config), progress=progress,
                             new_edition=False)
    _report_send(sent)
    ctx.exit(1 if sent.troubled else 0)


def _recipient(config: Config, store: Store, address: str) -> Subscriber:
    """The address as a subscriber (with the list's name for it, if it is on the list)."""
    try:
        email = validate_email(address, check_deliverability=False).normalized
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
    console.print(f"configuration: {config.source or 'built-in defaults'}")
    findings = checks.run(config)
    for finding in findings:
        mark = "[green]ok[/green]     " if finding.ok else "[red]problem[/red]"
        out.print(f"{mark} {finding.part}: {finding.detail}")
    problems = sum(not finding.ok for finding in findings)
    console.print(f"{problems} problems" if problems else "everything checks out")
    ctx.exit(1 if problems else 0)
