"""`digest check`'s SPF, DKIM and DMARC verdicts, on records served over UDP by a real name
server on loopback (tests/nameserver.py), looked up through `check.nameserver`."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from nameserver import NameServer
from servers import SmtpServer
from support import Site, digest

from digest import config, deliverability
from digest.deliverability import Standing, Verdict

DOMAIN = "newsroom.internal"
# A relay name the test name server resolves; nothing ever connects to it.
RELAY = "relay.newsroom.internal"
RELAY_ADDRESS = "192.0.2.25"
SUBSCRIBERS = "email,name\nann@example.org,Ann\n"


@pytest.fixture
def names() -> Iterator[NameServer]:
    with NameServer() as server:
        yield server


def key_file(folder: Path, name: str = "dkim.pem") -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    path = folder / name
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def published(path: Path) -> str:
    """The key record of a key file, derived here rather than by the code under test."""
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def settings(site: Site, names: NameServer, sender: str = f"news@{DOMAIN}", host: str = RELAY,
             signing: str | None = "", delivery: str = "", smtp: str = "") -> config.Config:
    """A configuration mailing through `host`; `signing` is more of [dkim] (None: no [dkim])."""
    dkim = ("" if signing is None else f'[dkim]\nselector = "s2026"\n{signing}'
            f'private_key = "{key_file(site.root)}"\n')
    site.config.write_text(
        f'[newsletter]\nfrom = "News <{sender}>"\npublic_url = "https://{DOMAIN}"\n'
        f'[delivery]\ntransport = "smtp"\n{delivery}'
        f'[smtp]\nhost = "{host}"\nport = 2525\nsecurity = "none"\ntimeout = 5\n{smtp}'
        f"{dkim}{names.config}", encoding="utf-8")
    return config.load(site.config)


def review(conf: config.Config) -> dict[str, list[Verdict]]:
    verdicts: dict[str, list[Verdict]] = {}
    for verdict in deliverability.review(conf):
        verdicts.setdefault(verdict.part, []).append(verdict)
    return verdicts


def good(names: NameServer, conf: config.Config) -> NameServer:
    """Records under which mail from DOMAIN through RELAY passes everything."""
    names.address(RELAY, RELAY_ADDRESS)
    names.txt(DOMAIN, "v=spf1 include:_spf.mailer.internal -all")
    names.txt("_spf.mailer.internal", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")
    assert conf.dkim.private_key is not None
    names.txt(f"s2026._domainkey.{DOMAIN}", published(conf.dkim.private_key))
    names.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:reports@newsroom.internal")
    return names


def only(verdicts: dict[str, list[Verdict]], part: str) -> Verdict:
    assert len(verdicts[part]) == 1, verdicts
    return verdicts[part][0]


def suggested(detail: str) -> tuple[str, str]:
    """The zone line a verdict says to add, as (name, value)."""
    match = re.search(r'([\w.-]+)\. TXT ((?:"[^"]*" ?)+)', detail)
    assert match, detail
    return match[1], "".join(re.findall(r'"([^"]*)"', match[2]))


def test_good_records_pass_by_spf_and_dkim(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf)
    verdicts = review(conf)
    assert {part: [v.standing for v in found] for part, found in verdicts.items()} == {
        "spf": [Standing.PASSES], "dkim": [Standing.PASSES], "dmarc": [Standing.PASSES]}
    assert only(verdicts, "spf").detail == (
        f"SPF at {DOMAIN} covers the relay {RELAY}: ip4:192.0.2.0/24 at _spf.mailer.internal")
    assert only(verdicts, "dmarc").detail == (
        f"DMARC at _dmarc.{DOMAIN} (p=reject): mail passes, by SPF and DKIM aligned with {DOMAIN}")
    assert names.asked(f"_dmarc.{DOMAIN}") == 1 and names.asked("_spf.mailer.internal") == 1


def test_missing_records_come_with_the_exact_records_to_add(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    names.address(RELAY, RELAY_ADDRESS)
    verdicts = review(conf)
    assert all(v.standing is Standing.FAILS for found in verdicts.values() for v in found)
    spf, dkim, dmarc = (only(verdicts, part).detail for part in ("spf", "dkim", "dmarc"))
    assert spf == f'no SPF record at {DOMAIN}: add {DOMAIN}. TXT "v=spf1 a:{RELAY} ~all"'
    assert dkim.startswith(f"no DKIM key at s2026._domainkey.{DOMAIN}: add: ")
    assert f"no DMARC record at _dmarc.{DOMAIN}: Gmail and Yahoo require one" in dmarc
    for detail in (spf, dkim, dmarc):
        names.txt(*suggested(detail))  # exactly what it said to add
    assert suggested(dkim)[1] == published(conf.dkim.private_key)  # type: ignore[arg-type]
    again = review(conf)
    assert [v.standing for found in again.values() for v in found] == [Standing.PASSES] * 3, again


@pytest.mark.parametrize("record", [
    f"v=spf1 ip4:{RELAY_ADDRESS} -all",
    "v=spf1 ip4:192.0.2.0/27 -all",
    "v=spf1 -ip4:198.51.100.1 a:relay.newsroom.internal -all",
    "v=spf1 a:other.newsroom.internal/24 -all",  # 192.0.2.200/24
    "v=spf1 mx -all",
    "v=spf1 mx:mailer.internal/24 -all",
    "v=spf1 include:one.mailer.internal -all",  # which includes two.mailer.internal
    "v=spf1 redirect=two.mailer.internal",
    "v=spf1 exp=explain.newsroom.internal ?ptr ip4:192.0.2.25 -all",
])
def test_spf_terms_that_cover_the_relay(site: Site, names: NameServer, record: str) -> None:
    conf = settings(site, names)
    good(names, conf).remove(DOMAIN).txt(DOMAIN, record)
    names.txt(DOMAIN, "google-site-verification=abc")  # TXT records that are not SPF
    names.address("other.newsroom.internal", "192.0.2.200").mx(DOMAIN, RELAY)
    names.mx("mailer.internal", "mx.mailer.internal").address("mx.mailer.internal", "192.0.2.9")
    names.txt("one.mailer.internal", "v=spf1 include:two.mailer.internal ~all")
    names.txt("two.mailer.internal", "v=spf1 ip4:192.0.2.25 -all")
    assert only(review(conf), "spf").standing is Standing.PASSES, record


def test_every_address_of_the_relay_must_be_covered(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf).address(RELAY, "2001:db8::25").remove("_spf.mailer.internal")
    names.txt("_spf.mailer.internal", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 ~all")
    spf = only(review(conf), "spf")
    assert spf.standing is Standing.FAILS
    assert spf.detail.startswith(f"SPF at {DOMAIN} does not cover the relay {RELAY} "
                                 "(2001:db8::25): fail by -all at newsroom.internal;")
    names.remove("_spf.mailer.internal").txt("_spf.mailer.internal",
                                           "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")
    assert only(review(conf), "spf").detail == (
        f"SPF at {DOMAIN} covers the relay {RELAY}: ip4:192.0.2.0/24 at _spf.mailer.internal")


@pytest.mark.parametrize(("record", "result"), [
    ("v=spf1 ip4:198.51.100.0/24 -all", "fail by -all at newsroom.internal"),
    ("v=spf1 ip6:2001:db8::/32 ~all", "softfail by ~all at newsroom.internal"),
    ("v=spf1 a:other.newsroom.internal ?all", "neutral by ?all at newsroom.internal"),
    ("v=spf1 include:strict.mailer.internal", "neutral by no term of the SPF record at "
     "newsroom.internal matches"),
    ("v=spf1 -ip4:192.0.2.25 +all", "fail by -ip4:192.0.2.25 at newsroom.internal"),
])
def test_spf_without_the_relay_says_what_to_change(site: Site, names: NameServer, record: str,
                                                   result: str) -> None:
    conf = settings(site, names)
    good(names, conf).remove(DOMAIN).txt(DOMAIN, record)
    names.address("other.newsroom.internal", "192.0.2.200")
    names.txt("strict.mailer.internal", "v=spf1 ip4:198.51.100.1 -all")
    spf = only(review(conf), "spf")
    assert spf.standing is Standing.FAILS
    assert spf.detail.startswith(f"SPF at {DOMAIN} does not cover the relay {RELAY} "
                                 f"({RELAY_ADDRESS}): {result}; change it to: "), spf.detail
    names.remove(DOMAIN).txt(*suggested(spf.detail))
    assert suggested(spf.detail)[1] == record.replace("v=spf1", f"v=spf1 a:{RELAY}")
    assert only(review(conf), "spf").standing is Standing.PASSES


def test_an_include_loop_ends_at_the_lookup_limit(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf).remove(DOMAIN).txt(DOMAIN, "v=spf1 include:loop.mailer.internal -all")
    names.txt("loop.mailer.internal", "v=spf1 include:loop.mailer.internal -all")
    spf = only(review(conf), "spf")
    assert spf.standing is Standing.FAILS
    assert spf.detail == (f"SPF at {DOMAIN} is broken: more than 10 DNS lookups (the limit, "
                          "RFC 7208 4.6.4), the last by include:loop.mailer.internal; receivers "
                          "count that as a failure")
    assert names.asked("loop.mailer.internal") == 10


@pytest.mark.parametrize(("records", "detail"), [
    (["v=spf1 ip4:192.0.2.25 -all", "v=spf1 a -all"],
     "2 SPF records at newsroom.internal, where there must be one"),
    (["v=spf1 include:nowhere.mailer.internal -all"],
     "include:nowhere.mailer.internal: no SPF record at nowhere.mailer.internal"),
    (["v=spf1 ip4:192.0.2.999 -all"], "ip4:192.0.2.999 at newsroom.internal: not a network"),
    (["v=spf1 a/99x -all"], "a/99x at newsroom.internal: not a prefix length"),
])
def test_a_broken_spf_record_is_a_problem(site: Site, names: NameServer, records: list[str],
                                          detail: str) -> None:
    conf = settings(site, names)
    good(names, conf).remove(DOMAIN).txt(DOMAIN, *records)
    spf = only(review(conf), "spf")
    assert spf.standing is Standing.FAILS
    assert spf.detail == f"SPF at {DOMAIN} is broken: {detail}; receivers count that as a failure"


def test_a_local_relay_outside_spf_is_a_warning(site: Site, names: NameServer) -> None:
    conf = settings(site, names, host="127.0.0.1")
    good(names, conf)
    spf = only(review(conf), "spf")
    assert spf.standing is Standing.UNKNOWN
    assert spf.detail.startswith("the relay 127.0.0.1 is at a local address (127.0.0.1): "
                                 "receivers see the address it sends out from")


def test_no_spf_behind_a_local_relay_asks_for_the_address_it_sends_from(
        site: Site, names: NameServer) -> None:
    conf = settings(site, names, host="localhost")
    spf = only(review(conf), "spf")
    assert spf == Verdict("spf", Standing.FAILS, (
        f"no SPF record at {DOMAIN}: add one with the address your relay sends out from "
        f'(localhost is a local address): {DOMAIN}. TXT "v=spf1 ip4:ADDRESS ~all"'))
    assert names.asked("localhost") == 0


def test_a_dkim_key_that_is_not_ours_is_a_problem(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf).remove(f"s2026._domainkey.{DOMAIN}")
    names.txt(f"s2026._domainkey.{DOMAIN}", published(key_file(site.root, "other.pem")))
    dkim = only(review(conf), "dkim")
    assert dkim.standing is Standing.FAILS
    assert dkim.detail.startswith(f"the DKIM key at s2026._domainkey.{DOMAIN} is not the "
                                  "public half of dkim.private_key")
    names.remove(f"s2026._domainkey.{DOMAIN}").txt(*suggested(dkim.detail))
    assert only(review(conf), "dkim").standing is Standing.PASSES


def test_a_revoked_dkim_key_is_a_problem(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf).remove(f"s2026._domainkey.{DOMAIN}")
    names.txt(f"s2026._domainkey.{DOMAIN}", "v=DKIM1; k=ed25519; p=")
    assert only(review(conf), "dkim").detail.startswith(
        f"the DKIM key at s2026._domainkey.{DOMAIN} is revoked (empty p=)")


@pytest.mark.parametrize(("domain", "dmarc", "standing"), [
    ("mail.newsroom.internal", "v=DMARC1; p=reject", Standing.PASSES),  # relaxed: same org
    ("mail.newsroom.internal", "v=DMARC1; p=reject; adkim=s", Standing.FAILS),
    ("mailer.internal", "v=DMARC1; p=reject", Standing.FAILS),
])
def test_dkim_domain_alignment(site: Site, names: NameServer, domain: str, dmarc: str,
                               standing: Standing) -> None:
    conf = settings(site, names, signing=f'domain = "{domain}"\n')
    good(names, conf).remove(f"_dmarc.{DOMAIN}").txt(f"_dmarc.{DOMAIN}", dmarc)
    names.txt(f"s2026._domainkey.{domain}", published(conf.dkim.private_key))  # type: ignore[arg-type]
    dkim = only(review(conf), "dkim")
    assert dkim.standing is standing, dkim.detail
    if standing is Standing.FAILS:
        assert dkim.detail.startswith(f"DKIM signs as d={domain}, which does not align with "
                                      f"the From domain {DOMAIN}")


def test_the_relays_own_selector_is_looked_up(site: Site, names: NameServer) -> None:
    conf = settings(site, names, signing=None, smtp='dkim_selector = "relay1"\n')
    names.address(RELAY, RELAY_ADDRESS)
    assert only(review(conf), "dkim").detail == (
        f"no DKIM key at relay1._domainkey.{DOMAIN}: publish there the key record your relay "
        "gives you")
    names.txt(f"relay1._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=MIIBIjANBgkq")
    assert only(review(conf), "dkim").detail == (
        f"DKIM key at relay1._domainkey.{DOMAIN} (rsa) is published (the relay signs)")


def test_an_envelope_domain_that_does_not_align_fails_spf_for_dmarc(
        site: Site, names: NameServer) -> None:
    conf = settings(site, names, delivery='return_path = "bounces@bounce.mailer.internal"\n',
                    signing=None)
    names.address(RELAY, RELAY_ADDRESS)
    names.txt("bounce.mailer.internal", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    names.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine")
    verdicts = review(conf)
    assert only(verdicts, "spf").detail == (
        "SPF at bounce.mailer.internal covers the relay, but bounce.mailer.internal, the "
        "envelope sender's domain (delivery.return_path), does not align with the From domain "
        f"{DOMAIN}: DMARC does not count it")
    assert only(verdicts, "dmarc") == Verdict("dmarc", Standing.FAILS, (
        f"DMARC at _dmarc.{DOMAIN} (p=quarantine): mail fails it, neither SPF nor DKIM passes "
        f"aligned with {DOMAIN}: Gmail and Yahoo put it in spam"))


def test_a_subdomain_takes_its_organisations_dmarc_policy(site: Site, names: NameServer) -> None:
    conf = settings(site, names, sender=f"news@letters.{DOMAIN}", signing=None)
    names.address(RELAY, RELAY_ADDRESS)
    names.txt(f"letters.{DOMAIN}", f"v=spf1 a:{RELAY} -all")
    names.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; sp=quarantine")
    assert only(review(conf), "dmarc").detail == (
        f"DMARC at _dmarc.{DOMAIN} (p=quarantine): mail passes, by SPF aligned with "
        f"letters.{DOMAIN}")
    assert names.asked(f"_dmarc.letters.{DOMAIN}") == 1


def test_two_dmarc_records_are_a_problem(site: Site, names: NameServer) -> None:
    conf = settings(site, names)
    good(names, conf).txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    assert only(review(conf), "dmarc") == Verdict("dmarc", Standing.FAILS, (
        f"2 DMARC records at _dmarc.{DOMAIN}: receivers apply none of them; keep one"))


@pytest.mark.parametrize(("domain", "dmarc"), [
    ("gmail.com", "v=DMARC1; p=none; sp=quarantine; rua=mailto:mailauth-reports@google.com"),
    ("yahoo.com", "v=DMARC1; p=reject; pct=100; rua=mailto:d@rua.agari.com"),
])
def test_a_free_mail_from_address_fails_dmarc(site: Site, names: NameServer, domain: str,
                                              dmarc: str) -> None:
    conf = settings(site, names, sender=f"ann.editor@{domain}", signing=None)
    names.address(RELAY, RELAY_ADDRESS)
    names.txt(domain, "v=spf1 include:_spf.provider.internal ~all")
    names.txt("_spf.provider.internal", "v=spf1 ip4:209.85.128.0/17 ~all")
    names.txt(f"_dmarc.{domain}", dmarc)
    verdicts = deliverability.review(conf)
    fails = [v for v in verdicts if v.standing is Standing.FAILS]
    assert fails == [Verdict("dmarc", Standing.FAILS, (
        f"newsletter.from is a {domain} address: mail in its name sent through {RELAY} fails "
        f"DMARC at Gmail and Yahoo (refused or in spam), and {domain}'s records are not yours "
        "to change; send from an address at a domain of your own"))]
    assert not any(re.search(r"\badd\b|change it to", v.detail) for v in verdicts)


def test_free_mail_through_the_providers_own_relay_passes(site: Site, names: NameServer) -> None:
    conf = settings(site, names, sender="ann.editor@gmail.com", signing=None)
    names.address(RELAY, "209.85.200.1")
    names.txt("gmail.com", "v=spf1 include:_spf.provider.internal ~all")
    names.txt("_spf.provider.internal", "v=spf1 ip4:209.85.128.0/17 ~all")
    names.txt("_dmarc.gmail.com", "v=DMARC1; p=none; sp=quarantine")
    assert only(review(conf), "dmarc").standing is Standing.PASSES


def test_a_reserved_from_domain_is_not_looked_up(site: Site, names: NameServer) -> None:
    conf = settings(site, names, sender="news@example.com")
    assert deliverability.review(conf) == [Verdict("dmarc", Standing.UNKNOWN, (
        "newsletter.from is at example.com, a name reserved for examples (RFC 2606): no "
        "receiver accepts mail from it; use an address at a domain of your own (nothing "
        "looked up)"))]
    assert names.queries == {}


# -- through `digest check`, with the real relay ------------------------------------------------

def check_site(site: Site, names: NameServer, smtp: SmtpServer, more: str = "") -> None:
    """`digest check` against the real relay; `more` is added to [smtp] (tables may follow)."""
    site.subscribers(SUBSCRIBERS)
    site.config.write_text(
        f'[newsletter]\nfrom = "News <news@{DOMAIN}>"\npublic_url = "https://{DOMAIN}"\n'
        f'[delivery]\ntransport = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\n'
        f'security = "none"\ntimeout = 5\n{more}{names.config}', encoding="utf-8")


def lines(output: str, level: str) -> list[str]:
    """The findings of one level, as "level part: detail" (the command pads the level)."""
    return [" ".join(line.split(maxsplit=1)) for line in output.splitlines()
            if line.startswith(f"{level} ")]


def test_check_reports_the_records_and_exits_0_when_all_is_well(
        site: Site, names: NameServer, smtp: SmtpServer) -> None:
    key = key_file(site.root)
    check_site(site, names, smtp, f'[dkim]\nselector = "s2026"\nprivate_key = "{key.name}"\n')
    names.txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    names.txt(f"s2026._domainkey.{DOMAIN}", published(key))
    names.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine")
    result = digest("check")
    assert result.exit_code == 0, result.output
    assert lines(result.output, "problem") == lines(result.output, "warning") == []
    assert lines(result.output, "ok")[-3:] == [
        f"ok spf: SPF at {DOMAIN} covers the relay 127.0.0.1: ip4:127.0.0.1 at {DOMAIN}",
        f"ok dkim: DKIM key at s2026._domainkey.{DOMAIN} (ed25519) matches dkim.private_key",
        f"ok dmarc: DMARC at _dmarc.{DOMAIN} (p=quarantine): mail passes, by SPF and DKIM "
        f"aligned with {DOMAIN}"]
    assert smtp.messages == []


def test_check_exits_1_naming_each_missing_record(site: Site, names: NameServer,
                                                  smtp: SmtpServer) -> None:
    check_site(site, names, smtp, 'dkim_selector = "relay1"\n')
    names.txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    result = digest("check")
    assert result.exit_code == 1, result.output
    assert lines(result.output, "problem") == [
        f"problem dkim: no DKIM key at relay1._domainkey.{DOMAIN}: publish there the key "
        "record your relay gives you",
        f"problem dmarc: no DMARC record at _dmarc.{DOMAIN}: Gmail and Yahoo require one of "
        f'bulk senders; add: _dmarc.{DOMAIN}. TXT "v=DMARC1; p=none" (p=none asks nothing of '
        "receivers yet; add rua=mailto:… for their reports, then raise p)"]


def test_a_dns_failure_is_a_warning_not_an_error(site: Site, names: NameServer,
                                                 smtp: SmtpServer) -> None:
    check_site(site, names, smtp)
    names.silence()
    result = digest("check")
    assert result.exit_code == 0, result.output
    assert lines(result.output, "problem") == []
    silent = f"nameserver 127.0.0.1:{names.port} did not answer within 1 s"
    assert lines(result.output, "warning") == [
        f"warning spf: SPF at {DOMAIN}: TXT {DOMAIN}: not looked up: {silent}",
        f"warning dkim: {deliverability._UNSIGNED.detail}",
        f"warning dmarc: TXT _dmarc.{DOMAIN}: {silent}"]
    # The first lookup that went unanswered was the last one tried.
    assert list(names.queries) == [(f"_dmarc.{DOMAIN}", "TXT")]


def test_a_servfail_is_a_warning_for_that_record_only(site: Site, names: NameServer,
                                                      smtp: SmtpServer) -> None:
    check_site(site, names, smtp)
    names.txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all").fail(f"_dmarc.{DOMAIN}")
    result = digest("check")
    assert result.exit_code == 0, result.output
    assert f"ok spf: SPF at {DOMAIN} covers the relay 127.0.0.1: ip4:127.0.0.1 at {DOMAIN}" \
        in lines(result.output, "ok")
    assert lines(result.output, "warning")[-1] == (
        f"warning dmarc: TXT _dmarc.{DOMAIN}: nameserver 127.0.0.1:{names.port} failed to "
        "answer (SERVFAIL)")
