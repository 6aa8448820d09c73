"""Reading `subscribers.csv`: who gets the digest, and adding a confirmed sign-up to it.

The file is the operator's: a header row naming an `email` column, optionally `name`,
`sections` (feed names separated by `;`, empty = every section), `status` (active, paused,
unsubscribed), `cadence` (daily, weekly), `timezone` (an IANA zone name, empty = the
newsletter's) and any other column, kept as a custom field for the templates. UTF-8 with or
without a BOM, comma or semicolon delimited, blank lines and `#` comment lines ignored.

A bad row never stops the list: it is reported with its line number and the reason, and the
rest still go out.
"""

from __future__ import annotations

import csv
import fcntl
import io
import itertools
import os
import pickle
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import IO, Any
from zoneinfo import available_timezones

import email_validator
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import ATEXT, CASE_INSENSITIVE_MAILBOX_NAMES

from digest.errors import DigestError
from digest.records import CADENCES, Preferences, Subscriber
from digest.store import Scratch

STATUSES = ("active", "paused", "unsubscribed")
KNOWN = ("email", "name", "sections", "status", "cadence", "timezone")
# Values end up in mail bodies and the To header: no line breaks or NULs may survive.
_CONTROL = str.maketrans({"\r": " ", "\n": " ", "\0": " "})
_EXTRA = "\0extra"  # marks a row with more cells than the header: no column can be named so


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass(frozen=True)
class Roster:
    subscribers: tuple[Subscriber, ...]  # the active rows: who may be mailed
    problems: tuple[Problem, ...]  # rejected rows
    held: int = 0  # valid rows whose status is paused or unsubscribed
    fields: tuple[str, ...] = ()  # the custom columns, in the file's order


@dataclass(frozen=True)
class _Layout:
    columns: tuple[str, ...]  # lower-cased header names, "" for an unnamed column
    delimiter: str


def key(email: str) -> str:
    """What makes two addresses the same subscriber: domains are normalised by validation,
    and no real mailbox tells `Ann@` from `ann@`, so neither do we."""
    return email.casefold()


def normalise(address: str) -> str:
    """The address as we keep it, or EmailNotValidError; syntax only, no DNS lookups.

    ASCII only, domains in their IDNA form: it goes into SMTP envelopes and headers as is, and
    relays without SMTPUTF8 refuse an internationalised mailbox name.
    """
    address = address.strip()
    fast = plain(address)
    if fast is not None:
        return fast
    checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    return checked.ascii_email or checked.normalized


# An ASCII dot-atom (RFC 5322 atext, as email_validator has it) before the @, and after it
# two or more host name labels of 1 to 63 letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
PLAIN = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@({_LABEL}(?:\.{_LABEL})+)")


def plain(address: str) -> str | None:
    """What `normalise` makes of a plain address, without email_validator; None for any other.

    It exists for speed: validating every row was most of the time a send spends walking its
    list (tens of µs an address, seconds for 100,000: bench/addresses.py), and nearly every
    row is plain.

    Why it is the same (email_validator 2.4, strict or not): on a PLAIN address it splits at
    the one @, keeps the dot-atom local part as it is, and of the domain UTS-46 only lower-
    cases the ASCII letters. Of such addresses it refuses those over 254 characters (so no
    domain here is over 253, and PLAIN has no label over 63), a domain ending in other than a
    letter, a label with "--" at its third character, a Punycode label that does not decode,
    and a special-use domain or one under it; strict, a local part over 64; and it lower-cases
    the RFC 2142 mailbox names (Postmaster@). Each of those is left to it, by a wider test
    where that is simpler ("--" anywhere). The special-use names are looked up at each call,
    as the library does: a program may replace that list.
    """
    match = PLAIN.fullmatch(address)
    if match is None or len(address) > 254:
        return None
    local, domain = match[1], match[2].lower()
    if (len(local) > 64 or "--" in domain or not domain[-1].isalpha()
            or local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES):
        return None
    if any(domain == name or domain.endswith("." + name)
           for name in email_validator.SPECIAL_USE_DOMAIN_NAMES):
        return None
    return f"{local}@{domain}"


def _delimiter(line: str) -> str:
    # Spreadsheets in locales with a decimal comma save CSV with semicolons.
    return ";" if line.count(";") > line.count(",") else ","


def _parse(lines: Iterable[str], where: Path
           ) -> tuple[_Layout | None, Iterator[tuple[int, dict[str, str]]]]:
    """The layout (None for a file with no rows at all) and (first line, row) for each data row;
    blank lines and `#` comments skipped. A row's line is where it starts, even when a quoted
    value runs over several lines. `lines` keep their line ends (as read with newline="")."""
    lines = iter(lines)
    before: list[str] = []  # the blank and comment lines above the header, read to find it
    for text in lines:
        before.append(text)
        if text.strip() and not text.lstrip().startswith("#"):
            break
    else:
        return None, iter(())
    delimiter = _delimiter(before[-1])
    numbered = _numbered(csv.reader(itertools.chain(before, lines), delimiter=delimiter))
    for line, cells in numbered:  # the header: the first row not blank nor a comment
        columns = tuple(cell.strip().lower() for cell in cells)
        if "email" not in columns:
            raise DigestError(f"{where}:{line}: the header row must name an 'email' column")
        return _Layout(columns, delimiter), _records(numbered, columns)
    return None, iter(())


