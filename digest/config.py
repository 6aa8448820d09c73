"""Configuration: `digest.toml` read once into frozen dataclasses, every key optional.

The dataclasses below are the single source of truth: their fields are the keys, their types
are checked, their defaults are what runs with no file at all. Secrets never live in the file;
they come from the environment (DIGEST_SMTP_PASSWORD, DIGEST_SECRET).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from email.headerregistry import HeaderRegistry
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from digest import filters
from digest.errors import DigestError

CONFIG_NAME = "digest.toml"
PACKAGE = Path(__file__).parent
SAMPLE_FEED = PACKAGE / "sample" / "feed.xml"


def bundled(name: str) -> Path:
    """A file shipped with digest: inside a built wheel it sits in the package, in a checkout at
    the top level, where editors find it."""
    inside = PACKAGE / "bundled" / name
    return inside if inside.exists() else PACKAGE.parent / name


@dataclass(frozen=True)
class Social:
    name: str
    url: str


@dataclass(frozen=True)
class Newsletter:
    name: str = "Example Digest"
    sender: str = field(default="Example Digest <digest@example.com>", metadata={"key": "from"})
    reply_to: str = ""
    public_url: str = "http://127.0.0.1:8080"
    timezone: str = "UTC"
    language: str = "en"
    max_articles: int = 20
    # Fewer new articles than this: no edition; they wait for the next period.
    min_articles: int = 1
    # Jinja2, with `newsletter`, `date_text`, `headline` (the first card's title) and `count`.
    subject: str = "{{ newsletter.name }}: {{ headline }}"
    intro: str = ""
    preheader: str = ""
    postal_address: str = ""
    teaser_length: int = 200
    # Where the List-Unsubscribe mailto: points; empty means unsubscribe@<the From domain>.
    unsubscribe_mailto: str = ""
    social: tuple[Social, ...] = ()
    # The masthead's picture: an http(s) URL, shown 40 px high beside the name; empty: none.
    logo: str = ""
    # Each edition is made at its slot and held until an editor approves it (the preview, or
    # `digest approve`); past schedule.approval_timeout it is sent as it is, or skipped.
    approval: bool = False
    approval_fallback: str = "send"  # "send" or "skip"
    # Read the send slots in each subscriber's own zone (their `timezone`, else this one's):
    # one edition per slot, its deliveries due at each zone's local slot.
    local_time: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def domain(self) -> str:
        """The From address's domain: Message-IDs and the List-Id live under it."""
        return self.sender.rpartition("@")[2].strip(" >").lower() or "localhost"

    @property
    def list_id(self) -> str:
        """RFC 2919's identifier: unsubscribe tokens are signed for it, so one list's token
        cannot unsubscribe from another."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "digest"
        return f"{slug}.{self.domain}"


@dataclass(frozen=True)
class Feed:
    url: str
    name: str = ""
    # Read an entry's own page for the picture or teaser the feed left out (enrich.py).
    enrich: bool = True
    # Case-insensitive regular expressions searched in title, teaser and categories: an entry
    # is mailed only if it matches one `include` (when any are given) and no `exclude`.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # At most this many of the feed's stories in one edition; the rest wait for the next.
    max_per_edition: int | None = None
    # A duration ("7d"): an entry first seen dated longer ago than this is never mailed.
    max_age: str = ""

    @property
    def title(self) -> str:
        return self.name or self.url

    @property
    def rules(self) -> filters.Rules:
        """The filters, compiled (config load has checked that they compile)."""
        return filters.Rules(filters.patterns(self.include), filters.patterns(self.exclude),
                             duration(self.max_age) if self.max_age else None)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta | None:
    """"90s", "30m", "6h", "1d" as a timedelta; None when `text` is not one (a cron line)."""
    match = _DURATION.match(text)
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]]) if match else None


@dataclass(frozen=True)
class Collect:
    concurrency: int = 8  # feeds fetched at once
    per_host: int = 2  # of those, at most this many from one host: be a polite client
    max_bytes: int = 10 * 1024 * 1024  # a feed larger than this is refused, not read to the end
    timeout: float = 30  # seconds to connect, and to wait for each piece of the response
    deadline: float = 120  # seconds for a whole fetch, against servers that drip bytes
    first_run: int = 5  # a new feed's newest entries that may be mailed; 0 = all of them


@dataclass(frozen=True)
class Schedule:
    # A cron line (5 fields, or 6 with seconds first) or an interval such as "30m".
    collect: str = "*/30 * * * *"
    send: str = "0 7 * * *"
    # The weekly round-up's slot, a cron line in the newsletter's zone (Monday 07:00).
    weekly: str = "0 7 * * 1"
    # Each collect starts up to this much later, at random: many installations started on the
    # hour do not all fetch the same feeds in the same second.
    jitter: str = "1m"
    # A send slot missed (the process was down) is still made up this long after it.
    grace: str = "6h"
    # How often the scheduler checks for a missed slot and undelivered mail.
    reconcile: str = "5m"
    # When `digest inbox` reads what came back (cron line or interval); empty: never.
    inbox: str = ""
    # How long a held edition waits for approval (newsletter.approval); empty: for ever.
    approval_timeout: str = ""

    @property
    def approval_wait(self) -> timedelta | None:
        """schedule.approval_timeout, or None when a held edition waits for ever."""
        return self.span("approval_timeout") if self.approval_timeout else None

    def span(self, key: str) -> timedelta:
        """One of the duration keys, or a DigestError naming it."""
        value = getattr(self, key)
        span = duration(value)
        if span is None:
            raise DigestError(f"schedule.{key} must be a duration such as \"90s\", \"30m\", "
                              f"\"6h\", not {value!r}")
        return span


@dataclass(frozen=True)
class Delivery:
    transport: str = "maildir"
    # The envelope sender bounces go to, `local@domain`: each message gets
    # `local+<token>@domain`, the token naming its delivery row (see returns.py). Empty: the
    # From address, as before, and the List-Unsubscribe mailto without a token.
    return_path: str = ""


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    connections: int = 4
    rate: float = 0
    timeout: float = 30
    password: str = field(default="", metadata={"env": "DIGEST_SMTP_PASSWORD"})
    messages_per_connection: int = 100
    # Off only for a test relay with a self-signed certificate: it lets anyone in between read
    # the list.
    verify_tls: bool = True
    helo_name: str = ""  # empty: this machine's name, as smtplib finds it
    connect_timeout: float = 10
    hourly_cap: int = 0  # messages per rolling hour across runs, 0 = none
    retries: int = 2  # per message within a run, on a fresh connection, before `deferred`
    retry_backoff: float = 1.0  # seconds before the first retry, doubled each time, jittered
    deferred_max_age: float = 72  # hours after the edition was made; then `failed`
    pause_after_failures: int = 50  # consecutive failed or deferred messages, 0 = never pause
    suppress_after_bounces: int = 3  # consecutive editions hard-failing an address, 0 = never
    # The selector the relay signs with, when the relay signs: `digest check` looks its key up.
    dkim_selector: str = ""


@dataclass(frozen=True)
class Web:
    """`digest serve`: the public web app, meant to sit behind the operator's web server."""

    host: str = "127.0.0.1"
    port: int = 8080
    # Proxies whose X-Forwarded-For is believed: the sign-up rate limit counts client addresses.
    trusted_proxies: str = "127.0.0.1"
    signups_per_hour: int = 5  # per client address
    confirm_hours: int = 48  # how long a sign-up's confirmation link works
    # Clients that may read /metrics: addresses and networks ("10.0.0.0/8"), compared with
    # the client address uvicorn gives the app (behind a trusted proxy, X-Forwarded-For's).
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")

    @property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.metrics_allow)


