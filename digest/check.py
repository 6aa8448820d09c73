"""`digest check`: everything a send will need, tried without sending, every problem at once.

    schedule | templates (render the sample feed) | subscribers | state folder | links
    | transport (SMTP: connect, EHLO, STARTTLS, AUTH, QUIT through the transport a send
    uses; never MAIL)
    | deliverability (SMTP only: the From domain's SPF, DKIM and DMARC in DNS)

Each step's failure is a finding, not an exception, so one broken part does not hide the next.
A warning is something that works but is likely not what the operator meant.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from digest import cards, feeds, lock, scheduling, subscribers, transport
from digest.compose import Composer, Letter
from digest.config import SAMPLE_FEED, Config, Smtp
from digest.deliverability import Standing, review
from digest.errors import DigestError
from digest.records import Card, Delivery, Edition
from digest.store import Store, now
from digest.transport import SmtpTransport, TransportDown


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but mail would not do what the operator means
    PROBLEM = "problem"  # a send would fail or lose something: `digest check` exits 1


@dataclass(frozen=True)
class Finding:
    part: str  # schedule, templates, subscribers, state, links, smtp, maildir, spf, dkim, dmarc
    level: Level
    detail: str


def run(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    for part, probe in (("schedule", _schedule), ("templates", _templates),
                        ("subscribers", _subscribers), ("state", _state)):
        findings += _findings(part, probe, config)
    findings += _links(config)
    if config.delivery.transport == "smtp":
        findings += _findings("smtp", lambda c: [smtp(c.smtp)], config)
        findings += _deliverability(config)
    else:
        findings += _findings("maildir", _maildir, config)
    return findings


def _findings(part: str, probe: Callable[[Config], list[str]], config: Config) -> list[Finding]:
    """A probe returns what it verified and raises DigestError for what it could not."""
    try:
        return [Finding(part, Level.OK, detail) for detail in probe(config)]
    except _Problems as problems:
        return [Finding(part, Level.PROBLEM, detail) for detail in problems.details]
    except DigestError as error:
        return [Finding(part, Level.PROBLEM, str(error))]


class _Problems(Exception):
    def __init__(self, details: list[str]) -> None:
        super().__init__(details)
        self.details = details


def _schedule(config: Config) -> list[str]:
    problems, fine = [], []
    triggers: dict[str, Callable[[], object]] = {
        "collect": lambda: scheduling.collect_trigger(config, now()),
        "send": lambda: scheduling.send_trigger(config),
        "weekly": lambda: scheduling.send_trigger(config, "weekly")}
    for name, make in triggers.items():
        try:
            make()
            fine.append(f"{name}: {getattr(config.schedule, name)!r}")
        except DigestError as error:
            problems.append(str(error))
    for key in ("jitter", "grace", "reconcile"):
        try:
            config.schedule.span(key)
        except DigestError as error:
            problems.append(str(error))
    newsletter = config.newsletter
    if newsletter.min_articles > newsletter.max_articles:
        problems.append(f"newsletter.min_articles = {newsletter.min_articles} is more than "
                        f"newsletter.max_articles = {newsletter.max_articles}: no edition "
                        "would ever be made")
    if problems:
        raise _Problems(problems)
    return [", ".join(fine) + f" in {config.newsletter.timezone}"]


def _templates(config: Config) -> list[str]:
    """Render the bundled sample feed through the configured templates, as a send would."""
    seen = now()
    parsed = feeds.parse(feeds.fetch(None, str(SAMPLE_FEED)))  # type: ignore[arg-type]
    samples = [cards.article(entry, str(SAMPLE_FEED), config.newsletter.teaser_length, seen)
               for entry in parsed.entries]
    chosen = [Card(number, a.title, a.link, a.teaser, a.image, a.published or seen, "Sample")
              for number, a in enumerate(samples, 1)]
    rendered = Composer(config).render(chosen, 0, seen)
    edition = Edition(0, "check", seen, rendered.subject, rendered.html, rendered.text,
                      rendered.marker)
    message = Letter(config, edition, lambda email: f"{config.newsletter.public_url}/u").bytes_for(
        Delivery(0, "reader@example.com", "Reader"))
    return [f"{config.paths.templates}: the sample renders ({len(chosen)} cards, "
            f"{len(message):,} bytes a message)"]


def _subscribers(config: Config) -> list[str]:
    # With the configured sections, so that a row naming no feed is reported here as a send
    # would report it.
    listed = subscribers.read(config.paths.subscribers, [feed.title for feed in config.feeds])
    problems = [f"{config.paths.subscribers}:{p.line}: {p.reason}" for p in listed.problems]
    if not listed.subscribers:
        problems.append(f"{config.paths.subscribers}: no valid subscribers")
    if problems:
        raise _Problems(problems)
    return [f"{config.paths.subscribers}: {len(listed.subscribers)} valid"]


def _state(config: Config) -> list[str]:
    try:
        with Store(config.paths.database) as store:
            editions = len(store.editions(1_000_000))
    except (OSError, sqlite3.Error) as error:
        raise DigestError(f"{config.paths.database}: cannot open: {error}") from None
    holder = lock.holder(config.paths)
    running = f"; a scheduler runs (PID {holder})" if holder else ""
    return [f"{config.paths.database}: {editions} editions{running}"]


def _links(config: Config) -> list[Finding]:
    """Mailed links start with newsletter.public_url: pointing at this machine, they work in
    the maildir outbox and a local sink, not in a subscriber's mailbox."""
    url = config.newsletter.public_url
    if config.delivery.transport != "smtp" or not _loopback(urlsplit(url).hostname or ""):
        return []
    return [Finding("links", Level.WARNING,
                    f"newsletter.public_url = {url!r} is this machine (loopback): the "
                    "unsubscribe, archive and view-in-browser links in mail sent over SMTP "
                    "would point nowhere; set it to where `digest serve` is reached")]


# A record that would fail our mail is a problem; a lookup that got no answer only a warning.
_STANDINGS = {Standing.PASSES: Level.OK, Standing.FAILS: Level.PROBLEM,
              Standing.UNKNOWN: Level.WARNING}


def _deliverability(config: Config) -> list[Finding]:
    """The From domain's SPF, DKIM and DMARC records, looked up in DNS (deliverability.py)."""
    return [Finding(verdict.part, _STANDINGS[verdict.standing], verdict.detail)
            for verdict in review(config)]


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _maildir(config: Config) -> list[str]:
    folder = config.paths.outbox
    try:
        for sub in ("new", "cur", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DigestError(f"{folder}: cannot write the Maildir: {error.strerror}") from None
    return [f"{folder}: Maildir writable (delivery.transport = \"maildir\": nobody is mailed)"]


def smtp(settings: Smtp) -> str:
    """Open the connection a send opens (TLS, EHLO, AUTH), then QUIT without a MAIL command."""
    where = SmtpTransport(settings).where
    try:
        transport.probe(settings)
    except TransportDown as error:
        raise DigestError(f"SMTP {where}: {error}") from None
    steps = ["connected over TLS" if settings.security == "ssl" else "connected", "EHLO"]
    steps += ["STARTTLS"] if settings.security == "starttls" else []
    steps += [f"AUTH as {settings.username}"] if settings.username else []
    return f"SMTP {where}: {', '.join(steps)}; nothing sent"
