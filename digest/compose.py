"""Composing an edition: render the templates once, inline the CSS once, build the MIME bytes
once; then personalise each subscriber's copy by splicing a few escaped values into them.

Rendering and inlining cost milliseconds, building an `EmailMessage` hundreds of microseconds:
done per subscriber, a list of 100,000 would take hours. So the rendered HTML carries opaque
placeholders (`Personal`) where personal values go, the bodies are quoted-printable encoded
once in pieces cut at those placeholders, and a subscriber's message is a join of ready bytes.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import secrets
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy, quoprimime
from email.header import Header
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import jinja2
import premailer

from digest import language, signing
from digest.cards import ELLIPSIS, clip, cut, joins, unspaced
from digest.config import Config
from digest.errors import DigestError
from digest.records import Card, Delivery, Edition, Image, Rendition, Section, View


class Personal:
    """The placeholders of one edition: where its templates print a subscriber's own values.

    A placeholder is a plain ASCII word (Jinja's escaping, premailer and quoted-printable all
    leave it intact) that ends in the edition's marker, and only the templates can make one:

    - the marker is 128 random bits, drawn for each edition once its content is known (the
      cards and the newsletter settings, all the text the templates are given) and drawn again
      should that content hold it; text written before the draw, by a feed or in the config,
      cannot carry a placeholder of the edition it appears in: it is printed as written;
    - values are spliced in one pass over pieces cut at render time, so a spliced value that
      looks like a placeholder (a name, a CSV field) is printed as it is, never read as one;
    - a custom column's name is spelled in hex, so no column name can make another kind.

    The marker is stored with the edition, so a resend, the archive and the web version find
    the placeholders of what was mailed. Editions stored before markers were drawn end in the
    fixed "7c1f" every edition used then.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.name = f"DIGEST-PERSONAL-NAME-{marker}"
        self.email = f"DIGEST-PERSONAL-EMAIL-{marker}"
        self.unsubscribe = f"DIGEST-PERSONAL-UNSUBSCRIBE-{marker}"
        self.preferences = f"DIGEST-PERSONAL-PREFERENCES-{marker}"
        end = re.escape(marker)
        self._field = re.compile(rf"DIGEST-PERSONAL-FIELD-((?:[0-9a-f]{{2}})*)-{end}")
        self.pattern = re.compile(rf"(DIGEST-PERSONAL-(?:NAME|EMAIL|UNSUBSCRIBE|PREFERENCES|"
                                  rf"FIELD-(?:[0-9a-f]{{2}})*)-{end})")

    @classmethod
    def fresh(cls, content: str,
              draw: Callable[[], str] = lambda: secrets.token_hex(16)) -> Personal:
        """Placeholders for an edition of this content, their marker nowhere in it."""
        marker = draw()
        while marker in content:
            marker = draw()
        return cls(marker)

    def field(self, name: str) -> str:
        """A custom CSV column's placeholder; the name in hex, so any column name stays a word."""
        return f"DIGEST-PERSONAL-FIELD-{name.encode().hex()}-{self.marker}"

    def fields_used(self, *texts: str) -> dict[str, str]:
        """The custom columns a rendered edition prints: placeholder -> column name."""
        # An undecodable name comes only from feed text in an edition stored before markers
        # were drawn; it names no column, so it prints as nothing, like any missing column.
        return {match.group(): bytes.fromhex(match.group(1)).decode(errors="replace")
                for text in texts for match in self._field.finditer(text)}


# Header values from feeds or the CSV may carry line breaks; one would start a new header.
_BREAKS = re.compile(r"[\r\n\0]+")
# A name of only these characters goes out in quotes as it is; any other is encoded.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~.-]*")
# A display name in the To: header is cut to this many characters: no inbox shows more, and
# the header's lines stay far under the 998 octets a relay takes (RFC 5322 2.1.1).
NAME_LIMIT = 100

# Gmail clips a message whose HTML is larger than about 102 KB and hides the rest, footer and
# unsubscribe link included. The guard keeps the HTML part under both figures, with room for
# the personal values (address, signed unsubscribe link) spliced in after rendering.
MAX_HTML = 100_000  # bytes of UTF-8, decoded
MAX_ENCODED = 102_000  # bytes as quoted-printable in the message
PERSONAL_ROOM = 1_500