def _numbered(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each row that is neither blank nor a comment."""
    start = 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if any(cell.strip() for cell in cells) and not cells[0].lstrip().startswith("#"):
            yield line, cells


def _records(numbered: Iterator[tuple[int, list[str]]],
             columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows as they are read, never all at once: a list may have hundreds of thousands."""
    for line, cells in numbered:
        extra = [cell for cell in cells[len(columns):] if cell.strip()]
        row = {name: value for name, value in zip(columns, cells, strict=False) if name}
        if extra:
            row[_EXTRA] = str(len(cells))
        yield line, row


def _streamed(path: Path, size: int) -> Iterator[str]:
    """The file's first `size` bytes as text lines with their ends, read as they are needed:
    a list of a million rows is never in memory at once."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DigestError(f"{path}: cannot read the subscriber list: {error.strerror}") from None
    with handle:
        offset = 0
        for raw in handle:
            raw = raw[:size - offset]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DigestError(f"{path}: not UTF-8 text (byte {offset + error.start}); save "
                                  "it as UTF-8 CSV") from None
            if not offset:
                text = text.removeprefix("\ufeff")
            offset += len(raw)
            # Split as a text file with newline="" would: a lone CR ends a line too.
            yield from io.StringIO(text, newline="")
            if offset >= size:
                return


def _text(path: Path, handle: IO[str]) -> str:
    try:
        return handle.read().removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise DigestError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8 "
                          "CSV") from None


def columns(path: Path) -> tuple[str, ...]:
    """The list's column names, lower-cased, from its header row alone (OSError if unreadable)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line in handle:
            if line.strip() and not line.lstrip().startswith("#"):
                cells = next(csv.reader([line], delimiter=_delimiter(line)))
                return tuple(cell.strip().lower() for cell in cells)
    return ()


def read(path: Path, sections: Collection[str] | None = None) -> Roster:
    """Every row checked; `sections` are the configured section (feed) names, when known."""
    listing = Listing(path, sections)
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    held = 0
    for found in listing.walk():
        if isinstance(found, Problem):
            problems.append(found)
        elif found is None:
            held += 1
        else:
            subscribers.append(found)
    return Roster(tuple(subscribers), tuple(problems), held, listing.fields)


class Listing:
    """The list, walked as often as needed, row by row: a send walks it twice rather than hold
    a hundred thousand subscribers in memory. The first walk reads the file as it was when
    the listing was made (a sign-up appended meanwhile waits for the next edition) and keeps
    what it found on disk (store.Scratch), with the first line of each address to name
    duplicates by; later walks replay that, without validating every address again."""

    def __init__(self, path: Path, sections: Collection[str] | None = None) -> None:
        self.path = path
        self.known = {name.casefold(): name for name in sections} if sections is not None \
            else None
        try:
            handle = path.open("rb")
        except OSError as error:
            raise DigestError(f"{path}: cannot read the subscriber list: "
                              f"{error.strerror}") from None
        with handle:
            # A confirmed sign-up may be appending right now (see `add`): its row is in or out.
            fcntl.flock(handle, fcntl.LOCK_SH)
            self.size = os.fstat(handle.fileno()).st_size
        layout, _ = _parse(_streamed(path, self.size), path)
        if layout is None:
            raise DigestError(f"{path}:1: the header row must name an 'email' column")
        self.fields = tuple(c for c in layout.columns if c and c not in KNOWN)
        self.scratch = Scratch()
        self.walked = False  # once: later walks replay the scratch

    def walk(self) -> Iterator[Subscriber | Problem | None]:
        """Each row in order: an active subscriber, a rejected row's problem, or None for a
        valid row that is paused or unsubscribed."""
        if self.walked:
            # Pickled by us into a file only this process can reach (SQLite unlinks it).
            yield from (pickle.loads(row) for row in self.scratch.kept())
            return
        yield from self._read()
        self.walked = True

    def _read(self) -> Iterator[Subscriber | Problem | None]:
        _, rows = _parse(_streamed(self.path, self.size), self.path)
        for line, row in rows:
            verdict = _check(row, self.known)
            if isinstance(verdict, str):
                found: Subscriber | Problem | None = Problem(line, verdict)
            else:
                subscriber, status = verdict
                found = subscriber if status == "active" else None
                first = self.scratch.keep(line, pickle.dumps(found), key(subscriber.email))
                if first == line:
                    yield found
                    continue
                found = Problem(line, f"{subscriber.email}: duplicate of line {first}")
            self.scratch.keep(line, pickle.dumps(found))
            yield found


def _check(row: dict[str, str], known: dict[str, str] | None) -> tuple[Subscriber, str] | str:
    """A row's subscriber and status, or the reason it is rejected."""
    address = row.get("email", "").strip()
    try:
        email = normalise(address)
    except EmailNotValidError as error:
        return f"{address.translate(_CONTROL) or '(empty)'}: {error}"
    if _EXTRA in row:
        return f"{email}: {row[_EXTRA]} cells, more than the header names"
    status = row.get("status", "").strip().lower() or "active"
    if status not in STATUSES:
        return f"{email}: unknown status {status!r} (use {', '.join(STATUSES)})"
    chosen = [name.strip() for name in row.get("sections", "").split(";") if name.strip()]
    if known is not None:
        unknown = [name for name in chosen if name.casefold() not in known]
        if unknown:
            return (f"{email}: unknown section {unknown[0]!r} (the feeds are "
                    f"{', '.join(known.values())})")
        chosen = [known[name.casefold()] for name in chosen]
    cadence = row.get("cadence", "").strip().lower() or CADENCES[0]
    if cadence not in CADENCES:
        return f"{email}: unknown cadence {cadence!r} (use {', '.join(CADENCES)})"
    zone = row.get("timezone", "").strip()
    if zone and zone not in zones():
        return f"{email}: unknown time zone {zone!r} (an IANA name, e.g. Europe/Berlin)"
    name = row.get("name", "").translate(_CONTROL).strip()
    fields = {column: value.translate(_CONTROL).strip() for column, value in row.items()
              if column not in KNOWN}
    return Subscriber(email, name, fields, tuple(dict.fromkeys(chosen)), cadence, zone), status


@cache
def zones() -> frozenset[str]:
    """The IANA zone names a subscriber may give, as the system's (or tzdata's) database has
    them: a name is checked against the list, never opened as a path."""
    return frozenset(available_timezones())


def prefer(subscriber: Subscriber, chosen: Preferences | None,
           sections: Collection[str]) -> Subscriber | None:
    """The subscriber as they chose on their preferences page, which wins over their row;
    None while they paused. `sections` are the configured ones: a chosen section since
    removed is dropped, and when none is left the row's choice holds again, so nobody is
    silently cut off by a renamed feed."""
    if chosen is None:
        return subscriber
    if chosen.paused:
        return None
    kept = tuple(name for name in chosen.sections if name in sections)
    return replace(subscriber, sections=kept if kept or not chosen.sections
                   else subscriber.sections, cadence=chosen.cadence, timezone=chosen.timezone)


def preferred(subscribers: Iterable[Subscriber], chosen: Mapping[str, Preferences],
              sections: Collection[str]) -> list[Subscriber]:
    """The subscribers as each chose (see `prefer`), those who paused left out."""
    return [s for s in (prefer(s, chosen.get(key(s.email)), sections) for s in subscribers)
            if s is not None]


def without(subscribers: Iterable[Subscriber], suppressed: Iterable[str]) -> list[Subscriber]:
    """The subscribers less the suppressed addresses: an opt-out wins over the CSV."""
    gone = {key(email) for email in suppressed}
    return [s for s in subscribers if key(s.email) not in gone]


def write(subscribers: Iterable[Subscriber], fields: Iterable[str], out: IO[str]) -> int:
    """The list as CSV with a header row, in the format `read` takes; returns the row count."""
    fields = list(fields)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "sections", "cadence", "timezone", *fields])
    count = 0
    for s in subscribers:
        writer.writerow([s.email, s.name, ";".join(s.sections), s.cadence, s.timezone,
                         *(s.fields.get(f, "") for f in fields)])
        count += 1
    return count


