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
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from digest import config as configuration
from digest import deliver, jobs
from digest.config import Config
from digest.errors import DigestError
from digest.records import Outcome
from digest.sink import Sink
from digest.store import Store

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
    with _store(config) as store, _progress("sending") as progress:
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
    if as_json:
        out.print_json(json.dumps(report))
        return
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
@click.option("--port", default=8081, show_default=True, type=int)
@click.option("--feed", metavar="URL|PATH",
              help="preview this feed instead of the articles collected and not yet mailed")
@click.pass_context
def preview(ctx: click.Context, port: int, feed: str | None) -> None:
    """The editors' live preview of the next edition, on 127.0.0.1 only."""
    import uvicorn

    from digest import preview as previewing

    config = _config(ctx)  # a broken config stops here, with its message
    app = previewing.app(ctx.obj, feed)
    console.print(f"preview of {feed or 'the next edition'} at "
                  f"http://{previewing.HOST}:{port}/ (templates: {config.paths.templates}; "
                  "Ctrl-C to stop)")
    uvicorn.run(app, host=previewing.HOST, port=port, log_level="warning")