@dataclass(frozen=True)
class Images:
    """Hosted images: collect downloads each card's picture once, cuts it for the layout and
    keeps it in the state folder; `digest serve` serves it at /img/, so readers' clients
    fetch pictures only from the newsletter's own host."""

    host: bool | None = None  # None: hosted when newsletter.public_url is https
    format: str = "jpeg"  # what the copies are encoded as: "jpeg" (every client) or "webp"
    max_bytes: int = 10 * 1024 * 1024  # a picture larger than this is not downloaded
    # Where the copies are reached, ending in "/"; empty: newsletter.public_url + "/img/".
    url: str = ""


@dataclass(frozen=True)
class Store:
    """Where the state lives (store.py). Empty: the SQLite file state/digest.db; a path: a
    SQLite file there; a postgresql:// URL: that PostgreSQL database, its password from
    PGPASSWORD or a libpq password or service file, never from here."""

    url: str = ""

    @property
    def postgres(self) -> bool:
        return urlsplit(self.url).scheme in ("postgresql", "postgres")


@dataclass(frozen=True)
class Paths:
    subscribers: Path = Path("subscribers.csv")
    state: Path = Path("state")
    templates: Path = Path("templates")
    outbox: Path = Path("outbox")
    # [store] url, resolved: a URL, or a SQLite file's path; empty for the default.
    store: str = field(default="", metadata={"internal": True})

    @property
    def database(self) -> Path | str:
        """The state database: a postgresql:// URL, else the SQLite file."""
        if Store(self.store).postgres:
            return self.store
        return Path(self.store) if self.store else self.state / "digest.db"

    @property
    def images(self) -> Path:
        """The hosted copies of the cards' pictures, by content hash."""
        return self.state / "images"


