"""What comes back: each message read from its bytes and told apart by its structure.

    read bytes | classify: complaint (ARF) | bounce (RFC 3464, else flufl.bounce) | delay
               | mailto unsubscribe | auto-reply (RFC 3834) | other
               | decide: suppress, count or ignore

Pure functions over records: nothing here touches the network, the disk or the store. The
job (jobs.inbox) matches what a message names against the ledger and carries the decision out.

Hard or soft is a matter of whose fault it is. Hard means the address itself is dead: the
mailbox or the domain does not exist, or was disabled or moved. A permanent failure for any
other reason (a full mailbox, a message refused as spam or by policy, one too big, a
blocklisted sender) says nothing against the address: it counts as soft, and many of them
from one provider point at the sending, not the list.
"""

from __future__ import annotations

import email
import email.policy
import enum
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from email.message import Message
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from digest.returns import Ours


class Kind(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto-reply"
    OTHER = "other"

    @property
    def handled(self) -> bool:
        """Moved out of the way once read; `other` mail is never touched."""
        return self is not Kind.OTHER


class Action(enum.StrEnum):
    SUPPRESSED = "suppressed"
    COUNTED = "counted"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Recipient:
    """A recipient a report is about, as the report names it."""

    address: str
    status: str = ""  # the enhanced status code (RFC 3463), '' when the server gave none
    hard: bool = False
    diagnostic: str = ""  # the server's own words, kept as evidence


@dataclass(frozen=True)
class Report:
    """One message as classified."""

    kind: Kind
    why: str  # what in the message told its kind
    identity: str  # its Message-ID, else a hash of its bytes: a message is acted on once
    recipients: tuple[Recipient, ...] = ()
    returns: tuple[str, ...] = ()  # return-path tokens in the addresses it came to
    mailto: tuple[str, ...] = ()  # ids in the mailto addresses it came to
    links: tuple[str, ...] = ()  # unsubscribe ids in the headers of the original it returns
    original: str = ""  # the Message-ID of the original it returns, if it shows one
    sender: str = ""  # its From address


class Unreadable(Exception):
    """The bytes are not a mail message we can read; said in a few words."""


# Header fields one of which every mail message has: a file with none of them is not one.
_MAIL_FIELDS = ("from", "to", "date", "subject", "message-id", "received", "return-path")


def read(data: bytes) -> Message:
    """The message in `data`, or Unreadable. compat32 parsing is the lenient one: a report's
    odd headers are read as text, never raised on."""
    if not data.strip():
        raise Unreadable("empty")
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if not any(message.get(name) is not None for name in _MAIL_FIELDS):
        raise Unreadable("not a mail message (no From, To, Date, Subject, Message-ID or "
                         "Received header)")
    return message


def identity(message: Message, data: bytes) -> str:
    found = _text(message.get("message-id")).strip()
    return found or "sha256:" + hashlib.sha256(data).hexdigest()


def classify(message: Message, data: bytes, ours: Ours) -> Report:
    """What the message is, from its structure alone. Raises Unreadable for a message whose
    parts cannot be decoded."""
    try:
        return _classify(message, identity(message, data), ours)
    except (LookupError, UnicodeError, ValueError, TypeError, IndexError) as error:
        raise Unreadable(f"cannot be decoded: {type(error).__name__}: {error}") from None


def _classify(message: Message, ident: str, ours: Ours) -> Report:
    arrived = _arrived(message)
    original = _original(message)
    base = Report(Kind.OTHER, "no report, reply or request of ours", ident,
                  returns=_tokens(arrived, ours.return_path, ours, named=True),
                  links=_links(original, ours) if original is not None else (),
                  original=_text(original.get("message-id")).strip() if original else "",
                  sender=parseaddr(_text(message.get("from")))[1])

    feedback = _part(message, "message/feedback-report")
    if feedback is not None:
        return _complaint(base, message, feedback, original, ours)

    status = _part(message, "message/delivery-status")
    if status is not None:
        report = _dsn(base, status, _explanation(message))
        if report is not None:
            return report

    bounce = _flufl(base, message)
    if bounce is not None:
        return bounce

    mailto = _tokens(arrived, ours.mailto, ours)
    ids = tuple(token for token in mailto if token)
    # Without a token, only what the List-Unsubscribe mailto asks for (its subject) counts:
    # the mailto may share a mailbox with replies to the newsletter.
    if ids or (mailto and "unsubscribe" in _text(message.get("subject")).lower()):
        return replace(base, kind=Kind.UNSUBSCRIBE, why="mail to the List-Unsubscribe address",
                       mailto=ids)

    automatic = _auto_reply(message)
    if automatic:
        return replace(base, kind=Kind.AUTO_REPLY, why=automatic)
    return base


# -- complaints: RFC 5965 ---------------------------------------------------------------------

# RFC 5965 3.1's feedback types that mean "the recipient did not want this". The others say
# something else (not-spam, virus, auth-failure: a DMARC report), and are nobody's opt-out.
COMPLAINTS = ("abuse", "fraud")


def _complaint(base: Report, message: Message, feedback: Message, original: Message | None,
               ours: Ours) -> Report:
    fields = _fields(feedback)
    kind = (fields.get("feedback-type").split() or [""])[0].lower()
    if kind not in COMPLAINTS:
        return replace(base, why=f"feedback report of type {kind or 'unknown'}, not a "
                                 "complaint")
    # Where the report says whom the original went to: its own fields, else the original's
    # To (providers often redact both; the tokens in the original's headers remain).
    named = [address for value in fields.getall("original-rcpt-to")
             for address in _addresses(value)]
    if not named and original is not None:
        named = _addresses(_text(original.get("to")))
    reporter = fields.get("user-agent", "") or parseaddr(_text(message.get("from")))[1]
    words = f"feedback-type {kind} from {reporter}".strip()
    recipients = tuple(Recipient(address, diagnostic=words) for address in dict.fromkeys(named))
    # The original's envelope sender, where the report gives it, names the delivery exactly.
    extra = _tokens(fields.getall("original-mail-from")
                    + ([_text(original.get("return-path"))] if original is not None else []),
                    ours.return_path, ours, named=True)
    return replace(base, kind=Kind.COMPLAINT, why=f"feedback report (RFC 5965), type {kind}",
                   recipients=recipients, returns=tuple(dict.fromkeys((*base.returns, *extra))))


# -- bounces: RFC 3464, else flufl.bounce's many formats --------------------------------------

def _dsn(base: Report, status: Message, explanation: str) -> Report | None:
    """A delivery status notification read with the email package. None when it holds no
    recipient block (a damaged report: flufl.bounce has a go at it)."""
    blocks = [block for block in _blocks(status)
              if block.get("final-recipient") or block.get("original-recipient")]
    if not blocks:
        return None
    failed: dict[str, Recipient] = {}
    other = set()
    for block in blocks:
        action = (_text(block.get("action")).lower().split() or ["none"])[0]
        # RFC 3464 2.3.3 has five actions; a block with none or another word ("failure",
        # "error", as some servers write) is a failure when its status is permanent.
        if action == "failed" or (action not in _ACTIONS
                                  and _text(block.get("status")).strip()[:1] == "5"):
            recipient = _recipient(block, explanation)
            failed.setdefault(recipient.address.lower(), recipient)
        else:
            other.add(action)
    if failed:
        return replace(base, kind=Kind.BOUNCE, why="delivery status notification (RFC 3464)",
                       recipients=tuple(failed.values()))
    # Delayed, delivered, relayed or expanded: news on the way, not a failure.
    return replace(base, kind=Kind.AUTO_REPLY, why="delivery status notification, Action: "
                                                   f"{', '.join(sorted(other))}")


_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


def _recipient(block: Message, explanation: str) -> Recipient:
    original = _typed_address(_text(block.get("original-recipient")))
    final = _typed_address(_text(block.get("final-recipient")))
    address = original or final
    diagnostic = _one_line(_text(block.get("diagnostic-code")).partition(";")[2]
                           or _text(block.get("diagnostic-code")))
    status = _code(_text(block.get("status")))
    # A generic status with a specific code in the server's words (Status: 5.0.0,
    # Diagnostic-Code: smtp; 550 5.1.1 ...): the server's code is the better witness.
    if not status or _generic(status):
        status = _code(diagnostic) or status
    words = diagnostic or _near(explanation, address)
    return Recipient(address, status, hard(status, words), _cut(words or
                                                                _text(block.get("status"))))


def _flufl(base: Report, message: Message) -> Report | None:
    """The formats before RFC 3464 and those who never adopted it (qmail, Exchange, Yahoo,
    …), as flufl.bounce recognises them. Its temporary failures are delay warnings."""
    try:
        temporary, permanent = all_failures(message)
    except Exception as error:  # flufl.bounce re-raises whatever one of its detectors hit
        raise Unreadable(f"a bounce detector failed on it: {type(error).__name__}") from None
    if permanent:
        explanation = _explanation(message)
        recipients = []
        for raw in sorted(permanent):
            address = raw.decode("ascii", "replace").strip("<>")
            words = _near(explanation, address)
            status = _code(words)
            recipients.append(Recipient(address, status, hard(status, words), _cut(words)))
        return replace(base, kind=Kind.BOUNCE, why="bounce (non-standard format, "
                       "flufl.bounce)", recipients=tuple(recipients))
    if temporary:
        return replace(base, kind=Kind.AUTO_REPLY, why="delay warning (flufl.bounce)")
    return None


# RFC 3463 codes that say the address itself is dead: bad mailbox (5.1.1), bad domain (5.1.2),
# mailbox moved (5.1.6), RFC 7505's domain that accepts no mail (5.1.10), mailbox disabled
# (5.2.1). Every other code, permanent or not, is the message's or the sender's trouble.
HARD_CODES = frozenset({"5.1.1", "5.1.2", "5.1.6", "5.1.10", "5.2.1"})

# The same said in words, as servers that give no code (or only 5.0.0) word it: Postfix,
# Sendmail, Exim, qmail, Exchange, Yahoo and others in flufl.bounce's collection of bounces.
_DEAD = re.compile(
    r"user(?:name)? unknown|unknown (?:user|recipient|mailbox|address|local.part)"
    r"|recipient unknown|mailbox unknown|no such (?:user|recipient|mailbox|address|account"
    r"|person|domain|local user)|(?:user|recipient|mailbox|address|account) (?:was )?not found"
    r"|does(?: not|n'?t) exist|(?:is )?not a valid (?:mailbox|user|recipient|address)"
    r"|invalid (?:mailbox|recipient|address|user)|no mailbox here|mailbox (?:is )?disabled"
    r"|account (?:has been |is )?(?:disabled|closed|deactivated|removed)"
    r"|(?:user|address) (?:is )?no longer (?:active|valid)|doesn'?t have an? [\w.-]+ account"
    r"|unrouteable address|host or domain name not found|domain (?:name )?not found"
    r"|user doesn'?t exist|not our customer|addressee unknown", re.IGNORECASE)
# Words that put the blame elsewhere even beside those: the sender or the content refused.
_REFUSED = re.compile(r"spam|block(?:ed|list)|blacklist|policy|reputation|rejected for|"
                      r"quota|mailbox (?:is )?full|over ?quota|too (?:big|large)", re.IGNORECASE)

# An enhanced status code in running text: class 4 or 5 (2 is success), no longer number
# around it (an IP address or a version).
_CODE = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")


def hard(status: str, words: str) -> bool:
    """Whether a failure says the address is dead: by its code, or, when the server gave no
    specific code, by its words. A 5.x.x code alone does not make it hard."""
    if status in HARD_CODES:
        return True
    if status and (status.startswith("4") or not _generic(status)):
        return False
    return bool(_DEAD.search(words)) and not _REFUSED.search(words)


def _generic(status: str) -> bool:
    """x.y.0 ("other or undefined" status of its kind) says no more than its class and
    subject do: whose fault it is is left to the words."""
    return status.endswith(".0")


def _code(text: str) -> str:
    found = _CODE.search(text)
    return found.group(1) if found else ""


# -- requests and replies -----------------------------------------------------------------------

# Subjects of out-of-office replies that carry no RFC 3834 header (Outlook's say
# "Automatic reply:", Lotus Notes' "AUTO:"), in the languages of the built-in date names.
_AWAY = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer)|auto:|autoreply|out of (?:the )?office"
    r"|away from|on vacation|vacation|abwesenheit|automatische antwort|réponse automatique"
    r"|absence|respuesta automática|fuera de la oficina|risposta automatica|fuori sede"
    r"|automatisch antwoord|afwezig|resposta automática|ausente)", re.IGNORECASE)


