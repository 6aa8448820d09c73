"""Will receivers believe the From address? The From domain's SPF, DKIM and DMARC records,
looked up in DNS (dnspython) and judged against the way digest sends.

    the relay's addresses | SPF of the envelope domain (includes followed, within RFC 7208's
    ten lookups) | the key of each DKIM selector in use | DMARC at _dmarc (else at the
    organisational domain) | one verdict per record, with the record to add or the change

Judging is done on what DNS said; a lookup that got no answer says nothing about the records,
so its verdict is "unknown" (`digest check` shows a warning), never "fails".
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, TypeVar

import dns.exception
import dns.rdatatype
import dns.resolver
from publicsuffixlist import PublicSuffixList

from digest.config import Check, Config
from digest.errors import DigestError
from digest.signing import Signer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_T = TypeVar("_T")


class Standing(StrEnum):
    PASSES = "passes"  # receivers accept what the record says of our mail
    FAILS = "fails"  # missing, broken or misaligned: mail is refused or goes to spam
    UNKNOWN = "unknown"  # not judged: no answer from DNS, a relay behind a local address


@dataclass(frozen=True)
class Verdict:
    part: str  # spf, dkim, dmarc
    standing: Standing
    detail: str


# RFC 2606: names for examples and tests. Nobody can publish records for them in public DNS,
# and no receiver accepts mail from them, so there is nothing to look up.
_RESERVED_TLDS = ("test", "example", "invalid", "localhost")
_RESERVED = ("example.com", "example.net", "example.org")

# Mailbox providers whose addresses anyone can have. Their DMARC records ask receivers to refuse
# or junk mail in their name sent through other servers (Yahoo and AOL p=reject since 2014), and
# Gmail and Yahoo hold bulk mail to DMARC since February 2024: a newsletter From one of these
# fails unless it goes out through that provider's own servers.
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
    "ymail.com", "rocketmail.com", "aol.com", "outlook.com", "hotmail.com", "hotmail.co.uk",
    "live.com", "msn.com", "icloud.com", "me.com", "mac.com", "gmx.com", "gmx.de", "gmx.net",
    "web.de", "mail.com", "yandex.ru", "yandex.com", "proton.me", "protonmail.com", "zoho.com",
})

# A relay at one of these addresses sends from another one, which digest cannot see: behind a
# NAT, or a local MTA that relays onwards.
_LOCAL = tuple(ipaddress.ip_network(net) for net in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"))

# RFC 7208 4.6.4: at most ten terms that cost a DNS lookup (include, a, mx, ptr, exists,
# redirect) per evaluation, includes and all; past that receivers give up with permerror.
# It is also what bounds the depth of nested includes (and ends an include loop).
SPF_LOOKUPS = 10
SPF_MX_NAMES = 10


class Unanswered(Exception):
    """A lookup that got no answer (timeout, SERVFAIL, no resolver)."""


class Resolver:
    """Lookups through dnspython's stub resolver: the system's, or `check.nameserver`.

    After a timeout the rest fail at once with the same reason: a resolver that does not answer
    one question will not answer the next, and each would wait `check.timeout` again."""

    def __init__(self, settings: Check) -> None:
        self.where = (f"nameserver {settings.nameserver}:{settings.port}" if settings.nameserver
                      else "the system's resolver")
        self.silent: str | None = None
        try:
            self.resolver = dns.resolver.Resolver(configure=not settings.nameserver)
        except dns.resolver.NoResolverConfiguration:
            self.silent = "no name server configured in /etc/resolv.conf"
            self.resolver = dns.resolver.Resolver(configure=False)
        if settings.nameserver:
            self.resolver.nameservers = [settings.nameserver]
            self.resolver.port = settings.port
        self.resolver.timeout = self.resolver.lifetime = settings.timeout
        self.timeout = settings.timeout

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each record's strings joined (RFC 7208 3.3); none for a
        name that does not exist."""
        return [b"".join(rdata.strings).decode("utf-8", "replace")
                for rdata in self._ask(name, dns.rdatatype.TXT)]

    def addresses(self, name: str) -> list[IPAddress]:
        return [ipaddress.ip_address(rdata.address) for kind in (dns.rdatatype.A,
                dns.rdatatype.AAAA) for rdata in self._ask(name, kind)]

    def mx(self, name: str) -> list[str]:
        return [rdata.exchange.to_text(omit_final_dot=True)
                for rdata in self._ask(name, dns.rdatatype.MX)]

    def _ask(self, name: str, kind: dns.rdatatype.RdataType) -> list[Any]:
        what = f"{kind.name} {name}"
        if self.silent:
            raise Unanswered(f"{what}: not looked up: {self.silent}")
        try:
            answer = self.resolver.resolve(name, kind, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.Timeout:
            self.silent = f"{self.where} did not answer within {self.timeout:g} s"
            raise Unanswered(f"{what}: {self.silent}") from None
        except dns.resolver.NoNameservers:
            raise Unanswered(f"{what}: {self.where} failed to answer (SERVFAIL)") from None
        except dns.exception.DNSException as error:
            raise Unanswered(f"{what}: {error}") from None
        return list(answer.rrset or ())


def review(config: Config, resolver: Resolver | None = None) -> list[Verdict]:
    """The verdicts on the From domain's records, for mail sent the way `config` sends it."""
    domain = config.newsletter.domain
    if reserved(domain):
        return [Verdict("dmarc", Standing.UNKNOWN,
                        f"newsletter.from is at {domain}, a name reserved for examples "
                        "(RFC 2606): no receiver accepts mail from it; use an address at a "
                        "domain of your own (nothing looked up)")]
    resolver = resolver or Resolver(config.check)
    envelope = config.delivery.return_path or parseaddr(config.newsletter.sender)[1]
    found = _dmarc(resolver, domain)
    policy = found if isinstance(found, Policy) else None
    spf = _spf(resolver, config.smtp.host, envelope.rpartition("@")[2].lower(), domain,
               bool(policy and policy.strict_spf))
    keys = _dkim(config, resolver, domain, bool(policy and policy.strict_dkim))
    verdicts = [spf.verdict, *([key.verdict for key in keys] or [_UNSIGNED]),
                found.judge(domain, spf, keys) if isinstance(found, Policy) else found]
    if domain in FREE_MAIL and any(v.standing is Standing.FAILS for v in verdicts):
        # Records of a provider's domain are not the operator's to change: one verdict instead.
        verdicts = [v for v in verdicts if v.standing is not Standing.FAILS] + [Verdict(
            "dmarc", Standing.FAILS,
            f"newsletter.from is a {domain} address: mail in its name sent through "
            f"{config.smtp.host} fails DMARC at Gmail and Yahoo (refused or in spam), and "
            f"{domain}'s records are not yours to change; send from an address at a domain "
            "of your own")]
    return verdicts


def reserved(domain: str) -> bool:
    return domain.rpartition(".")[2] in _RESERVED_TLDS or any(
        domain == name or domain.endswith(f".{name}") for name in _RESERVED)


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organisational(domain: str) -> str:
    """RFC 7489 3.2: the registered domain, one label under its public suffix."""
    return _suffixes().privatesuffix(domain) or domain


def aligned(one: str, other: str, strict: bool) -> bool:
    """RFC 7489 3.1: the same domain (strict), or the same organisational domain (relaxed)."""
    return one == other if strict else organisational(one) == organisational(other)


# -- SPF -----------------------------------------------------------------------------------------

class SpfResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)")
_MECHANISM = re.compile(r"([A-Za-z][A-Za-z0-9]*)(.*)")
_QUALIFIERS = {"+": SpfResult.PASS, "-": SpfResult.FAIL, "~": SpfResult.SOFTFAIL,
               "?": SpfResult.NEUTRAL}