# Inboxes show about 70 characters of a subject; a longer one is cut at a word and the rest
# opens the preheader, which the inbox shows next to it.
SUBJECT_LIMIT = 70
# The plain-text part's lines, in columns: a CJK character takes two (UAX 11).
TEXT_COLUMNS = 76
# Japanese line breaking (JIS X 4051, "kinsoku"): no line starts with closing punctuation or
# a small kana, and none ends with an opening bracket.
_NO_LINE_START = frozenset("、。，．・：；？！ー」』）】〕〉》〙〗〟’”｠»゛゜ぁぃぅぇぉっゃゅょゎ"
                           "ァィゥェォッャュョヮヵヶ々〜…‥")
_NO_LINE_END = frozenset("「『（【〔〈《〘〖〝‘“｟«")
_SPACES = re.compile(r"[ \t]+")


class _Fields:
    """`subscriber.fields` as the templates see it: any column name gives its placeholder, so
    only the columns a template prints are spliced into each message."""

    def __init__(self, personal: Personal) -> None:
        self._personal = personal

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):  # Python's and Jinja's own probes, not column names
            raise AttributeError(name)
        return self._personal.field(name)

    __getitem__ = __getattr__


def anonymous(text: str, marker: str, unsubscribe_url: str) -> str:
    """A rendered edition (its placeholders ending in `marker`) as the archive shows it:
    nobody's name, address, fields or personal links; the unsubscribe and preferences links
    go to `unsubscribe_url`."""
    personal = Personal(marker)
    values = {personal.name: "", personal.email: "you", personal.unsubscribe: unsubscribe_url,
              personal.preferences: unsubscribe_url}
    return personal.pattern.sub(lambda match: values.get(match.group(), ""), text)


@dataclass(frozen=True)
class Rendered(View):
    marker: str  # what ends its placeholders (see Personal)
    left_out: int = 0  # cards the clipping-size guard left for the web version to show


@dataclass(frozen=True)
class Context:
    """What the templates see of an edition (documented for editors in the README)."""

    subject: str
    preheader: str
    date_text: str
    web_url: str
    number: int | None  # the issue number: the edition's id, none in a preview
    direction: str  # "ltr" or "rtl", as the newsletter's language is written
    cadence: str = "daily"  # "weekly": the week's round-up


@dataclass(frozen=True)
class Logo:
    """The masthead's logo as the templates show it: the hosted copy at half its pixels (for
    2× screens), or the configured URL at the masthead's height when none is hosted yet."""

    url: str
    width: int | None
    height: int


def one_line(value: str) -> str:
    """A value safe for a header: CR, LF and NUL become spaces, whatever Python's own guard."""
    return _BREAKS.sub(" ", value).strip()