def _auto_reply(message: Message) -> str:
    """Why the message is an automatic reply, or '' when it is not one."""
    submitted = _text(message.get("auto-submitted")).strip().lower()
    if submitted.startswith("auto-replied"):
        return f"Auto-Submitted: {submitted} (RFC 3834)"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse"):
        if message.get(name) is not None:
            return f"{name} header"
    if _text(message.get("precedence")).strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    subject = _text(message.get("subject"))
    if _AWAY.search(subject) and (submitted.startswith("auto-")
                                  or message.get("x-auto-response-suppress") is not None
                                  or message.get("in-reply-to") is not None):
        return f"an out-of-office reply ({_cut(subject, 60)})"
    return ""


# -- reading the parts --------------------------------------------------------------------------

# Where a message says whom it was delivered to: the delivery agent's own fields first, then
# the headers its writer chose.
_ARRIVED = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")


def _arrived(message: Message) -> list[str]:
    return [_text(value) for name in _ARRIVED for value in message.get_all(name, [])]


def _tokens(values: Iterable[str], mine: str, ours: Ours,
            named: bool = False) -> tuple[str, ...]:
    """The extensions of every address among `values` that is `mine` ('' for `mine` itself,
    unless only `named` ones are asked for)."""
    found = []
    for value in values:
        for address in _addresses(value):
            token = ours.token(address, mine)
            if token is not None and (token or not named):
                found.append(token)
    return tuple(dict.fromkeys(found))


