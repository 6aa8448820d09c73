"""What checking the list's addresses costs: `subscribers.normalise` over N plain addresses
(`reader{n}@example.org`), against email_validator's full check of the same addresses, the
path every address took before plain ones got their own. Best of R rounds.

    python bench/addresses.py [N] [R]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from email_validator import validate_email

from digest import subscribers


def validated(address: str) -> str:
    checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    return checked.ascii_email or checked.normalized


def best(check: Callable[[str], str], addresses: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for address in addresses:
            check(address)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    addresses = [f"reader{n}@example.org" for n in range(count)]
    for name, check in (("normalise", subscribers.normalise), ("validate_email", validated)):
        seconds = best(check, addresses, rounds)
        print(f"{name:>14}: {seconds:.3f} s for {count:,} addresses "
              f"({seconds / count * 1e6:.2f} µs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