class Composer:
    """The templates of one configuration, loaded once."""

    def __init__(self, config: Config, logo: Rendition | None = None) -> None:
        self.config = config
        self.logo = Logo(config.images_url + logo.name, round(logo.width / 2),
                         round(logo.height / 2)) if logo else \
            Logo(config.newsletter.logo, None, 40) if config.newsletter.logo else None
        self.folder = config.paths.templates
        if not (self.folder / "digest.html").is_file():
            raise DigestError(f"{self.folder}: no digest.html template there")
        tag = config.newsletter.language
        self.words = language.translations(tag)
        self.direction = language.locale(tag).text_direction
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.folder),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            extensions=["jinja2.ext.i18n"],
        )
        # Added by the i18n extension; Jinja's type hints do not declare it.
        self.env.install_gettext_translations(  # type: ignore[attr-defined]
            self.words, newstyle=True)
        self.env.filters.update(
            date=self._date, number=lambda value: language.number(value, tag),
            direction=lambda text: language.direction(text, self.direction),
            fit=fit, wrap=wrap, clip=clip_teaser)

    def _date(self, moment: datetime) -> str:
        return language.local_date(moment.astimezone(self.config.newsletter.zone),
                                   self.config.newsletter.language, long=False)

    def personal(self, cards: list[Card]) -> Personal:
        """Placeholders for an edition of these cards: their marker occurs nowhere in the text
        the templates are given. That text is searched in the repr of the cards and the
        newsletter settings, which holds every string in them, its letters and digits as
        they are."""
        return Personal.fresh(repr((cards, self.config.newsletter)))

    def render(self, cards: list[Card], edition_id: int, when: datetime, more: int = 0,
               fit: bool = True, personal: Personal | None = None,
               web: bool = False, cadence: str = "daily") -> Rendered:
        """The edition as everyone gets it, personal values still placeholders. Cards that
        would push the HTML past the clipping size are left out from the end, and the edition
        says how many more stories its web version has; with `fit` false, that web version,
        every card in it. The renderings of one edition (its web version, its views) share
        the `personal` made for all of its cards; without one, this rendering gets its own.
        `web` renders the archive's copy: the templates show a sign-up link, not a mail
        footer. A weekly edition's subject opens with the words that say so."""
        personal = personal or self.personal(cards)
        newsletter = self.config.newsletter
        headline = cards[0].title if cards else ""
        date_text = language.local_date(when.astimezone(newsletter.zone), newsletter.language)
        whole = one_line(self._string(newsletter.subject, newsletter=newsletter,
                                      headline=headline, date_text=date_text,
                                      count=len(cards)))
        if cadence == "weekly":
            whole = self.words.gettext("Weekly round-up: %(subject)s") % {"subject": whole}
        subject, rest = cut_subject(whole)
        ahead = newsletter.preheader or preheader(
            cards, newsletter.name, rest=rest, told=headline in whole,
            tail=self.words.gettext("The latest stories from %(name)s, picked for you"))
        kept = len(cards)
        while True:
            rendered = self._render(cards[:kept], subject, ahead, date_text, edition_id,
                                    more + len(cards) - kept, personal, web, cadence)
            load = size_load(rendered.html)
            if load < 1 or kept == 0 or not fit:
                return replace(rendered, left_out=len(cards) - kept)
            # Cards make most of the size, so scale down by the overshoot; the fixed part
            # (masthead, footer) makes the new count err small, so a retry rarely repeats.
            kept = min(kept - 1, int(kept / load))

    def _render(self, cards: list[Card], subject: str, ahead: str, date_text: str,
                edition_id: int, more: int, personal: Personal, web: bool,
                cadence: str) -> Rendered:
        newsletter = self.config.newsletter
        public = newsletter.public_url.rstrip("/")
        web_url = f"{public}/archive/{edition_id}"
        context = Context(subject, ahead, date_text, web_url, edition_id or None,
                          self.direction, cadence)
        grouped = sections(cards)
        values = {
            "newsletter": newsletter,
            "logo": self.logo,
            "edition": context,
            "lead": cards[0] if cards else None,
            "toc": grouped if len(grouped) > 1 else [],
            "sections": grouped,
            "more": {"count": more, "url": web_url} if more else None,
            "subscriber": {"name": personal.name, "email": personal.email,
                           "fields": _Fields(personal)},
            "unsubscribe_url": personal.unsubscribe,
            "preferences_url": personal.preferences,
            "forward_url": forward_url(subject, self.words.gettext(
                "I thought you might like this: %(url)s") % {"url": web_url}),
            "web_version": web,
            "subscribe_url": f"{public}/subscribe",
        }
        page = self._template("digest.html", values)
        return Rendered(subject, inline(page), self._template("digest.txt", values),
                        personal.marker)

    def _string(self, source: str, **values: Any) -> str:
        try:
            # A header is not HTML: the subject must not be entity-escaped.
            return self.env.overlay(autoescape=False).from_string(source).render(**values)
        except jinja2.TemplateError as error:
            raise DigestError(f"newsletter.subject: {error}") from None

    def _template(self, name: str, values: dict[str, Any]) -> str:
        try:
            template = self.env.get_template(name)
            # The plain-text twin must not be HTML-escaped, whatever its name says.
            return template.render(values) if name.endswith(".html") else (
                self._unescaped(name).render(values))
        except jinja2.TemplateSyntaxError as error:
            raise DigestError(f"{self.folder / (error.name or name)}:{error.lineno}: "
                              f"{error.message}") from None
        except jinja2.TemplateError as error:
            raise DigestError(f"{self.folder / name}:{_template_line(error, name)}: "
                              f"{error}") from None

    def _unescaped(self, name: str) -> jinja2.Template:
        source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
        env = self.env.overlay(autoescape=False)
        return env.from_string(source)


