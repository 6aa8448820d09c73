"""Reading `subscribers.csv`: who gets the digest.

A bad row never stops the list: it is reported with its line number and the reason, and the
rest still go out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from digest.errors import DigestError
from digest.records import Subscriber

_CONTROL = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass(frozen=True)
class Roster:
    subscribers: tuple[Subscriber, ...]
    problems: tuple[Problem, ...]


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; blank lines and `#` comments skipped."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as error:
        raise DigestError(f"{path}: cannot read the subscriber list: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(line for line in handle)
        if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
            raise DigestError(f"{path}:1: the header row must name an 'email' column")
        for row in reader:
            values = [v for v in row.values() if isinstance(v, str)]
            if not any(v.strip() for v in values) or values[0].lstrip().startswith("#"):
                continue
            yield reader.line_num, {(k or "").strip().lower(): (v or "").strip()
                                    for k, v in row.items() if isinstance(v, str)}


def read(path: Path) -> Roster:
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    for line, row in _rows(path):
        address = row.get("email", "")
        try:
            email = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError as error:
            problems.append(Problem(line, f"{address or '(empty)'}: {error}"))
            continue
        # A display name reaches a header: no line breaks may survive into it.
        name = row.get("name", "").translate(_CONTROL).strip()
        fields = {k: v for k, v in row.items() if k not in ("email", "name")}
        subscribers.append(Subscriber(email, name, fields))
    return Roster(tuple(subscribers), tuple(problems))
