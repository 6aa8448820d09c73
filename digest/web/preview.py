"""The editors' preview: the edition that would go out now, as a subscriber would get it.

    source (unmailed articles, or any feed, or the edition held for approval) | render once
    | one subscriber's message bytes | parsed back | shown under switches (widths, dark,
    images off, text, raw source)

With newsletter.approval an edition waits here: each story can be dropped or pinned to the
top, the intro written, and the edition approved, which composes and sends it (see
jobs.approve).

The page shows the message made by `compose.Letter` and parsed back from its bytes, so what an
editor sees is what is mailed, not a second rendering. It is for the editors of this machine
only: served on 127.0.0.1, apart from the public web app.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import email_validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from digest import cards, deliver, feeds, jobs, subscribers, tokens, transport
from digest import config as configuration
from digest.compose import MAX_ENCODED, MAX_HTML, Composer, Letter
from digest.config import Config
from digest.errors import DigestError
from digest.records import Card, Delivery, Edition, Outcome
from digest.store import Choice, Held, Store, now
from digest.web import templates

HOST = "127.0.0.1"
# The stand-in subscriber whose copy the preview shows.
READER = Delivery(0, "reader@example.com", "Reader")
WIDTHS = {"desktop": 600, "phone": 375, "small": 320}
VIEWS = (*WIDTHS, "text", "source")


@dataclass(frozen=True)
class Proof:
    """A previewed edition: one subscriber's message and what an editor should look at."""

    subject: str
    message: bytes
    html: str  # the HTML part as mailed, decoded
    text: str
    cards: int
    warnings: tuple[str, ...]
    left_out: int = 0  # cards the clipping-size guard left for the web version

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def encoded_bytes(self) -> int:
        return len(encoded_part(self.message, "html"))


def encoded_part(message: bytes, kind: str) -> bytes:
    """A body part exactly as it sits in the message (quoted-printable): what Gmail measures."""
    found = re.search(rb'boundary="([^"]+)"', message)
    assert found is not None, "not a multipart message"
    head = f'Content-Type: text/{kind}; charset="utf-8"'.encode()
    start = message.index(b"\r\n\r\n", message.index(head)) + 4
    return message[start:message.index(b"\r\n--" + found.group(1), start)]


def gather(config: Config, feed: str | None) -> tuple[list[Card], list[str]]:
    """The cards of the edition that would go out now, or of one feed; and the configured
    feeds that would have an empty section."""
    if feed is None:
        with Store(config.paths.database) as store:
            chosen, _ = store.unmailed([f.url for f in config.feeds],
                                       config.newsletter.max_articles)
            chosen = jobs.dressed(config, store, chosen)
        shown = {card.section for card in chosen}
        return chosen, [f.title for f in config.feeds if f.title not in shown]
    seen = now()
    try:
        with feeds.client(config.newsletter.public_url) as http:
            fetched = feeds.fetch(http, feed)
        parsed = feeds.parse(fetched)
    except feeds.FeedError as error:
        raise DigestError(f"{feed}: {error}") from None
    # A configured feed's section is its configured name, as in the mail.
    name = next((f.title for f in config.feeds if f.url == feed), None) or (
        Path(feed).stem if fetched.url.startswith("file:") else feed)
    articles = jobs.unique([cards.article(entry, fetched.url, config.newsletter.teaser_length,
                                          seen) for entry in parsed.entries])
    # Newest first, as an edition lists them (see Store.unmailed): an undated entry counts
    # as seen now, entries dated alike keep the feed's order.
    articles.sort(key=lambda article: article.published or seen, reverse=True)
    found = [Card(number, article.title, article.link, article.teaser, article.image,
                  article.published or seen, name)
             for number, article in enumerate(articles[: config.newsletter.max_articles], 1)]
    return found, [] if found else [name]


def letter(config: Config, edition: Edition) -> Letter:
    return Letter(config, edition, tokens.unsubscribe_links(config),
                  preferences_url=tokens.preferences_links(config))


def waiting(config: Config) -> Held | None:
    """The edition held for approval that the preview shows (the oldest), if any."""
    with Store(config.paths.database) as store:
        held = store.waiting()
    return held[0] if held else None