@dataclass(frozen=True)
class Config:
    newsletter: Newsletter = Newsletter()
    # The sample's article pages are as made up as its stories: there is nothing to read.
    feeds: tuple[Feed, ...] = (Feed(url=str(SAMPLE_FEED), name="Sample", enrich=False),)
    schedule: Schedule = Schedule()
    collect: Collect = Collect()
    delivery: Delivery = Delivery()
    smtp: Smtp = Smtp()
    paths: Paths = Paths()
    store: Store = Store()
    web: Web = Web()
    inbox: Inbox = field(default_factory=lambda: Inbox())
    images: Images = Images()
    dkim: Dkim = field(default_factory=lambda: Dkim())
    check: Check = field(default_factory=lambda: Check())
    secret: str = field(default="", metadata={"env": "DIGEST_SECRET"})
    source: Path | None = field(default=None, metadata={"internal": True})

    @property
    def hosting(self) -> bool:
        """Whether cards show hosted copies of their pictures. By default only behind https:
        a mail whose pictures come over plain http shows warnings in most clients."""
        if self.images.host is not None:
            return self.images.host
        return self.newsletter.public_url.startswith("https://")

    @property
    def images_url(self) -> str:
        """Where the hosted copies are reached: the file name follows."""
        return self.images.url or f"{self.newsletter.public_url.rstrip('/')}/img/"


CHOICES = {
    ("delivery", "transport"): ("maildir", "smtp"),
    ("smtp", "security"): ("starttls", "ssl", "none"),
    ("inbox", "security"): ("ssl", "starttls", "none"),
    ("inbox", "source"): ("maildir", "imap"),
    ("images", "format"): ("jpeg", "webp"),
    ("newsletter", "approval_fallback"): ("send", "skip"),
}