def size_load(page: str) -> float:
    """How full the HTML part is against the clipping limits: under 1 fits."""
    decoded = len(page.encode("utf-8")) + PERSONAL_ROOM
    encoded = len(_qp(page)) + PERSONAL_ROOM
    return max(decoded / MAX_HTML, encoded / MAX_ENCODED)


def _template_line(error: Exception, name: str) -> int | str:
    """The template line a render error happened on, from Jinja's rewritten traceback."""
    line: int | str = "?"
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.endswith(name) or (
                trace.tb_frame.f_code.co_filename == "<template>"):
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def inline(page: str) -> str:
    """CSS moved into style attributes, once per edition: many clients drop <style>. Media
    queries stay in a <style> block, as an enhancement only."""
    inlined: str = premailer.Premailer(
        page, allow_network=False, disable_validation=True, remove_classes=False,
        cssutils_logging_level=logging.CRITICAL, strip_important=False,
    ).transform()
    return inlined


def sections(cards: list[Card]) -> list[Section]:
    """Cards grouped by feed, in the order the feeds first appear."""
    grouped: dict[str, list[Card]] = {}
    for card in cards:
        grouped.setdefault(card.section, []).append(card)
    return [Section(name, tuple(group)) for name, group in grouped.items()]


def preheader(cards: list[Card], name: str = "", shortest: int = 40, limit: int = 100,
              rest: str = "", told: bool = False,
              tail: str = "The latest stories from %(name)s, picked for you") -> str:
    """The inbox preview line: the top headlines, as many as fit in `limit` characters. Inbox
    previews show 40 to 100 characters; a short one is eked out with the newsletter's name,
    since the client would otherwise fill it with whatever text follows.

    `rest` is the end of a subject that was cut: it opens the line, so the inbox shows the
    subject whole; when the subject `told` the lead headline, that headline is not repeated.
    """
    titles = [card.title for card in cards]
    if rest:
        titles[: 1 if told else 0] = [ELLIPSIS + rest]
    text = ""
    for title in titles:
        joined = f"{text} · {title}" if text else title
        if len(joined) > limit:
            break
        text = joined
    if not text and titles:
        text = titles[0][: limit - 1].rstrip() + ELLIPSIS
    if len(text) < shortest:
        words = tail % {"name": name or "our feeds"}
        text = f"{text} · {words}" if text else words
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def cut_subject(whole: str) -> tuple[str, str]:
    """The subject within what inboxes show, cut at a word with "…", and the rest of it."""
    subject = cut(whole, SUBJECT_LIMIT - len(ELLIPSIS))
    if subject == whole:
        return whole, ""
    return subject, whole[len(subject) - len(ELLIPSIS):].lstrip(" ,;:–—-")


def forward_url(subject: str, body: str) -> str:
    """A `mailto:` that opens a message to a friend, for the reader to address."""
    return f"mailto:?subject={quote(subject)}&body={quote(body)}"


def fit(image: Image, width: int, height: int | None = None) -> dict[str, int | None]:
    """The size to show a picture at: inside `width` × `height` (no height: any), its own
    proportions kept and never larger than it is. A side the feed did not give is None (the
    template then leaves it out and the client works it out)."""
    own_width, own_height = image.width, image.height
    if not own_width:
        return {"width": width, "height": None}
    scale = min(1.0, width / own_width, height / own_height if height and own_height else 1.0)
    return {"width": max(1, round(own_width * scale)),
            "height": max(1, round(own_height * scale)) if own_height else None}


def clip_teaser(teaser: str, limit: int) -> str:
    """A teaser shortened for a compact card, ending as cleanly as the stored one."""
    return teaser if len(teaser) <= limit else clip(teaser.removesuffix(ELLIPSIS), limit)