@dataclass(frozen=True)
class SpfCheck:
    """RFC 7208's check_host() for one address: the result and the term or error behind it."""

    result: SpfResult
    why: str


class _Evaluation:
    """One check_host() run for one address, counting DNS-querying terms across includes.

    An error anywhere (no answer, a broken term, the lookup limit) ends the whole run with
    that error, named where it happened (RFC 7208 4.6.4, 5.2)."""

    def __init__(self, resolver: Resolver, address: IPAddress) -> None:
        self.resolver = resolver
        self.address = address
        self.lookups = 0
        self.top: str | None = None  # the record at the domain evaluated, to suggest a change

    def run(self, domain: str) -> SpfCheck:
        try:
            return self._check(domain)
        except _Stop as stop:
            return stop.check

    def _check(self, domain: str) -> SpfCheck:
        records = [r for r in self._lookup(lambda: self.resolver.txt(domain))
                   if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
        if not records:
            return SpfCheck(SpfResult.NONE, f"no SPF record at {domain}")
        if len(records) > 1:
            raise _Stop(SpfCheck(SpfResult.PERMERROR, f"{len(records)} SPF records at "
                                 f"{domain}, where there must be one"))
        if self.top is None:
            self.top = records[0]
        redirect = None
        for term in records[0].split()[1:]:
            modifier = _MODIFIER.fullmatch(term)
            if modifier:
                if modifier[1].lower() == "redirect":
                    redirect = modifier[2]
                continue  # exp= and unknown modifiers change nothing here (RFC 7208 6)
            qualifier = _QUALIFIERS.get(term[0])
            matched = self._matches(domain, term[1:] if qualifier else term)
            if matched:
                return SpfCheck(qualifier or SpfResult.PASS,
                                f"{term} at {domain}" if matched is True else matched)
        if redirect is not None:
            return self._follow(redirect, "redirect=")
        return SpfCheck(SpfResult.NEUTRAL, f"no term of the SPF record at {domain} matches")

    def _matches(self, domain: str, mechanism: str) -> bool | str:
        """Whether the mechanism matches; for an include, the included term that did."""
        parsed = _MECHANISM.fullmatch(mechanism)
        kind, rest = (parsed[1].lower(), parsed[2]) if parsed else ("", "")
        if kind == "all" and not rest:
            return True
        if kind in ("ip4", "ip6") and rest.startswith(":"):
            try:
                network = ipaddress.ip_network(rest[1:], strict=False)
            except ValueError:
                raise _Stop(SpfCheck(SpfResult.PERMERROR,
                                     f"{mechanism} at {domain}: not a network")) from None
            return network.version == self.address.version and self.address in network
        if kind == "include" and rest.startswith(":"):
            inner = self._follow(rest[1:], "include:")
            return inner.why if inner.result is SpfResult.PASS else False
        if kind in ("a", "mx", "exists", "ptr"):
            target, four, six = _dual_cidr(rest, domain, mechanism)
            self._count(f"{mechanism} at {domain}")
            if kind == "ptr":
                return False  # RFC 7208 5.5: deprecated and costly; receivers may skip it too
            if kind == "exists":
                return bool(self._lookup(lambda: self.resolver.addresses(target)))
            names = [target] if kind == "a" else self._lookup(
                lambda: self.resolver.mx(target))[:SPF_MX_NAMES]
            prefix = four if self.address.version == 4 else six
            for name in names:
                for found in self._lookup(functools.partial(self.resolver.addresses, name)):
                    if found.version == self.address.version and self.address in (
                            ipaddress.ip_network(f"{found}/{prefix}", strict=False)):
                        return True
            return False
        raise _Stop(SpfCheck(SpfResult.PERMERROR, f"{mechanism} at {domain}: not an SPF term"))

    def _follow(self, target: str, how: str) -> SpfCheck:
        """An include or redirect: its record's result, where "no record" is an error."""
        if "%" in target:
            raise _Stop(_macro(how, target))
        self._count(f"{how}{target}")
        inner = self._check(target)
        if inner.result is SpfResult.NONE:
            raise _Stop(SpfCheck(SpfResult.PERMERROR, f"{how}{target}: {inner.why}"))
        return inner

    def _count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > SPF_LOOKUPS:
            raise _Stop(SpfCheck(SpfResult.PERMERROR, f"more than {SPF_LOOKUPS} DNS lookups "
                                 f"(the limit, RFC 7208 4.6.4), the last by {term}"))

    @staticmethod
    def _lookup(ask: Callable[[], list[_T]]) -> list[_T]:
        try:
            return ask()
        except Unanswered as error:
            raise _Stop(SpfCheck(SpfResult.TEMPERROR, str(error))) from None


class _Stop(Exception):
    """An evaluation ends at once (RFC 7208: errors are not matches, they end check_host)."""

    def __init__(self, check: SpfCheck) -> None:
        super().__init__(check.why)
        self.check = check


def _dual_cidr(rest: str, domain: str, mechanism: str) -> tuple[str, int, int]:
    """`:host/24//64` after a, mx, exists or ptr as (host, 24, 64); the current domain and whole
    addresses by default."""
    head, _, six = rest.partition("//")
    head, _, four = head.partition("/")
    if head and not head.startswith(":"):
        raise _Stop(SpfCheck(SpfResult.PERMERROR, f"{mechanism} at {domain}: not an SPF term"))
    target = head[1:] or domain
    if "%" in target:
        raise _Stop(_macro(mechanism.partition(":")[0] + ":", target))
    try:
        return target, int(four or 32), int(six or 128)
    except ValueError:
        raise _Stop(SpfCheck(SpfResult.PERMERROR,
                             f"{mechanism} at {domain}: not a prefix length")) from None


def _macro(how: str, target: str) -> SpfCheck:
    return SpfCheck(SpfResult.TEMPERROR, f"{how}{target} uses SPF macros, which digest does "
                    "not expand: check with your receivers' reports")


# -- verdicts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Judged:
    verdict: Verdict
    passes: bool = False  # authenticates our mail for the From domain, aligned as DMARC asks


@dataclass(frozen=True)
class Policy:
    """The DMARC record that applies to the From domain, as far as judging needs it."""

    name: str  # where it was found: _dmarc.<domain> or _dmarc.<organisational domain>
    policy: str  # none, quarantine, reject (sp= when inherited by a subdomain)
    strict_spf: bool
    strict_dkim: bool

    def judge(self, domain: str, spf: _Judged, keys: list[_Judged]) -> Verdict:
        where = f"DMARC at {self.name} (p={self.policy})"
        by = ["SPF"] * spf.passes + ["DKIM"] * any(key.passes for key in keys)
        if by:
            return Verdict("dmarc", Standing.PASSES,
                           f"{where}: mail passes, by {' and '.join(by)} aligned with {domain}")
        if any(j.verdict.standing is Standing.UNKNOWN for j in (spf, *keys)):
            return Verdict("dmarc", Standing.UNKNOWN, f"{where}: mail passes only if SPF or "
                           "DKIM does, which could not be told (see above)")
        outcome = {"reject": "refuse it", "quarantine": "put it in spam"}.get(
            self.policy, "may put it in spam (they require bulk mail to pass DMARC)")
        return Verdict("dmarc", Standing.FAILS, f"{where}: mail fails it, neither SPF nor DKIM "
                       f"passes aligned with {domain}: Gmail and Yahoo {outcome}")


def _dmarc(resolver: Resolver, domain: str) -> Policy | Verdict:
    """The policy for `domain`: its own record, else its organisational domain's (RFC 7489
    6.6.3); else the verdict on why there is none."""
    organisation = organisational(domain)
    for name in dict.fromkeys((domain, organisation)):
        try:
            records = [r for r in resolver.txt(f"_dmarc.{name}") if _DMARC.match(r)]
        except Unanswered as error:
            return Verdict("dmarc", Standing.UNKNOWN, str(error))
        if len(records) > 1:
            return Verdict("dmarc", Standing.FAILS, f"{len(records)} DMARC records at "
                           f"_dmarc.{name}: receivers apply none of them; keep one")
        if records:
            tags = _tags(records[0])
            chosen = tags.get("sp") if name != domain and "sp" in tags else tags.get("p")
            if chosen is None and "rua" in tags:
                chosen = "none"  # RFC 7489 6.6.3: a record without p= but with rua= reports
            if (chosen or "").lower() not in ("none", "quarantine", "reject"):
                return Verdict("dmarc", Standing.FAILS,
                               f"the DMARC record at _dmarc.{name} has no valid p= (none, "
                               f"quarantine or reject): {records[0]!r}")
            return Policy(f"_dmarc.{name}", (chosen or "").lower(),
                          tags.get("aspf", "r").lower() == "s",
                          tags.get("adkim", "r").lower() == "s")
    also = f" nor at _dmarc.{organisation}" if organisation != domain else ""
    return Verdict("dmarc", Standing.FAILS,
                   f"no DMARC record at _dmarc.{domain}{also}: Gmail and Yahoo require one "
                   f"of bulk senders; add: {zone(f'_dmarc.{domain}', _NEW_DMARC)} (p=none "
                   "asks nothing of receivers yet; add rua=mailto:… for their reports, then "
                   "raise p)")


_DMARC = re.compile(r"v\s*=\s*DMARC1\s*(?:;|$)")
_NEW_DMARC = "v=DMARC1; p=none"


def _spf(resolver: Resolver, host: str, domain: str, from_domain: str,
         strict: bool) -> _Judged:
    """Whether SPF at the envelope domain covers each address the relay has."""
    try:
        relay = _relay(resolver, host)
    except Unanswered as error:
        return _Judged(Verdict("spf", Standing.UNKNOWN, f"the relay's address: {error}"))
    if not relay:
        return _Judged(Verdict("spf", Standing.UNKNOWN, f"smtp.host {host} has no address "
                               "in DNS: SPF not checked"))
    runs = {address: _Evaluation(resolver, address) for address in relay}
    checks = {address: run.run(domain) for address, run in runs.items()}
    results = {check.result for check in checks.values()}
    first = next(iter(checks.values()))
    for result, standing, say in (
            (SpfResult.TEMPERROR, Standing.UNKNOWN, "SPF at {domain}: {why}"),
            (SpfResult.PERMERROR, Standing.FAILS,
             "SPF at {domain} is broken: {why}; receivers count that as a failure")):
        if result in results:
            why = next(c.why for c in checks.values() if c.result is result)
            return _Judged(Verdict("spf", standing, say.format(domain=domain, why=why)))
    mechanisms = _mechanisms(host, relay)
    local = all(_local(address) for address in relay)
    if SpfResult.NONE in results:
        if local:  # its own address would be the wrong advice
            return _Judged(Verdict(
                "spf", Standing.FAILS,
                f"no SPF record at {domain}: add one with the address your relay sends out "
                f"from ({host} is a local address): "
                f"{zone(domain, 'v=spf1 ip4:ADDRESS ~all')}"))
        return _Judged(Verdict("spf", Standing.FAILS, f"no SPF record at {domain}: add "
                               f"{zone(domain, f'v=spf1 {mechanisms} ~all')}"))
    missed = [address for address, check in checks.items() if check.result is not SpfResult.PASS]
    if missed:
        listed = ", ".join(map(str, missed))
        record = runs[missed[0]].top or ""
        miss = checks[missed[0]]
        if local:
            return _Judged(Verdict(
                "spf", Standing.UNKNOWN,
                f"the relay {host} is at a local address ({listed}): receivers see the address "
                f"it sends out from, which digest cannot see from here; make sure SPF at "
                f"{domain} covers that one ({record!r})"))
        return _Judged(Verdict(
            "spf", Standing.FAILS,
            f"SPF at {domain} does not cover the relay {host} ({listed}): {miss.result} by "
            f"{miss.why}; change it to: {zone(domain, _with(record, mechanisms))} (or use the "
            "include your relay's provider documents)"))
    if not aligned(domain, from_domain, strict):
        return _Judged(Verdict(
            "spf", Standing.FAILS,
            f"SPF at {domain} covers the relay, but {domain}, the envelope sender's domain "
            f"(delivery.return_path), does not align with the From domain {from_domain}"
            f"{' (aspf=s)' if strict else ''}: DMARC does not count it"))
    return _Judged(Verdict("spf", Standing.PASSES,
                           f"SPF at {domain} covers the relay {host}: {first.why}"), True)


def _relay(resolver: Resolver, host: str) -> list[IPAddress]:
    if _literal(host):
        return _literal(host)
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 6.3: always loopback
        return [ipaddress.ip_address("127.0.0.1")]
    return resolver.addresses(host)


def _local(address: IPAddress) -> bool:
    return any(address in network for network in _LOCAL if network.version == address.version)


def _mechanisms(host: str, relay: list[IPAddress]) -> str:
    """What would make SPF cover the relay: the address when smtp.host is one, else the name,
    which follows the relay's address changes."""
    return f"ip{relay[0].version}:{relay[0]}" if relay == _literal(host) else f"a:{host}"


def _literal(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return []


def _with(record: str, mechanism: str) -> str:
    """The SPF record with one more mechanism, first: the first term that matches decides, so
    only there does it win over any term that excludes the relay."""
    version, *terms = record.split()
    return " ".join([version, mechanism, *terms])


# Without a selector digest cannot know whether the relay signs: DMARC is judged without DKIM.
_UNSIGNED = Verdict("dkim", Standing.UNKNOWN,
                    "no DKIM selector set: if the relay signs, set smtp.dkim_selector to have "
                    "its key checked, else let digest sign ([dkim]); Gmail and Yahoo require "
                    "DKIM of bulk senders")


def _dkim(config: Config, resolver: Resolver, from_domain: str, strict: bool) -> list[_Judged]:
    """The key of each selector in use: digest's own ([dkim]) and the relay's."""
    keys: list[tuple[str, str, Signer | None]] = []
    if config.dkim.selector:
        try:
            signer = Signer.load(config.dkim, from_domain)
        except DigestError as error:
            return [_Judged(Verdict("dkim", Standing.FAILS, str(error)))]
        keys.append((signer.record_name, signer.domain, signer))
    if config.smtp.dkim_selector:
        keys.append((f"{config.smtp.dkim_selector}._domainkey.{from_domain}", from_domain, None))
    return [_key(resolver, name, domain, signer, from_domain, strict)
            for name, domain, signer in keys]


def _key(resolver: Resolver, name: str, domain: str, signer: Signer | None, from_domain: str,
         strict: bool) -> _Judged:
    add = (f"add: {zone(name, signer.record)}" if signer
           else "publish there the key record your relay gives you")
    try:
        records = resolver.txt(name)
    except Unanswered as error:
        return _Judged(Verdict("dkim", Standing.UNKNOWN, str(error)))
    if not records:
        return _Judged(Verdict("dkim", Standing.FAILS, f"no DKIM key at {name}: {add}"))
    tags = _tags(records[0])
    public = "".join(tags.get("p", "").split())
    kind = tags.get("k", "rsa").lower()
    if not public:
        return _Judged(Verdict("dkim", Standing.FAILS,
                               f"the DKIM key at {name} is revoked (empty p=): {add}"))
    if signer and not (kind == signer.kind and signer.is_public_key(public)):
        return _Judged(Verdict(
            "dkim", Standing.FAILS,
            f"the DKIM key at {name} is not the public half of dkim.private_key: receivers "
            f"fail every signature; change it to: {zone(name, signer.record)}"))
    if not aligned(domain, from_domain, strict):
        return _Judged(Verdict(
            "dkim", Standing.FAILS,
            f"DKIM signs as d={domain}, which does not align with the From domain "
            f"{from_domain}{' (adkim=s)' if strict else ''}: DMARC does not count it; set "
            f"dkim.domain = \"{from_domain}\" and publish the key at "
            f"{name.replace(domain, from_domain)}"))
    what = "matches dkim.private_key" if signer else "is published (the relay signs)"
    return _Judged(Verdict("dkim", Standing.PASSES, f"DKIM key at {name} ({kind}) {what}"),
                   True)


def _tags(record: str) -> dict[str, str]:
    """`v=DKIM1; k=rsa; p=…` as a dict, names lower-cased (RFC 6376 3.2, RFC 7489 6.4)."""
    pairs = (part.partition("=") for part in record.split(";"))
    return {name.strip().lower(): value.strip() for name, _, value in pairs if name.strip()}


def zone(name: str, value: str) -> str:
    """A TXT record as a zone file line; strings of at most 255 characters (RFC 1035 3.3)."""
    strings = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{name}. TXT {strings}"