def add(path: Path, subscriber: Subscriber) -> bool:
    """Append a confirmed sign-up; False when the address is listed already (then the file is
    left as the operator wrote it).

    Under an exclusive lock, so two confirmations at once cannot interleave their rows and a
    send never reads half a row. The row follows the file's own header and delimiter.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8", newline="") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = _text(path, handle)
        layout, rows = _parse(io.StringIO(text, newline=""), path)
        if layout is None:
            layout = _Layout(("email", "name", "sections"), ",")
            handle.write("email,name,sections\n")
        elif any(_same(row.get("email", ""), subscriber.email) for _, row in rows):
            return False
        elif not text.endswith(("\n", "\r")):
            handle.write("\n")
        values = {"email": subscriber.email, "name": subscriber.name,
                  "sections": ";".join(subscriber.sections), "status": "active",
                  "cadence": subscriber.cadence, "timezone": subscriber.timezone}
        # One physical line per row: the csv module leaves a lone CR unquoted.
        csv.writer(handle, delimiter=layout.delimiter, lineterminator="\n").writerow(
            [values.get(column, "").translate(_CONTROL) for column in layout.columns])
        return True


def _same(address: str, email: str) -> bool:
    """Whether a listed address, as written, is `email`: a plain comparison, so a sign-up stays
    quick on a long list (validation only lower-cases domains, and `key` ignores case)."""
    return key(address.strip()) == key(email)