def _links(original: Message, ours: Ours) -> tuple[str, ...]:
    """The ids in the returned original's List-Unsubscribe: its link and its mailto."""
    found = []
    for value in original.get_all("list-unsubscribe", []):
        for target in re.findall(r"<([^>]*)>", _text(value)):
            if target.startswith(ours.unsubscribe_url):
                found.append(target[len(ours.unsubscribe_url):].split("?")[0])
            elif target.lower().startswith("mailto:"):
                token = ours.token(target[7:].split("?")[0], ours.mailto)
                if token:
                    found.append(token)
    return tuple(dict.fromkeys(token for token in found if token))


def _part(message: Message, kind: str) -> Message | None:
    return next((part for part in message.walk() if part.get_content_type() == kind), None)


def _blocks(status: Message) -> list[Message]:
    """The field blocks of a message/delivery-status part (the email package parses them into
    messages); a part it kept as text is parsed here the same way."""
    payload = status.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = _decoded(status)
    return [email.message_from_string(chunk, policy=email.policy.compat32)
            for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()) if chunk.strip()]


def _fields(part: Message) -> _Fields:
    """A message/feedback-report's fields (the parser reads the part as a message of headers
    only, or keeps it as text)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _Fields(payload[0])
    return _Fields(email.message_from_string(_decoded(part), policy=email.policy.compat32))


class _Fields:
    def __init__(self, block: Message) -> None:
        self.block = block

    def get(self, name: str, default: str = "") -> str:
        value = self.block.get(name)
        return _text(value).strip() if value is not None else default

    def getall(self, name: str) -> list[str]:
        return [_text(value) for value in self.block.get_all(name, [])]


def _original(message: Message) -> Message | None:
    """The returned original (message/rfc822, or its headers as text/rfc822-headers)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part is not message:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            return email.message_from_string(_decoded(part), policy=email.policy.compat32)
    return None