def proof(config: Config, feed: str | None = None,
          held: Held | None = None) -> tuple[Proof, Edition]:
    """The edition that would go out now, of one feed, or the held one as the editor's
    choices so far make it."""
    if held is None:
        chosen, empty = gather(config, feed)
    else:
        config, cards = jobs.as_chosen(config, held)
        with Store(config.paths.database) as store:
            chosen, empty = jobs.dressed(config, store, cards), []
    composer = Composer(config)
    # Where collect keeps the hosted logo, once it has one (a state not yet made has none).
    if not isinstance(config.paths.database, Path) or config.paths.database.exists():
        with Store(config.paths.database) as store:
            composer = jobs.composer_for(config, store)
    rendered = composer.render(chosen, held.id if held else 0, now())
    edition = Edition(0, "preview", now(), rendered.subject, rendered.html, rendered.text,
                      rendered.marker)
    message = letter(config, edition).bytes_for(READER)
    parsed = message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    page = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    draft = Proof(rendered.subject, message, page, text, len(chosen), (), rendered.left_out)
    return replace(draft, warnings=tuple(warnings(draft, empty))), edition


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "img"):
            self.found.append((tag, dict(attrs)))


def warnings(made: Proof, empty: list[str]) -> list[str]:
    """What an editor should fix or know before this goes out."""
    said: list[str] = []
    links = _Links()
    links.feed(made.html)
    for tag, attrs in links.found:
        url = attrs.get("src" if tag == "img" else "href") or ""
        # An empty alt is meant (a story's picture, the headline beside it says the rest);
        # only a missing one makes screen readers read out the file name.
        if tag == "img" and attrs.get("alt") is None:
            said.append(f"image without an alt attribute: {url}")
        if url.lower().startswith("http://"):
            said.append(f"{'image' if tag == 'img' else 'link'} not on https: {url}")
    if made.html_bytes >= MAX_HTML or made.encoded_bytes >= MAX_ENCODED:
        said.append(f"HTML is {made.html_bytes:,} bytes ({made.encoded_bytes:,} encoded): "
                    "Gmail clips it")
    if made.left_out:
        said.append(f"{made.left_out} stories left out to stay under the clipping size; "
                    "the mail links to the web version")
    said += [f"empty section: {name} has no new articles" for name in empty]
    if not made.cards:
        said.append("no articles: nothing would go out now (run `digest collect`)")
    return list(dict.fromkeys(said))  # a headline and its button share a link: say it once


