"""DKIM signatures made by digest ([dkim]): mail sent by `digest send` to a real relay, each
message verified by dkimpy, an independent implementation, against the key a real name server
on loopback serves."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from nameserver import NameServer
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss

DOMAIN = "newsroom.internal"
RECORD = f"s2026._domainkey.{DOMAIN}"
SUBSCRIBERS = ("email,name\nann@example.org,Ann Lee\nbob@example.net,Bob\n"
               "cat@example.com,\"Cat, the editor\"\n")
Key = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KEYS: dict[str, Callable[[], Key]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.fixture
def names() -> Iterator[NameServer]:
    with NameServer() as server:
        yield server


def write_key(path: Path, key: Key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def record(key: Key) -> str:
    """The key record, as RFC 6376 3.6.1 and RFC 8463 4.2 spell it, derived here."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        raw = public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "rsa"
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "ed25519"
    return f"v=DKIM1; k={kind}; p={base64.b64encode(raw).decode()}"


def verifier(server: NameServer) -> Callable[[bytes], bool]:
    """dkimpy's verify, its key lookups sent to the test name server over UDP."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = 2

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT")
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(answer[0].strings)

    return lambda message: bool(dkim.verify(message, dnsfunc=txt))


def mailing(site: Site, web: FeedServer, smtp: SmtpServer, signing: str) -> None:
    web.serve("/feed.xml", rss(Item("Harbour opens", "https://news.example.net/harbour",
                                    summary="The new harbour opens on Monday."),
                               Item("Bridge closes", "https://news.example.net/bridge")))
    site.subscribers(SUBSCRIBERS)
    site.config.write_text(
        f'[newsletter]\nname = "Newsroom"\nfrom = "Newsroom <news@{DOMAIN}>"\n'
        f'public_url = "https://{DOMAIN}"\n'
        f'[[feeds]]\nname = "News"\nurl = "{web.url("/feed.xml")}"\n'
        f'[delivery]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\n'
        f'security = "none"\ntimeout = 5\n{signing}', encoding="utf-8")


def send(site: Site, web: FeedServer, smtp: SmtpServer, key: Key) -> list[bytes]:
    write_key(site.root / "dkim.pem", key)
    mailing(site, web, smtp, '[dkim]\nselector = "s2026"\nprivate_key = "dkim.pem"\n')
    assert digest("collect").exit_code == 0
    result = digest("send")
    assert result.exit_code == 0, result.output
    return [received.data for received in smtp.wait_for(3)]


def tags(message: bytes) -> dict[str, str]:
    header = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", message, re.M | re.S)
    assert header, message[:500]
    value = re.sub(r"\s+", "", header[1].decode())
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_mail_the_relay_receives_verifies_against_the_served_key(
        site: Site, web: FeedServer, smtp: SmtpServer, names: NameServer, kind: str) -> None:
    key = KEYS[kind]()
    names.txt(RECORD, record(key))
    messages = send(site, web, smtp, key)
    verify = verifier(names)
    assert [verify(message) for message in messages] == [True] * 3
    assert names.asked(RECORD) == 3  # dkimpy asked the test name server for the key each time
    signed = tags(messages[0])
    assert (signed["a"], signed["d"], signed["s"], signed["c"]) == (
        f"{kind}-sha256", DOMAIN, "s2026", "relaxed/simple")
    # Every required header, each listed once more than it occurs, so none can be added.
    assert signed["h"].split(":") == [name for name in (
        "from", "to", "subject", "date", "message-id", "list-unsubscribe",
        "list-unsubscribe-post") for _ in range(2)]
    assert len({tags(message)["bh"] for message in messages}) == 3  # three bodies, three hashes


def test_a_message_changed_on_the_way_fails_verification(
        site: Site, web: FeedServer, smtp: SmtpServer, names: NameServer) -> None:
    key = KEYS["ed25519"]()
    names.txt(RECORD, record(key))
    message = send(site, web, smtp, key)[0]
    verify = verifier(names)
    assert verify(message)
    head, body = message.split(b"\r\n\r\n", 1)
    changed = {
        "a body byte": head + b"\r\n\r\n" + body.replace(b"Harbour", b"Harb0ur", 1),
        "the subject": message.replace(b"Subject: Newsroom:", b"Subject: Re: Newsroom:", 1),
        "a second List-Unsubscribe": b"List-Unsubscribe: <https://evil.example/>\r\n" + message,
        "a second From": b"From: boss@example.net\r\n" + message,
        "the recipient": re.sub(rb"\r\nTo: [^\r]*", b"\r\nTo: eve@example.net", message),
    }
    for what, variant in changed.items():
        assert variant != message, what
        assert not verify(variant), what
    # What relays do on the way leaves it valid: a trace header on top, a header refolded.
    travelled = (b"Received: from digest by relay; Tue, 1 Dec 2026 07:00:00 +0000\r\n"
                 + message.replace(b"Subject: Newsroom: ", b"Subject:   Newsroom:\r\n\t", 1))
    assert travelled != message and verify(travelled)


def test_unsigned_mail_has_no_signature(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    mailing(site, web, smtp, "")
    digest("collect")
    assert digest("send").exit_code == 0
    assert all(b"DKIM-Signature" not in received.data for received in smtp.wait_for(3))


def test_a_key_that_does_not_fit_is_one_line_and_mails_nobody(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    mailing(site, web, smtp, '[dkim]\nselector = "s2026"\nprivate_key = "dkim.pem"\n')
    key = site.root / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    digest("collect")
    result = digest("send")
    assert result.exit_code == 2
    assert f"dkim.private_key '{key}': not a PEM private key" in result.output
    assert "Traceback" not in result.output
    assert smtp.messages == []
    assert rows(site.database, "SELECT status FROM deliveries") == [("pending",)] * 3
    check = digest("check")
    assert check.exit_code == 1
    assert f"dkim.private_key '{key}': not a PEM private key" in check.output


@pytest.mark.parametrize(("make", "said"), [
    (lambda path: write_key(path, KEYS["ed25519"]()).write_bytes(
        KEYS["ed25519"]().private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"secret"))),
     "the key has a passphrase"),
    (lambda path: subprocess.run(["openssl", "genrsa", "-out", str(path), "768"], check=True,
                                 capture_output=True),
     "an RSA key of 768 bits; receivers ignore keys under 1024 (use 2048)"),
])
def test_keys_digest_cannot_sign_with_are_named(site: Site, web: FeedServer, smtp: SmtpServer,
                                                make: Callable[[Path], object],
                                                said: str) -> None:
    mailing(site, web, smtp, '[dkim]\nselector = "s2026"\nprivate_key = "dkim.pem"\n')
    make(site.root / "dkim.pem")
    result = digest("check")
    assert result.exit_code == 1
    assert f"dkim.private_key '{site.root / 'dkim.pem'}': {said}" in result.output


@pytest.mark.parametrize(("signing", "said"), [
    ('[dkim]\nselector = "s2026"\n',
     "dkim.private_key is required when dkim.selector is set"),
    ('[dkim]\nprivate_key = "dkim.pem"\n',
     "dkim.selector is required when dkim.private_key is set"),
    ('[dkim]\nselector = "s2026"\nprivate_key = "nowhere.pem"\n', "nowhere.pem'"
     ": no such file"),
    ('[dkim]\nselector = "s2026; h=from"\nprivate_key = "dkim.pem"\n',
     "dkim.selector must be a DNS name"),
])
def test_a_dkim_configuration_mistake_stops_every_command(
        site: Site, web: FeedServer, smtp: SmtpServer, signing: str, said: str) -> None:
    write_key(site.root / "dkim.pem", KEYS["ed25519"]())
    mailing(site, web, smtp, signing)
    result = digest("status")
    assert result.exit_code == 2
    assert said in result.output and len(result.output.strip().splitlines()) == 1, result.output