def columns(text: str) -> int:
    """The width of `text` in a fixed-width font: two columns for a wide (CJK) character,
    none for a combining mark or a joiner."""
    return sum(0 if joins(char) or unicodedata.category(char) == "Cf" else
               2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def wrap(text: str, width: int = TEXT_COLUMNS) -> str:
    """Plain text in lines of at most `width` columns, broken at spaces and between the
    characters of scripts written without them; a longer word (a URL) keeps a line of its
    own, whole. Line breaks in `text` stay."""
    lines = []
    for paragraph in text.split("\n"):
        line, used = "", 0
        for piece, spaced in _pieces(paragraph):
            gap = 1 if spaced and line else 0
            size = columns(piece)
            if line and used + gap + size > width:
                lines.append(line)
                line, used, gap = "", 0, 0
            line, used = line + " " * gap + piece, used + gap + size
        lines.append(line)
    return "\n".join(lines)


def _pieces(paragraph: str) -> Iterator[tuple[str, bool]]:
    """What a line may be broken between, each with whether a space came before it."""
    for word in _SPACES.split(paragraph.strip(" \t")):
        start = 0
        for end in range(1, len(word)):
            before, after = word[end - 1], word[end]
            if ((unspaced(before) or unspaced(after)) and not joins(after)
                    and after not in _NO_LINE_START and before not in _NO_LINE_END):
                yield word[start:end], start == 0
                start = end
        if word:
            yield word[start:], start == 0


# -- the message bytes ---------------------------------------------------------------------------

_SMTP = policy.SMTP


def fold(name: str, value: str) -> bytes:
    """One header line, RFC 2047-encoded where needed and folded under 78 columns."""
    lines = _SMTP.header_factory(name, one_line(value)).fold(policy=_SMTP).split("\r\n")
    # Before an encoded word Python's folder ends a line with the space it also starts the
    # next one with; unfolding drops only the CRLF, so readers showed "holding  the…".
    lines = [line.rstrip(" ") if following.startswith(" ") else line
             for line, following in zip(lines, [*lines[1:], ""], strict=True)]
    if lines[0] == f"{name}:" and len(lines) > 2:
        # A value too long for the first line but short enough for one of its own is moved
        # whole onto the next, leaving `Subject:` empty, which some readers show as a leading
        # space. Unfolding only drops the CRLF, so words can move back up unchanged.
        words = lines[1][1:].split(" ")
        first = 1
        while first < len(words) and len(name) + 2 + len(" ".join(words[:first + 1])) <= 78:
            first += 1
        rest = " ".join(words[first:])
        lines[:2] = [f"{name}: {' '.join(words[:first])}", *([f" {rest}"] if rest else [])]
    return "\r\n".join(lines).encode("ascii")


def address(name: str, email: str) -> str:
    """`Name <email>`, the name cut to `NAME_LIMIT` characters, then quoted when it is plain
    ASCII, else encoded (folded under 78 columns); the cheap path for the common plain name.

    A name that spells an encoded-word ("=?utf-8?q?Boss_=3Cboss=40corp.com=3E?=") is encoded
    too: readers decode one even inside quotes, and it would show as someone else's address;
    encoded, it is decoded once, back to the text it is.
    """
    name = one_line(name)
    if len(name) > NAME_LIMIT:
        name = cut(name, NAME_LIMIT - 1)
    if not name:
        return email
    if _PLAIN_NAME.fullmatch(name) and "=?" not in name:
        return f'"{name}" <{email}>'
    return f"{Header(name, 'utf-8').encode(linesep=chr(13) + chr(10))} <{email}>"


# A line that starts with a dot would have to be doubled on the SMTP wire (RFC 5321 4.5.2);
# written as "=2E" and a soft break instead, the bytes go out exactly as built.
_LEADING_DOT = re.compile(rb"(?:^|(?<=\r\n))\.")


def _qp(text: str) -> bytes:
    """Quoted-printable, CRLF line ends, lines within 76 columns, no line starting with a dot."""
    if (len(text) < 74 and text.isascii() and text.isprintable() and "=" not in text
            and not text.startswith(".") and not text.endswith(" ")):
        return text.encode("ascii")  # the common personal value: its own encoding
    encoded = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), 76,
                                     "\r\n").encode("ascii")
    while encoded.startswith(b".") or b"\n." in encoded:
        encoded = _LEADING_DOT.sub(b"=2E=\r\n", encoded)
    return encoded


