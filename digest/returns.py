"""The addresses mail comes back to, and the tokens in them.

With `delivery.return_path = "bounces@example.com"`, each message goes out with the envelope
sender `bounces+<token>@example.com` (VERP): a bounce goes to that address, so its token names
the delivery row it answers, edition and address. The List-Unsubscribe mailto becomes
`unsubscribe+<id>@…`, the id its unsubscribe link carries, so a mail there stands for exactly
that subscriber whatever From it comes with.

Neither reveals the address or can be made without the secret: the id is the links' own
(tokens.address_id, an HMAC the store maps back to its address); a return token is that id
and 40 bits of an HMAC over the edition and the address, in lower-case base32, because a
return path is a mailbox name that relays and bounce writers copy, and some lower-case them.
Both live in the envelope and one header: no message is rendered for them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from digest import tokens
from digest.config import Config
from digest.records import Delivery

ID_BYTES = 16  # tokens.address_id: 128 bits
MAC_BYTES = 5


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    """Strict: only the spelling `_b32` makes (up to case) decodes, so no altered token is
    read as another."""
    data = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    if _b32(data) != text.lower():
        raise ValueError("not canonical base32")
    return data


def _split(address: str) -> tuple[str, str, str] | None:
    """`local+extension@domain` as (local, extension, domain), all but the extension lower-cased;
    the extension is '' when there is none."""
    mailbox, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not mailbox:
        return None
    local, _, extension = mailbox.partition("+")
    return local.lower(), extension, domain.lower()


@dataclass(frozen=True)
class Ours:
    """The addresses of ours that mail comes back to: enough to read a message's addressing,
    without the secret."""

    return_path: str  # local@domain, '' when digest mails with its From address as before
    mailto: str  # the List-Unsubscribe mailto, local@domain
    unsubscribe_url: str  # what precedes the id in an unsubscribe link

    def token(self, address: str, mine: str) -> str | None:
        """The extension of `address` if it is `mine` with one ('' with none), else None."""
        parts, own = _split(address), _split(mine)
        if parts is None or own is None or not mine:
            return None
        return parts[1] if (parts[0], parts[2]) == (own[0], own[2]) else None


def ours(config: Config) -> Ours:
    newsletter = config.newsletter
    mailto = newsletter.unsubscribe_mailto or f"unsubscribe@{newsletter.domain}"
    return Ours(config.delivery.return_path, mailto,
                f"{newsletter.public_url.rstrip('/')}/unsubscribe/")


@dataclass(frozen=True)
class Returns:
    """Making and reading the tokens, under this installation's secret for this list."""

    secret: bytes
    list_id: str
    addresses: Ours

    def envelope(self, delivery: Delivery) -> str:
        """The return path of a delivery's message."""
        email = delivery.email
        ident = base64.urlsafe_b64decode(self._id(email) + "==")
        local, _, domain = self.addresses.return_path.rpartition("@")
        return f"{local}+{_b32(ident + self._mac(delivery.edition_id, email))}@{domain}"

    def mailto(self, email: str) -> str:
        """The List-Unsubscribe mailto of `email`'s messages."""
        local, _, domain = self.addresses.mailto.rpartition("@")
        return f"{local}+{self._id(email)}@{domain}"

    def _id(self, email: str) -> str:
        return tokens.address_id(self.secret, self.list_id, email)

    def _mac(self, edition_id: int, email: str) -> bytes:
        message = f"return\n{self.list_id}\n{edition_id}\n{email}".encode()
        return hmac.digest(self.secret, message, "sha256")[:MAC_BYTES]

    def subscriber(self, ident: str, known: Callable[[str], str | None]) -> str | None:
        """The address an id (a mailto's or an unsubscribe link's) stands for, or None for
        one forged, altered or never issued."""
        return tokens.verify(self.secret, self.list_id, ident, known)

    def delivery(self, token: str, known: Callable[[str], str | None],
                 editions: Callable[[str], Iterable[int]]) -> tuple[str, int] | None:
        """The delivery row (address, edition) a return token names, or None for one forged
        or altered. `editions` gives the editions mailed to an address."""
        try:
            raw = _unb32(token)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != ID_BYTES + MAC_BYTES:
            return None
        ident = base64.urlsafe_b64encode(raw[:ID_BYTES]).rstrip(b"=").decode("ascii")
        email = self.subscriber(ident, known)
        if email is None:
            return None
        for edition_id in editions(email):
            if hmac.compare_digest(raw[ID_BYTES:], self._mac(edition_id, email)):
                return email, edition_id
        return None


def returns(config: Config) -> Returns:
    return Returns(tokens.secret(config.secret, config.paths.state),
                   config.newsletter.list_id, ours(config))