def _explanation(message: Message) -> str:
    """The human-readable text of a report: its text parts, without the returned original,
    whose content (feed text among it) must never count as the server's words."""
    pieces = []
    for part in _own_parts(message):
        if part.get_content_maintype() == "text" and part.get_content_type() != (
                "text/rfc822-headers"):
            pieces.append(_decoded(part))
    return "\n\n".join(pieces)


def _own_parts(message: Message) -> Iterator[Message]:
    if message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message) and part.get_content_maintype() != "message":
                yield from _own_parts(part)
    else:
        yield message


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:  # a charset nobody knows: the ASCII in it still reads
        return data.decode("latin-1")


def _near(text: str, address: str) -> str:
    """The server's words about one address: the paragraph that first names it and the next
    (where qmail, Exim and Exchange put the reason), else nothing."""
    if not address:
        return ""
    paragraphs = re.split(r"\n\s*\n", text)
    lowered = address.lower()
    for number, paragraph in enumerate(paragraphs):
        if lowered in paragraph.lower():
            return _one_line(" ".join(paragraphs[number:number + 2]))
    return ""


def _addresses(value: str) -> list[str]:
    return [address for _, address in getaddresses([value]) if "@" in address]


def _typed_address(value: str) -> str:
    """`rfc822; ann@example.com` as `ann@example.com`."""
    kind, semicolon, address = value.partition(";")
    address = (address if semicolon else kind).strip().strip("<>").strip()
    return address if "@" in address else ""