def find(explicit: str | Path | None) -> Path | None:
    """The config file to read: --config, else DIGEST_CONFIG, else ./digest.toml if present."""
    named = explicit or os.environ.get("DIGEST_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise DigestError(f"{path}: no such configuration file")
        return path
    local = Path.cwd() / CONFIG_NAME
    return local if local.is_file() else None


def load(explicit: str | Path | None = None) -> Config:
    """Read the configuration (or the defaults when there is no file) and check every key."""
    path = find(explicit)
    raw: dict[str, typing.Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise DigestError(f"{path}: not valid TOML: {error}") from None
    where = str(path) if path else "defaults"
    config: Config = _build(Config, raw, where, ())
    base = path.parent if path else Path.cwd()
    config = dataclasses.replace(config, source=path,
                                 paths=_resolve(config.paths, raw, base, config.store),
                                 inbox=dataclasses.replace(
                                     config.inbox, maildir=base / config.inbox.maildir))
    if config.dkim.private_key is not None:
        config = dataclasses.replace(config, dkim=dataclasses.replace(
            config.dkim, private_key=base / config.dkim.private_key))
    _check(config, where)
    return config


def _resolve(paths: Paths, raw: dict[str, typing.Any], base: Path, store: Store) -> Paths:
    """Relative paths are relative to the config file's folder, [store] url's too when it is
    one. The sample list and the editable templates fall back to the bundled copies when left
    at their defaults and absent."""
    given = raw.get("paths", {})
    resolved: dict[str, typing.Any] = {
        "store": store.url if store.postgres or not store.url else str(base / store.url)}
    for item in dataclasses.fields(Paths):
        if item.metadata.get("internal"):
            continue
        value = base / getattr(paths, item.name)
        fallback = item.name in ("subscribers", "templates") and item.name not in given
        if fallback and not value.exists():
            value = bundled(str(item.default))
        resolved[item.name] = value
    return Paths(**resolved)


def _check(config: Config, where: str) -> None:
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise DigestError(f"{where}: {section}.{key} must be one of {', '.join(allowed)}, "
                              f"not {value!r}")
    try:
        config.newsletter.zone  # noqa: B018 - fail here, at start-up, not at 07:00
    except (ZoneInfoNotFoundError, ValueError):
        raise DigestError(f"{where}: newsletter.timezone {config.newsletter.timezone!r} "
                          "is not a known time zone") from None
    for key in ("concurrency", "per_host", "max_bytes"):
        if getattr(config.collect, key) < 1:
            raise DigestError(f"{where}: collect.{key} must be at least 1")
    if config.images.max_bytes < 1:
        raise DigestError(f"{where}: images.max_bytes must be at least 1")
    if config.images.url and not (_absolute_url(config.images.url)
                                  and config.images.url.endswith("/")):
        raise DigestError(f"{where}: images.url must be an absolute http(s) URL ending in "
                          f"\"/\", such as \"https://news.example.com/img/\", not "
                          f"{config.images.url!r}")
    for key in ("connections", "messages_per_connection"):
        if getattr(config.smtp, key) < 1:
            raise DigestError(f"{where}: smtp.{key} must be at least 1")
    for key in ("rate", "hourly_cap", "retries", "retry_backoff", "pause_after_failures",
                "suppress_after_bounces"):
        if getattr(config.smtp, key) < 0:
            raise DigestError(f"{where}: smtp.{key} must not be negative")
    for section, key in (("smtp", "port"), ("web", "port"), ("check", "port")):
        port = getattr(getattr(config, section), key)
        if not 1 <= port <= 65535:
            raise DigestError(f"{where}: {section}.{key} must be a port from 1 to 65535, "
                              f"not {port}")
    newsletter = config.newsletter
    if not _absolute_url(newsletter.public_url):
        raise DigestError(f"{where}: newsletter.public_url must be an absolute http(s) URL "
                          f"such as \"https://news.example.com\", not {newsletter.public_url!r} "
                          "(every link in the mail starts with it)")
    if newsletter.logo and not _absolute_url(newsletter.logo):
        raise DigestError(f"{where}: newsletter.logo must be an absolute http(s) URL such as "
                          f"\"https://news.example.com/logo.png\", not {newsletter.logo!r}")
    for key, value, required in (("from", newsletter.sender, True),
                                 ("reply_to", newsletter.reply_to, False),
                                 ("unsubscribe_mailto", newsletter.unsubscribe_mailto, False)):
        problem = _address_problem(value) if value or required else None
        if problem:
            raise DigestError(f"{where}: newsletter.{key} must be an address such as "
                              f"\"Example Digest <digest@example.com>\", not {value!r}: "
                              f"{problem}")
    if not config.feeds:
        raise DigestError(f"{where}: no feeds configured")
    wait = config.schedule.approval_timeout
    if wait and not (duration(wait) or timedelta(0)) > timedelta(0):
        raise DigestError(f"{where}: schedule.approval_timeout must be a duration longer than "
                          f"0 such as \"90s\", \"30m\", \"6h\", not {wait!r}")
    for number, item in enumerate(config.web.metrics_allow, 1):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise DigestError(f"{where}: web.metrics_allow[{number}] must be an address or "
                              f"network such as \"10.0.0.0/8\", not {item!r}") from None
    _check_inbox(config, where)
    _check_dkim(config, where)
    check_store(config.store, f"{where}: store.url")
    for number, feed in enumerate(config.feeds, 1):
        if not feed.url:
            raise DigestError(f"{where}: feeds[{number}].url is empty")
        _check_filters(feed, f"{where}: feeds[{number}] ({feed.url})")


def check_store(store: Store, where: str) -> None:
    """[store] url (or `digest migrate --to`): a path, or a postgresql:// URL without a
    password."""
    parts = urlsplit(store.url)
    if store.postgres and parts.password is not None:
        shown = store.url.replace(f":{parts.password}@", ":…@", 1)
        raise DigestError(f"{where} {shown!r} holds a password: give it in "
                          "PGPASSWORD or a ~/.pgpass file (or a pg_service.conf service), "
                          "never in the configuration")
    if parts.scheme and not store.postgres and len(parts.scheme) > 1:
        raise DigestError(f"{where} must be a path (SQLite) or a postgresql:// URL, "
                          f"not {store.url!r}")


def _check_filters(feed: Feed, where: str) -> None:
    for key in ("include", "exclude"):
        for index, pattern in enumerate(getattr(feed, key), 1):
            try:
                filters.patterns([pattern])
            except re.error as error:
                raise DigestError(f"{where}: {key}[{index}] {pattern!r} is not a regular "
                                  f"expression: {error}") from None
    if feed.max_per_edition is not None and feed.max_per_edition < 1:
        raise DigestError(f"{where}: max_per_edition must be at least 1")
    if feed.max_age and duration(feed.max_age) is None:
        raise DigestError(f"{where}: max_age must be a duration such as \"12h\" or \"7d\", "
                          f"not {feed.max_age!r}")


def _absolute_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and text.strip() == text


_HEADERS = HeaderRegistry()


def _address_problem(text: str) -> str | None:
    """Why `text` is not one address for a From-like header (display name allowed), or None.
    The header parser finds the shape (one mailbox, no stray words), email_validator the
    address itself, as `subscribers` checks the list's addresses."""
    header: typing.Any = _HEADERS("From", text)  # an AddressHeader (typeshed lacks .defects)
    if len(header.addresses) != 1 or header.defects:
        return "not one address"
    try:
        validate_email(header.addresses[0].addr_spec, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def _build(cls: typing.Any, raw: typing.Any, where: str, trail: tuple[str, ...]) -> typing.Any:
    """Turn a TOML table into `cls`, refusing unknown keys and wrong types by their dotted name."""
    dotted = ".".join(trail) or "the top level"
    if not isinstance(raw, dict):
        raise DigestError(f"{where}: {dotted} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)
              if not f.metadata.get("internal")}
    for key in raw:
        if key not in fields or "env" in fields[key].metadata:
            name = ".".join((*trail, key))
            hint = " (secrets come from the environment)" if key in fields else ""
            raise DigestError(f"{where}: unknown key {name!r}{hint}")
    values = {}
    for key, item in fields.items():
        if "env" in item.metadata:
            values[item.name] = os.environ.get(item.metadata["env"], item.default)
        elif key in raw:
            values[item.name] = _value(hints[item.name], raw[key], where, (*trail, key))
        elif dataclasses.is_dataclass(hints[item.name]):
            values[item.name] = _build(hints[item.name], {}, where, (*trail, key))
        elif item.default is dataclasses.MISSING:
            raise DigestError(f"{where}: {'.'.join((*trail, key))} is required")
    return cls(**values)


def _value(hint: typing.Any, value: typing.Any, where: str, trail: tuple[str, ...]) -> typing.Any:
    name = ".".join(trail)
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, trail)
    if origin is tuple:
        if not isinstance(value, list):
            raise DigestError(f"{where}: {name} must be a list")
        item = typing.get_args(hint)[0]
        return tuple(_value(item, v, where, (*trail[:-1], f"{trail[-1]}[{i}]"))
                     for i, v in enumerate(value, 1))
    if origin is types.UnionType:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    expected: tuple[type, ...] = {float: (int, float), Path: (str,)}.get(hint, (hint,))
    # bool is an int to Python, but `port = true` is a mistake to TOML readers.
    if not isinstance(value, expected) or (isinstance(value, bool) and hint is not bool):
        raise DigestError(f"{where}: {name} must be {_describe(hint)}, not {value!r}")
    return Path(str(value)) if hint is Path else value


def _describe(hint: typing.Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Path: "a path (string)"}.get(hint, str(hint))


@dataclass(frozen=True)
class Inbox:
    """`digest inbox`: the mailbox that bounces, complaints and mailto unsubscribes reach."""

    source: str = "maildir"  # what the scheduler reads: "maildir" or "imap"
    maildir: Path = Path("inbox")  # read by the scheduler; `digest inbox -` keeps mail here
    host: str = ""
    port: int = 993
    security: str = "ssl"  # ssl | starttls | none
    username: str = ""
    password: str = field(default="", metadata={"env": "DIGEST_INBOX_PASSWORD"})
    folder: str = "INBOX"
    handled_folder: str = "digest-handled"  # where handled messages go on the IMAP server
    timeout: float = 30
    max_bytes: int = 10 * 1024 * 1024  # a larger message is reported and left where it is
    # Soft bounces (mailbox full, refused by policy, ...) in this many editions suppress.
    soft_bounce_limit: int = 3


def _check_inbox(config: Config, where: str) -> None:
    settings = config.inbox
    for key in ("max_bytes", "soft_bounce_limit"):
        if getattr(settings, key) < 1:
            raise DigestError(f"{where}: inbox.{key} must be at least 1")
    if config.delivery.return_path:
        local, at, domain = config.delivery.return_path.rpartition("@")
        if not at or not local or not domain or "+" in local or "<" in local:
            raise DigestError(f"{where}: delivery.return_path must be a plain address "
                              f"local@domain without '+', not {config.delivery.return_path!r}")


@dataclass(frozen=True)
class Dkim:
    """DKIM signing by digest itself, for a relay that does not sign (see signing.py)."""

    selector: str = ""  # empty: digest does not sign
    domain: str = ""  # the signing domain (d=); empty: the From address's domain
    private_key: Path | None = None  # a PEM file: RSA (2048 bits or more) or Ed25519


@dataclass(frozen=True)
class Check:
    """`digest check`'s DNS lookups of SPF, DKIM and DMARC (see deliverability.py)."""

    nameserver: str = ""  # an IP address; empty: the system's resolver (/etc/resolv.conf)
    port: int = 53
    timeout: float = 5  # seconds for each lookup


# A DNS label as selectors and domains are spelled (RFC 6376 3.1: sub-domains of letters,
# digits, hyphens; underscores are common in selectors).
_DNS_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*")


def _check_dkim(config: Config, where: str) -> None:
    for key, value in (("smtp.dkim_selector", config.smtp.dkim_selector),
                       ("dkim.selector", config.dkim.selector),
                       ("dkim.domain", config.dkim.domain)):
        if value and not _DNS_NAME.fullmatch(value):
            raise DigestError(f"{where}: {key} must be a DNS name such as \"mail2026\", "
                              f"not {value!r}")
    settings = config.dkim
    if settings.selector and settings.private_key is None:
        raise DigestError(f"{where}: dkim.private_key is required when dkim.selector is set")
    if settings.private_key is not None and not settings.selector:
        raise DigestError(f"{where}: dkim.selector is required when dkim.private_key is set")
    if settings.private_key is not None and not settings.private_key.is_file():
        raise DigestError(f"{where}: dkim.private_key {str(settings.private_key)!r}: "
                          "no such file")
    if config.check.nameserver:
        try:
            ipaddress.ip_address(config.check.nameserver)
        except ValueError:
            raise DigestError(f"{where}: check.nameserver must be an IP address such as "
                              f"\"127.0.0.1\", not {config.check.nameserver!r}") from None
    if config.check.timeout <= 0:
        raise DigestError(f"{where}: check.timeout must be more than 0")
