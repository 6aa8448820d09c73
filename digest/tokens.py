"""The tokens in a mail's links: whoever holds one may act for that address on that list,
nobody can make one up or alter it, and nobody who sees one learns the address.

A link names an address by an opaque id, an HMAC-SHA256 over the list id and the address: it
cannot be made without the secret and cannot be turned back into the address. The store keeps
which address each id stands for (written before any mail carrying it goes out), and an id is
accepted only when it is the one the secret makes for the address stored under it. It never
expires: a mail in someone's archive must still let them go. A sign-up waiting for its
confirmation is kept server-side; its link carries a random id (see web.py).

Links mailed before ids existed carried the address itself in base64 (`address.mac`, and
`payload.mac` for a sign-up); they are still honoured as they promised: an unsubscribe link for
ever, a confirmation link until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from digest.config import Config
from digest.records import Subscriber

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# Pure, and asked twice in a row for every message (its unsubscribe and preferences links):
# the last answer is kept rather than made again on the path of every message.
@lru_cache(maxsize=1)
def address_id(secret: bytes, list_id: str, email: str) -> str:
    """The opaque id by which this list's links name `email`: 128 bits of an HMAC, under a
    message prefix of its own, so that no other token of ours can pass for it."""
    mac = hmac.digest(secret, f"address\n{list_id}\n{email}".encode(), "sha256")
    return _b64(mac[:16])


def verify(secret: bytes, list_id: str, token: str,
           known: Callable[[str], str | None]) -> str | None:
    """The address an unsubscribe token stands for, or None for anything forged, altered,
    made for another list or never issued; which of those it was is not said. `known` gives
    the address the store holds for an id."""
    if "." in token:  # a link mailed before ids existed
        return _verify_legacy(secret, list_id, token)
    email = known(token)
    if email is None or not hmac.compare_digest(token, address_id(secret, list_id, email)):
        return None
    return email


def signup_id() -> str:
    """A fresh sign-up's id, for its confirmation link: random, so it says nothing and
    cannot be guessed; the sign-up itself stays on the server."""
    return secrets.token_urlsafe(16)


def ids(config: Config) -> Callable[[str], str]:
    """The maker of each address's id under this installation's secret for this list."""
    key = secret(config.secret, config.paths.state)
    list_id = config.newsletter.list_id
    return lambda email: address_id(key, list_id, email)


def unsubscribe_links(config: Config) -> Callable[[str], str]:
    """The maker of each subscriber's unsubscribe URL (what List-Unsubscribe and the footer
    point at). The store must know the id before a mail carrying it goes out."""
    return _links(config, "unsubscribe")


def preferences_links(config: Config) -> Callable[[str], str]:
    """The maker of each subscriber's "Manage preferences" URL. It names the address by the
    same id as the unsubscribe link: the page can unsubscribe too, so it grants nothing more
    to whoever holds the mail."""
    return _links(config, "preferences")


def _links(config: Config, page: str) -> Callable[[str], str]:
    named = ids(config)
    public = config.newsletter.public_url.rstrip("/")
    return lambda email: f"{public}/{page}/{named(email)}"


def secret(from_environment: str, state: Path) -> bytes:
    """DIGEST_SECRET, else one generated once into the state folder (and kept: a new one would
    void every unsubscribe link already mailed)."""
    if from_environment:
        return from_environment.encode()
    path = state / "secret"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
        log.warning("no DIGEST_SECRET in the environment: generated one into %s; keep it "
                    "with the state, unsubscribe links depend on it", path)
    return path.read_text().strip().encode()


# -- links mailed before ids existed --------------------------------------------------------------

def _unb64(text: str) -> bytes:
    """Strict: only the one spelling `_b64` makes decodes, so no altered token is accepted,
    not even one differing in unused padding bits."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _split(token: str) -> tuple[bytes, bytes] | None:
    encoded, _, mac = token.partition(".")
    try:
        return _unb64(encoded), _unb64(mac)
    except (binascii.Error, ValueError):
        return None


def _verify_legacy(secret: bytes, list_id: str, token: str) -> str | None:
    """An unsubscribe token of the first format: the address and an HMAC over list id and
    address, both base64url. It never expired, so it never will."""
    parts = _split(token)
    if parts is None:
        return None
    try:
        email = parts[0].decode()
    except UnicodeDecodeError:
        return None
    mac = hmac.new(secret, f"{list_id}\n{email}".encode(), hashlib.sha256).digest()
    return email if hmac.compare_digest(parts[1], mac) else None


def verify_legacy_signup(secret: bytes, list_id: str, token: str,
                         at: datetime) -> Subscriber | None:
    """A confirmation token of the first format (the sign-up as base64 JSON with its expiry,
    and an HMAC over it), or None for one forged, altered, for another list or expired. Once
    `web.confirm_hours` have passed since the upgrade, no such link is left to honour."""
    parts = _split(token)
    if parts is None:
        return None
    payload, given = parts
    # "signup" has no dot and a list id always has one: no unsubscribe message is the same.
    mac = hmac.new(secret, b"signup\n" + list_id.encode() + b"\n" + payload,
                   hashlib.sha256).digest()
    if not hmac.compare_digest(given, mac):
        return None
    data = json.loads(payload)  # ours: the MAC says so
    if at.timestamp() > data["x"]:
        return None
    return Subscriber(data["e"], data["n"], {}, tuple(data["s"]))