def _text(value: object) -> str:
    """A header as text, whatever the parser made of it."""
    return "" if value is None else str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int = 300) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- deciding -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """A subscriber of ours that a report is about, found in the ledger."""

    email: str
    edition_id: int | None  # the edition it answers, when known
    recipient: Recipient | None  # what the report says about them
    how: str  # "return path", "mailto", "unsubscribe link" or "address"


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str  # bounce | complaint | mailto
    evidence: str


@dataclass(frozen=True)
class Decision:
    action: Action
    suppress: tuple[Suppression, ...] = ()
    counted: tuple[Match, ...] = ()  # soft bounces counted, short of the limit
    note: str = ""


def decide(report: Report, matches: list[Match], soft: Mapping[str, set[int]],
           limit: int) -> Decision:
    """What to do about a classified message whose subscribers were found. `soft` holds the
    editions each address already soft-bounced in; `limit` of them suppress it."""
    if report.kind in (Kind.AUTO_REPLY, Kind.OTHER):
        return Decision(Action.IGNORED, note=report.why)
    if not matches:
        return Decision(Action.IGNORED, note=_unmatched(report))
    where = {match.email: f" (edition {match.edition_id})" if match.edition_id else ""
             for match in matches}
    if report.kind is Kind.COMPLAINT:
        words = next((m.recipient.diagnostic for m in matches if m.recipient), report.why)
        return Decision(Action.SUPPRESSED, tuple(
            Suppression(m.email, "complaint", f"{words}{where[m.email]}") for m in matches))
    if report.kind is Kind.UNSUBSCRIBE:
        return Decision(Action.SUPPRESSED, tuple(
            Suppression(m.email, "mailto", f"mail to the unsubscribe address from "
                                           f"{report.sender or 'an unnamed sender'}")
            for m in matches))
    suppress, counted = [], []
    for match in matches:
        recipient = match.recipient or Recipient(match.email)
        code = recipient.status or "no status code"
        if recipient.hard:
            suppress.append(Suppression(match.email, "bounce", _cut(
                f"{code}{where[match.email]}: {recipient.diagnostic}")))
            continue
        editions = soft.get(match.email, set()) | (
            {match.edition_id} if match.edition_id is not None else set())
        if len(editions) >= limit:
            suppress.append(Suppression(match.email, "bounce", _cut(
                f"soft bounces in {len(editions)} editions, the last {code}"
                f"{where[match.email]}: {recipient.diagnostic}")))
        else:
            counted.append(match)
    action = Action.SUPPRESSED if suppress else Action.COUNTED
    return Decision(action, tuple(suppress), tuple(counted))


def _unmatched(report: Report) -> str:
    if report.returns or report.mailto or report.links:
        return "its token is not one of ours (forged or altered): nothing changed"
    if report.kind is Kind.UNSUBSCRIBE:
        return (f"no token in the address it came to: if {report.sender or 'its sender'} "
                "means it, `digest subscribers unsubscribe` them")
    if not report.recipients:
        return "it names no recipient"
    return "no recipient it names was mailed by this list: nothing changed"
