"""Signed tokens for the links in a mail: whoever holds one may act for that address on that
list, nobody can make one up or alter it.

A token is the address and an HMAC-SHA256 over the list id and the address, both base64url.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