def version(config: Config) -> str:
    """Changes whenever a template, the stylesheet or the config file does: the page polls it
    and reloads itself."""
    files = sorted(p for p in config.paths.templates.glob("*") if p.is_file())
    if config.source is not None:
        files.append(config.source)
    stamp = "|".join(f"{p}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files)
    return hashlib.sha256(stamp.encode()).hexdigest()[:16]


def dark(page: str) -> str:
    """The page as a dark-mode client shows it: the dark styles applied unconditionally."""
    return re.sub(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", "all", page)


def images_off(page: str) -> str:
    """The page as a client blocking images shows it: alt text where each image was."""
    return re.sub(r"(<img\b[^>]*?)\ssrc=", r"\1 data-blocked-src=", page)


def send(config: Config, edition: Edition, address: str) -> str:
    """The previewed edition to one address through the configured transport, subject marked
    [TEST]. No ledger row: a test is not a delivery."""
    try:
        email = subscribers.normalise(address)
    except email_validator.EmailNotValidError as error:
        raise DigestError(f"{address or 'the address'}: {error}") from None
    marked = replace(edition, subject=f"[TEST] {edition.subject}")
    with Store(config.paths.database) as store:  # its unsubscribe link works, like a real one
        store.name(tokens.ids(config)(email), email)
    message = letter(config, marked).bytes_for(Delivery(0, email))
    try:
        result = deliver.send_one(config, email, message)
    except transport.TransportDown as error:
        raise DigestError(f"cannot reach {deliver.where(config)}: {error}") from None
    if result.outcome is not Outcome.SENT:
        raise DigestError(f"{email}: {result.response}")
    return f"test sent to {email} via {deliver.where(config)}"


class Preview:
    """The app's state (`app.state.preview`): the configuration it follows, read again
    whenever it changes so that an editor's edit shows up without a restart; the feed shown
    (None: the next edition); and the proof last made, with the version it was made from."""

    def __init__(self, config_path: str | Path | None, feed: str | None) -> None:
        self.config_path = config_path
        self.feed = feed
        self.last: tuple[str, Held | None, Proof, Edition] | None = None
        # Every form of the page carries it: a post from anywhere else is refused.
        self.token = secrets.token_urlsafe(32)

    def current(self) -> tuple[Config, str]:
        config = configuration.load(self.config_path)
        return config, version(config)

    def made(self) -> tuple[Config, Proof, Edition, Held | None]:
        """The proof to show, made again when the templates, the config or the held
        edition's choices have changed."""
        config, stamp = self.current()
        held = waiting(config) if self.feed is None else None
        if self.last is None or self.last[:2] != (stamp, held):
            self.last = (stamp, held, *proof(config, self.feed, held))
        return config, self.last[2], self.last[3], held

    def stamp(self) -> str:
        try:
            return self.current()[1]
        except DigestError as error:
            return f"error: {error}"


def _preview(request: Request) -> Preview:
    preview: Preview = request.app.state.preview
    return preview


def _shell(request: Request, stamp: str, shown: Proof | None, error: str = "",
           held: Held | None = None, intro: str = "") -> Response:
    """The page around the edition (or the error that stopped it), as the query asks."""
    query = request.query_params
    view = query.get("view", "")
    view = view if view in VIEWS else "desktop"
    looks = {"dark": "1" if query.get("dark") == "1" else "",
             "images": "off" if query.get("images") == "off" else ""}

    def switch(label: str, pressed: bool, **change: str) -> tuple[str, bool, str]:
        params = {"view": view, **looks, **change}
        return label, pressed, "/?" + urlencode({k: v for k, v in params.items() if v})

    is_dark, no_images = bool(looks["dark"]), bool(looks["images"])
    switches = [
        switch("Desktop 600", view == "desktop", view="desktop"),
        switch("Phone 375", view == "phone", view="phone"),
        switch("Phone 320", view == "small", view="small"),
        switch("Dark", is_dark, dark="" if is_dark else "1"),
        switch("Images off", no_images, images="" if no_images else "off"),
        switch("Plain text", view == "text", view="text"),
        switch("Raw source", view == "source", view="source"),
    ]
    shown_looks = urlencode({k: v for k, v in looks.items() if v})
    frame = {"text": "/edition.txt", "source": "/source"}.get(view) or (
        f"/edition?{shown_looks}" if shown_looks else "/edition")
    return templates.TemplateResponse(request, "preview.html", {
        "stamp": stamp, "switches": switches, "notice": query.get("notice"), "shown": shown,
        "error": error, "frame": frame, "width": WIDTHS.get(view), "limit": MAX_ENCODED,
        "held": held, "intro": intro, "token": _preview(request).token,
    }, 500 if shown is None else 200)


async def index(request: Request) -> Response:
    # Taken before rendering: a change made meanwhile still triggers a reload.
    stamp = _preview(request).stamp()
    try:
        config, shown, _, held = _preview(request).made()
    except DigestError as error:  # a mistake in a template or the config shows on the page
        return _shell(request, stamp, None, str(error))
    intro = config.newsletter.intro if held is None or held.intro is None else held.intro
    return _shell(request, stamp, shown, held=held, intro=intro)


async def edition(request: Request) -> Response:
    page = _preview(request).made()[1].html
    if request.query_params.get("dark") == "1":
        page = dark(page)
    if request.query_params.get("images") == "off":
        page = images_off(page)
    # The HTML part of the message we composed, as mailed: sent as it is, not through a
    # template, where it would have to be marked safe.
    return HTMLResponse(page)


async def plain_text(request: Request) -> Response:
    return PlainTextResponse(_preview(request).made()[1].text)


async def raw_source(request: Request) -> Response:
    return PlainTextResponse(_preview(request).made()[1].message.decode("ascii", "replace"))


async def changes(request: Request) -> Response:
    return JSONResponse({"version": _preview(request).stamp()})


def _back(notice: str) -> Response:
    return RedirectResponse("/?" + urlencode({"notice": notice}), status_code=303)


def _cross_site(request: Request) -> str | None:
    """Why a post is not from this very page, or None. A page elsewhere in the editor's
    browser must not mail through these forms, and browsers always say where a post comes
    from (Origin)."""
    if request.headers.get("origin") != f"{request.url.scheme}://{request.url.netloc}":
        return "refused: not sent from this page (foreign origin)"
    return None


def _foreign(request: Request, form: FormData) -> str | None:
    """`_cross_site`, and for the forms that mail the whole list (approve) or shape what it
    gets, the app's token as well: only a page this app served knows it."""
    refused = _cross_site(request)
    if refused is None and not secrets.compare_digest(str(form.get("token", "")),
                                                      _preview(request).token):
        refused = "refused: not sent from this page (missing or stale token: reload the page)"
    return refused


async def send_test(request: Request) -> Response:
    refused = _cross_site(request)
    if refused:
        return _back(refused)
    form = await request.form()
    address = str(form.get("address", "")).strip()
    try:
        config, _, shown, _ = _preview(request).made()
        notice = send(config, shown, address)
    except DigestError as error:
        notice = f"not sent: {error}"
    return _back(notice)


def _number(form: FormData, key: str) -> int | None:
    try:
        return int(str(form.get(key, "")))
    except ValueError:
        return None


async def choose(request: Request) -> Response:
    """Drop a story of the held edition, pin it to the top, or undo that."""
    form = await request.form()
    refused = _foreign(request, form)
    if refused:
        return _back(refused)
    edition, story = _number(form, "edition"), _number(form, "story")
    made = str(form.get("choice", ""))
    if edition is None or story is None or made not in ("", *Choice):
        return _back("not changed: the form did not name a story and a choice")
    choice = Choice(made) if made else None
    with Store(_preview(request).current()[0].paths.database) as store:
        if not store.choose(edition, story, choice):
            return _back(f"not changed: story {story} is not in edition {edition} held for "
                         "approval (approved meanwhile?)")
    words = {None: "as it came", Choice.DROP: "dropped", Choice.PIN: "pinned to the top"}
    return _back(f"story {story}: {words[choice]}")


async def approve(request: Request) -> Response:
    """Save the intro; with the Approve button, compose the held edition and send it."""
    form = await request.form()
    refused = _foreign(request, form)
    if refused:
        return _back(refused)
    edition = _number(form, "edition")
    intro = str(form.get("intro", "")).replace("\r\n", "\n").strip()
    config = _preview(request).current()[0]
    if edition is None:
        return _back("not approved: no edition given")
    if request.url.path.endswith("/intro"):
        with Store(config.paths.database) as store:
            saved = store.set_intro(edition, intro)
        return _back("intro saved" if saved else f"intro not saved: edition {edition} is "
                                                 "not held for approval")
    try:
        notice = await run_in_threadpool(_approve, config, edition, intro,
                                         form.get("discard") == "1")
    except DigestError as error:
        notice = f"not approved: {error}"
    return _back(notice)


def _approve(config: Config, edition: int, intro: str, discard: bool) -> str:
    with Store(config.paths.database) as store:
        approved = jobs.approve(config, store, edition, intro=intro, discard=discard)
        sent = jobs.deliver_released(config, store)
    said = f"edition {approved.id} approved"
    if sent is None:
        return (f"{said}: the running scheduler delivers it at its next reconcile (every "
                f"{config.schedule.reconcile})")
    counts = ", ".join(f"{sent.count(outcome)} {outcome.value}" for outcome in Outcome
                       if sent.count(outcome))
    return f"{said} and sent: {counts or 'nothing due'}"


def app(config_path: str | Path | None, feed: str | None = None) -> Starlette:
    """The preview app; a mistake in the configuration shows on the page, not as a crash."""
    # Only requests made to the address the preview listens on: a web page whose host name
    # an attacker re-points at 127.0.0.1 (DNS rebinding) names its own host, and is refused.
    application = Starlette(middleware=[Middleware(TrustedHostMiddleware,
                                                   allowed_hosts=[HOST, "localhost"])], routes=[
        Route("/", index), Route("/edition", edition), Route("/edition.txt", plain_text),
        Route("/source", raw_source), Route("/version", changes),
        Route("/send-test", send_test, methods=["POST"]),
        Route("/held/choose", choose, methods=["POST"]),
        Route("/held/intro", approve, methods=["POST"]),
        Route("/held/approve", approve, methods=["POST"]),
    ])
    application.state.preview = Preview(config_path, feed)
    return application
