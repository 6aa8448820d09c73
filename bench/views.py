"""What sections and custom fields cost per message.

Builds an edition for N subscribers in a scratch state folder, then times making every
message three ways: the bare Letter (the baseline, measured in the same run), the per-delivery
maker `jobs.send` uses when nothing personal beyond the name is printed (it should be the
baseline itself), and the same when a template prints a custom field (one row lookup more).

    python bench/views.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from digest import config, jobs
from digest.compose import Composer, Letter
from digest.records import Card, Subscriber
from digest.store import Composed, Store, now


def timed(make, deliveries) -> float:
    started = time.perf_counter()
    for delivery in deliveries:
        make(delivery)
    return (time.perf_counter() - started) / len(deliveries) * 1e6


def main(count: int) -> None:
    settings = config.load(None)
    cards = [Card(i, f"Title {i}", f"https://example.com/{i}", "teaser " * 20, None, now(),
                  "Sample") for i in range(20)]
    people = [Subscriber(f"user{i}@example.com", f"User {i}", {"company": "ACME"})
              for i in range(count)]
    composer = Composer(settings)
    personal = composer.personal(cards)
    whole = composer.render(cards, 1, now(), personal=personal)

    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "digest.db") as store:
        edition = store.create_edition(
            Composed(1, "bench", now(), whole, whole.html, personal.marker, ()), people)
        deliveries = list(store.due(edition.id))

        def url(email: str) -> str:
            return f"https://news.example.com/unsubscribe/{email}"

        base = timed(Letter(settings, edition, url).bytes_for, deliveries)
        plain = timed(jobs.messages(settings, store, edition, url), deliveries)
        printed = replace(edition, html=edition.html.replace(
            "</body>", personal.field("company") + "</body>"))
        fields = timed(jobs.messages(settings, store, printed, url), deliveries)
    print(f"{count} messages, microseconds each: bare Letter {base:.1f}; "
          f"send's maker {plain:.1f} ({plain / base:.2f}x); "
          f"with a custom field printed {fields:.1f} ({fields / base:.2f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
