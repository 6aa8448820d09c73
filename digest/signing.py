"""DKIM signatures (RFC 6376) made by digest itself, for a relay that does not sign.

`dkim.selector`, `dkim.domain` and `dkim.private_key` (a PEM file, RSA or Ed25519, RFC 8463)
turn it on; `compose.Letter` then hands each finished message to `Signer.sign`.

Why not dkimpy's `sign`: it takes a whole message and canonicalises and hashes its body on every
call, and its RSA is pure Python (about 7 ms a signature, against 1 ms through OpenSSL). The
body hash cannot be shared between subscribers either way: each copy's body carries its reader's
own values (name, address, unsubscribe link in the footer), so one view's bodies differ. So each
message's body is hashed once, with hashlib, over the bytes already built, and the key signs
only the header hash. dkimpy verifies the result in the tests.

Canonicalisation is relaxed for the header (relays refold and re-space header lines) and simple
for the body: compose builds bodies that are CRLF-terminated quoted-printable within 76 columns
and end in one line break, so the simple form is the bytes as built, with nothing to rewrite.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from digest.config import Dkim
from digest.errors import DigestError

# The headers a signature covers. Each is listed twice in h= ("oversigned", RFC 6376 8.15): the
# second, absent instance signs that there is no other, so a second From or List-Unsubscribe
# added on the way breaks the signature instead of riding on it.
SIGNED = ("from", "to", "subject", "date", "message-id", "list-unsubscribe",
          "list-unsubscribe-post")
_KEYS = tuple(name.encode("ascii") for name in SIGNED)
_NAMES = [name for name in SIGNED for _ in range(2)]
# Folded after a colon (RFC 6376 3.5 allows folding white space there) to keep lines short.
_H = ":\r\n  ".join(":".join(_NAMES[i:i + 4]) for i in range(0, len(_NAMES), 4))

# RFC 8301 3.2: receivers must ignore RSA keys shorter than 1024 bits.
MIN_RSA_BITS = 1024

_SPACE = re.compile(rb"[ \t]+")


class Signer:
    """One signing key, loaded once per Letter; `sign` for each of its messages."""

    def __init__(self, selector: str, domain: str,
                 key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
        self.selector = selector
        self.domain = domain
        self.key = key
        self.kind = "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ed25519"
        self._tags = (f"v=1; a={self.kind}-sha256; c=relaxed/simple; d={domain}; "
                      f"s={selector};\r\n h={_H};\r\n bh=").encode("ascii")

    @classmethod
    def load(cls, settings: Dkim, from_domain: str) -> Signer:
        """The configured key, or a DigestError naming the file and what is wrong with it."""
        path = settings.private_key
        assert path is not None  # config.py requires it with a selector
        where = f"dkim.private_key {str(path)!r}"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as error:
            raise DigestError(f"{where}: cannot read: {error.strerror or error}") from None
        except TypeError:
            raise DigestError(f"{where}: the key has a passphrase; digest needs it without "
                              "(keep the file readable by digest only)") from None
        except (ValueError, UnsupportedAlgorithm):
            raise DigestError(f"{where}: not a PEM private key (make one with `openssl genrsa "
                              "2048` or `openssl genpkey -algorithm ed25519`)") from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise DigestError(f"{where}: an RSA key of {key.key_size} bits; receivers "
                                  f"ignore keys under {MIN_RSA_BITS} (use 2048)")
        elif not isinstance(key, ed25519.Ed25519PrivateKey):
            raise DigestError(f"{where}: a {type(key).__name__.removeprefix('_')}; DKIM signs "
                              "with RSA or Ed25519 keys")
        return cls(settings.selector, (settings.domain or from_domain).lower(), key)

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def public_key(self) -> str:
        """The p= of the key record: base64 of the SubjectPublicKeyInfo (RSA) or of the 32 raw
        bytes (Ed25519, RFC 8463 4.2)."""
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            raw = public.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        else:
            raw = public.public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    @property
    def record(self) -> str:
        """The TXT record receivers look up at `record_name`."""
        return f"v=DKIM1; k={self.kind}; p={self.public_key}"

    def is_public_key(self, published: str) -> bool:
        """Whether a key record's p= is this key's public half, in either form RSA keys are
        published in (SubjectPublicKeyInfo, or PKCS#1 RSAPublicKey)."""
        if published == self.public_key:
            return True
        public = self.key.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            return False
        try:
            der = base64.b64decode(published, validate=True)
            other = serialization.load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm):
            return False
        return (isinstance(other, rsa.RSAPublicKey)
                and other.public_numbers() == public.public_numbers())

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        end = message.index(b"\r\n\r\n") + 2
        body_hash = base64.b64encode(hashlib.sha256(memoryview(message)[end + 2:]).digest())
        tags = self._tags + body_hash + b";\r\n b="
        # The signature signs the header fields it names, then its own header with b= empty.
        signed = _relaxed(message[:end]) + b"dkim-signature:" + _canonical(tags)
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463 3: Ed25519 signs the SHA-256 hash of the same data
            signature = self.key.sign(hashlib.sha256(signed).digest())
        value = base64.b64encode(signature)
        folded = b"\r\n  ".join(value[i:i + 72] for i in range(0, len(value), 72))
        return b"".join((b"DKIM-Signature: ", tags, folded, b"\r\n", message))


def _relaxed(head: bytes) -> bytes:
    """The SIGNED fields of a header block in relaxed form, in h= order: for each name the
    last instance first, then the one above it (RFC 6376 5.4.2); an absent one adds nothing."""
    found: dict[bytes, list[bytes]] = {}
    values: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            values[-1] += line  # a folded line: unfolding drops only the CRLF
        elif line:
            name, _, value = line.partition(b":")
            values = found.setdefault(name.rstrip(b" \t").lower(), [])
            values.append(value)
    out = []
    for key in _KEYS:
        for value in found.get(key, [])[-1:-3:-1]:
            out.append(key + b":" + _canonical(value) + b"\r\n")
    return b"".join(out)


def _canonical(value: bytes) -> bytes:
    """A header value in relaxed form (RFC 6376 3.4.2): unfolded, runs of space and tab made
    one space, none at either end."""
    return _SPACE.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