class _Body:
    """A body part pre-encoded in pieces cut at the placeholders. A personal value is encoded
    on its own and joined with soft line breaks on both sides, so splicing can never break a
    quoted-printable line, whatever the value's length."""

    def __init__(self, text: str, personal: Personal, escape: Callable[[str], str]) -> None:
        self.escape = escape
        self.pieces: list[bytes | str] = []
        for number, piece in enumerate(personal.pattern.split(text)):
            if number % 2:
                self.pieces.append(piece)
            elif piece:
                self.pieces.append(_qp(piece))

    def encode(self, values: dict[str, str]) -> bytes:
        out: list[bytes] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                value = self.escape(values[piece])
                if value:
                    out += (b"=\r\n", _qp(value), b"=\r\n")
            else:
                out.append(piece)
        return b"".join(out)


def message_id(edition_id: int, email: str, domain: str) -> str:
    """Deterministic per (edition, subscriber): a resend is recognisably the same mail, and a
    bounce carrying the original's headers names the edition it answers."""
    digest = hashlib.sha256(email.encode()).hexdigest()[:20]
    return f"<{edition_id}.{digest}@{domain}>"


class Letter:
    """An edition's message, built once; `bytes_for` makes each subscriber's copy."""

    def __init__(self, config: Config, edition: Edition,
                 unsubscribe_url: Callable[[str], str],
                 mailto: Callable[[str], str] | None = None,
                 preferences_url: Callable[[str], str] | None = None) -> None:
        newsletter = config.newsletter
        self.edition = edition
        self.domain = newsletter.domain
        self.unsubscribe_url = unsubscribe_url
        # `digest check`'s sample names nobody: without a maker its link is left empty.
        self.preferences_url = preferences_url or (lambda email: "")
        # Each subscriber's own mailto (see returns.py) when given, else the one address.
        shared = newsletter.unsubscribe_mailto or f"unsubscribe@{self.domain}"
        self.mailto = mailto or (lambda email: shared)
        boundary = f"=_digest_{uuid.uuid4().hex}"
        top = [fold("From", newsletter.sender), fold("Subject", edition.subject),
               fold("Date", format_datetime(edition.created_at))]
        if newsletter.reply_to:
            top.append(fold("Reply-To", newsletter.reply_to))
        top += [
            fold("List-Id", f"{newsletter.name} <{newsletter.list_id}>"),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"Auto-Submitted: auto-generated\r\n",
            b"Precedence: bulk\r\n",
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode(),
        ]
        self.head = b"".join(top)
        part = ('\r\n--{b}\r\nContent-Type: text/{kind}; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        self.text_head = part.format(b=boundary, kind="plain").encode()
        self.html_head = part.format(b=boundary, kind="html").encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.personal = personal = Personal(edition.marker)
        self.text = _Body(edition.text, personal, str)
        self.html = _Body(edition.html, personal, html.escape)
        self.fields = personal.fields_used(edition.html, edition.text)
        self.signer = (signing.Signer.load(config.dkim, self.domain) if config.dkim.selector
                       else None)

    def message_id(self, email: str) -> str:
        return message_id(self.edition.id, email, self.domain)

    def bytes_for(self, delivery: Delivery) -> bytes:
        """The subscriber's message; a custom CSV column they lack prints as nothing."""
        url = self.unsubscribe_url(delivery.email)
        personal = self.personal
        values = {personal.name: delivery.name, personal.email: delivery.email,
                  personal.unsubscribe: url,
                  personal.preferences: self.preferences_url(delivery.email)}
        for placeholder, name in self.fields.items():
            values[placeholder] = delivery.fields.get(name, "")
        message = b"".join((
            self.head,
            b"To: ", address(delivery.name, delivery.email).encode("ascii"), b"\r\n",
            b"Message-ID: ", self.message_id(delivery.email).encode("ascii"), b"\r\n",
            # Folded between the two forms: a long signed link keeps the line well short of 998.
            b"List-Unsubscribe: <", url.encode("ascii"), b">,\r\n <mailto:",
            self.mailto(delivery.email).encode("ascii"), b"?subject=unsubscribe>\r\n",
            self.text_head, self.text.encode(values),
            self.html_head, self.html.encode(values),
            self.tail,
        ))
        return message if self.signer is None else self.signer.sign(message)

