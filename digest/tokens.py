"""Signed tokens for the links in a mail: whoever holds one may act for that address on that
list, nobody can make one up or alter it.

An unsubscribe token is the address and an HMAC-SHA256 over the list id and the address, both
base64url; it never expires (a mail in someone's archive must still let them go). A sign-up
token carries the sign-up and an expiry, signed under a different message prefix, so neither
kind can pass for the other.
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.config import Config

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the one spelling `_b64` makes decodes, so no altered token is accepted,
    not even one differing in unused padding bits."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _mac(secret: bytes, list_id: str, email: str) -> bytes:
    return hmac.new(secret, f"{list_id}\n{email}".encode(), hashlib.sha256).digest()


def sign(secret: bytes, list_id: str, email: str) -> str:
    return f"{_b64(email.encode())}.{_b64(_mac(secret, list_id, email))}"


def verify(secret: bytes, list_id: str, token: str) -> str | None:
    """The address the token was made for, or None for anything forged, altered or made for
    another list; which of those it was is not said."""
    encoded, _, mac = token.partition(".")
    try:
        email = _unb64(encoded).decode()
        given = _unb64(mac)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return email if hmac.compare_digest(given, _mac(secret, list_id, email)) else None


@dataclass(frozen=True)
class Signup:
    """A sign-up awaiting its confirmation click."""

    email: str
    name: str = ""
    sections: tuple[str, ...] = ()


def _signup_mac(secret: bytes, list_id: str, payload: bytes) -> bytes:
    # "signup" has no dot and a list id always has one: no unsubscribe message is ever the same.
    return hmac.new(secret, b"signup\n" + list_id.encode() + b"\n" + payload,
                    hashlib.sha256).digest()


def sign_signup(secret: bytes, list_id: str, signup: Signup, expires: datetime) -> str:
    payload = json.dumps({"e": signup.email, "n": signup.name, "s": list(signup.sections),
                          "x": int(expires.timestamp())}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signup_mac(secret, list_id, payload))}"


def verify_signup(secret: bytes, list_id: str, token: str, at: datetime) -> Signup | None:
    """The sign-up, or None for a token forged, altered, for another list or expired."""
    encoded, _, mac = token.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _signup_mac(secret, list_id, payload)):
        return None
    data = json.loads(payload)  # ours: the MAC says so
    if at.timestamp() > data["x"]:
        return None
    return Signup(data["e"], data["n"], tuple(data["s"]))


def unsubscribe_links(config: Config) -> Callable[[str], str]:
    """The maker of each subscriber's unsubscribe URL (what List-Unsubscribe and the footer
    point at), signed with this installation's secret for this list."""
    key = secret(config.secret, config.paths.state)
    public = config.newsletter.public_url.rstrip("/")
    list_id = config.newsletter.list_id

    def link(email: str) -> str:
        return f"{public}/unsubscribe/{sign(key, list_id, email)}"

    return link


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
