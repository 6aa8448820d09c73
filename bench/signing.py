"""What DKIM signing ([dkim]) costs per message, against unsigned mail in the same run.

Builds the realistic edition of bench/send.py (20 cards) and times making N subscribers'
messages with `Letter.bytes_for`: unsigned (the baseline), signed with Ed25519, signed with
RSA-2048; and, to show where the time goes, SHA-256 alone over each unsigned message's body
(the body hash every signature needs, since each subscriber's body is their own).

    python bench/signing.py [N]
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from send import feed

from digest import config as configuration
from digest import jobs
from digest.compose import Composer, Letter
from digest.config import Dkim
from digest.records import Delivery, Edition
from digest.store import Store, now


def edition(root: Path) -> tuple[configuration.Config, Edition]:
    (root / "feed.xml").write_text(feed(20), encoding="utf-8")
    path = root / "digest.toml"
    path.write_text(f'[newsletter]\nname = "Bench Digest"\nfrom = "Bench <news@example.com>"\n'
                    f'public_url = "https://news.example.com"\n'
                    f'[[feeds]]\nname = "News"\nurl = "{root / "feed.xml"}"\n'
                    "[collect]\nfirst_run = 0\n", encoding="utf-8")
    settings = configuration.load(path)
    with Store(settings.paths.database) as store:
        jobs.collect(settings, store)
        cards, _ = store.unmailed([f.url for f in settings.feeds], 20)
    rendered = Composer(settings).render(cards, 1, now())
    return settings, Edition(1, "bench", now(), rendered.subject, rendered.html, rendered.text,
                             rendered.marker)


def signing(root: Path, settings: configuration.Config, name: str,
            key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> configuration.Config:
    path = root / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return dataclasses.replace(settings, dkim=Dkim(selector="bench", private_key=path))


def timed(make: Callable[[Delivery], object], deliveries: list[Delivery]) -> float:
    """Microseconds a message, the best of three rounds (the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for delivery in deliveries:
            make(delivery)
        best = min(best, time.perf_counter() - started)
    return best / len(deliveries) * 1e6


def main(count: int) -> None:
    deliveries = [Delivery(1, f"reader{n}@example.org", f"Reader {n}", "pending", 0)
                  for n in range(count)]

    def url(email: str) -> str:
        return f"https://news.example.com/unsubscribe/{hashlib.sha256(email.encode()).hexdigest()}"

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings, made = edition(root)
        plain = Letter(settings, made, url)
        ed = Letter(signing(root, settings, "ed25519", ed25519.Ed25519PrivateKey.generate()),
                    made, url)
        big = Letter(signing(root, settings, "rsa", rsa.generate_private_key(65537, 2048)),
                     made, url)
        size = len(plain.bytes_for(deliveries[0]))
        base = timed(plain.bytes_for, deliveries)
        bodies = [message[message.index(b"\r\n\r\n") + 4:]
                  for message in map(plain.bytes_for, deliveries)]
        started = time.perf_counter()
        for body in bodies:
            hashlib.sha256(body).digest()
        hashed = (time.perf_counter() - started) / count * 1e6
        signed = {"Ed25519": timed(ed.bytes_for, deliveries),
                  "RSA-2048": timed(big.bytes_for, deliveries)}
    print(f"{count} messages of {size:,} bytes, microseconds each (best of 3):")
    print(f"  unsigned (baseline)   {base:8.1f}")
    for name, each in signed.items():
        print(f"  signed, {name:<13} {each:8.1f}  (+{each - base:.1f} µs, {each / base:.2f}x)")
    print(f"  of which the body hash (SHA-256 of {len(bodies[0]):,} bytes) {hashed:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
