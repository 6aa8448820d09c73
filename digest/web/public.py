"""The public web app behind `digest serve`: unsubscribe, sign-up with confirmation, archive.

    GET  /                       where to go: the sign-up form, the archive
    POST /unsubscribe/{token}    one-click (RFC 8058), what List-Unsubscribe points at: the
                                 body must say List-Unsubscribe=One-Click; also the button of
                                 the page below
    GET  /unsubscribe/{token}    a page with a button: a GET alone never unsubscribes, since
                                 mail scanners prefetch links
    POST /resubscribe/{token}    mails a confirmation link: only its click lifts the opt-out
    GET  /subscribe, POST        the sign-up form; a confirmation mail with an expiring link
                                 (double opt-in), rate-limited per client and per recipient
    GET  /confirm/{token}        adds the subscriber to the CSV, or lifts their opt-out
    GET  /archive/, /archive/{id}, /archive/feed.xml    past editions, for anyone

Every answer is the same whether an address is listed or not: nothing here tells a stranger
who subscribes, and no token in a URL holds an address (see tokens.py). A refused token gets
one plain page with status 400, whatever was wrong with it. Every page, the framework's error
pages included, carries the same security headers. Links inside pages are relative, so the app
works under any prefix a reverse proxy gives it.
"""

from __future__ import annotations

import html
import logging
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http import HTTPStatus
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from email_validator import EmailNotValidError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import compose, deliver, subscribers, tokens
from digest.config import Config
from digest.errors import DigestError
from digest.records import Outcome, Result, Subscriber
from digest.store import Store, now

log = logging.getLogger("digest.web")

# Every page: no scripts at all, forms only to ourselves, and no Referer, which would carry a
# token in the URL to whatever site an archived edition links to.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src http: "
                               "https: data:; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
PRIVATE = {**HEADERS, "Cache-Control": "no-store"}  # pages reached through a personal token

# However many clients ask, one address gets at most this many confirmation mails a day: the
# form must not be a way to flood a stranger's inbox.
CONFIRMATIONS_PER_ADDRESS = 3
CONFIRMATION_WINDOW = timedelta(days=1)

STYLE = ("body{font:17px/1.5 system-ui,-apple-system,'Segoe UI',Arial,sans-serif;max-width:34em;"
         "margin:3em auto;padding:0 1em;color:#1f2937;background:#fff}"
         "h1{font-size:1.6em;line-height:1.25}button{font:inherit;padding:.5em 1.2em;"
         "border:0;border-radius:6px;background:#1d4ed8;color:#fff;cursor:pointer}"
         "input[type=email],input[type=text]{font:inherit;width:100%;padding:.4em;"
         "box-sizing:border-box}label{display:block;margin:.8em 0 .2em}"
         ".error{color:#b91c1c}a{color:#1d4ed8}"
         "@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}"
         "a{color:#93c5fd}}")


class Limiter:
    """At most `limit` events per client address within a sliding `window` of seconds.

    Lives in the one event loop of the server, so it needs no lock; an address whose events
    have all aged out is forgotten, so memory stays bounded by the recent clients.
    """

    def __init__(self, limit: int, window: float = 3600) -> None:
        self.limit = limit
        self.window = window
        self.events: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        moment = time.monotonic()
        if len(self.events) > 10_000:
            self.events = {c: e for c, e in self.events.items() if moment - e[-1] < self.window}
        events = self.events.setdefault(client, deque())
        while events and moment - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(moment)
        return True


def page(title: str, body: str, status: int = 200, private: bool = False,
         extra: Mapping[str, str] | None = None) -> HTMLResponse:
    """`body` is HTML: every value in it escaped by the caller."""
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(text, status, {**(PRIVATE if private else HEADERS), **(extra or {})})


def refused() -> HTMLResponse:
    # One answer for forged, altered, other-list and expired alike: nothing to learn from it.
    return page("This link does not work", "<p>The link is not valid or no longer valid. If "
                "you copied it from an email, make sure you copied all of it.</p>", 400, True)


class Site:
    """The app's state: configuration, signing secret, rate limiter. The database is opened
    per request in a worker thread (a Store serves one thread at a time)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = config.newsletter.name
        self.secret = tokens.secret(config.secret, config.paths.state)
        self.list_id = config.newsletter.list_id
        self.public = config.newsletter.public_url.rstrip("/")
        self.limiter = Limiter(config.web.signups_per_hour)
        Store(config.paths.database).close()  # migrate now, not in racing requests

    def address(self, token: str) -> str | None:
        """The address an unsubscribe token stands for, or None when it is not one of ours."""
        with Store(self.config.paths.database) as store:
            return tokens.verify(self.secret, self.list_id, token, store.named)

    def signup(self, token: str) -> Subscriber | None:
        """The sign-up a confirmation link stands for, while it is valid."""
        if "." in token:  # a link mailed before sign-ups were kept here
            return tokens.verify_legacy_signup(self.secret, self.list_id, token, now())
        with Store(self.config.paths.database) as store:
            return store.signup(token, now())

    def suppress(self, email: str, source: str) -> None:
        with Store(self.config.paths.database) as store:
            store.suppress(email, "unsubscribed", source)

    def confirm(self, signup: Subscriber) -> None:
        """Add the confirmed address to the list (when not there yet) and lift any opt-out."""
        subscribers.add(self.config.paths.subscribers, signup)
        with Store(self.config.paths.database) as store:
            if store.unsuppress(signup.email):
                log.info("%s re-subscribed: opt-out lifted", signup.email)

    def send_confirmation(self, signup: Subscriber) -> Literal["sent", "limited", "failed"]:
        """Keep the sign-up and mail its confirmation link through the configured transport.
        "limited": the address had its share of confirmations lately, nothing kept or mailed;
        "failed": the mail could not be handed over (the visitor is asked to try again later)
        and the sign-up is not kept, since nobody has its link."""
        moment = now()
        expires = moment + timedelta(hours=self.config.web.confirm_hours)
        token = tokens.signup_id()
        with Store(self.config.paths.database) as store:
            if not store.add_signup(token, signup, subscribers.key(signup.email), moment,
                                    expires, CONFIRMATIONS_PER_ADDRESS, CONFIRMATION_WINDOW):
                log.info("confirmation mail to %s not sent: it had %d within %d hours already",
                         signup.email, CONFIRMATIONS_PER_ADDRESS,
                         CONFIRMATION_WINDOW // timedelta(hours=1))
                return "limited"
        url = f"{self.public}/confirm/{token}"
        try:
            result = deliver.send_one(self.config, signup.email,
                                      self.confirmation(signup.email, url))
        except deliver.TransportDown as error:
            result = Result(Outcome.DEFERRED, str(error))
        if result.outcome is Outcome.SENT:
            return "sent"
        log.warning("confirmation mail to %s not sent: %s", signup.email, result.response)
        with Store(self.config.paths.database) as store:
            store.drop_signup(token)
        return "failed"

    def confirmation(self, email: str, url: str) -> bytes:
        newsletter = self.config.newsletter
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = newsletter.sender
        message["To"] = email  # the typed-in name stays out of headers
        message["Subject"] = f"Confirm your subscription to {compose.one_line(self.name)}"
        message["Date"] = format_datetime(now())
        message["Message-ID"] = make_msgid(domain=newsletter.domain)
        message["Auto-Submitted"] = "auto-replied"
        message.set_content(
            f"Someone, hopefully you, asked to receive {self.name} at this address.\n\n"
            f"To confirm, open this link within {self.config.web.confirm_hours} hours:\n\n"
            f"{url}\n\nIf you did not ask for it, ignore this mail: without the click "
            "nothing happens.\n")
        return message.as_bytes()

    def archived(self, limit: int) -> list[tuple[int, datetime, str]]:
        with Store(self.config.paths.database) as store:
            return store.archived(limit)

    def edition(self, number: int) -> str | None:
        """The edition as mailed, without anyone's personal values or links."""
        with Store(self.config.paths.database) as store:
            try:
                body = store.web_page(number)
            except KeyError:
                return None
        return compose.anonymous(body.html, body.marker, f"{self.public}/subscribe")

    def sections(self) -> list[str]:
        """The sections a sign-up may choose: offered only when the list has a `sections`
        column to keep the choice in, and there is more than one."""
        names = [feed.title for feed in self.config.feeds]
        try:
            columns = subscribers.columns(self.config.paths.subscribers)
        except (OSError, ValueError):
            columns = ("email", "name", "sections")  # a new list is written with them
        return names if len(names) > 1 and "sections" in columns else []


async def _form(request: Request) -> FormData:
    """The posted fields, urlencoded or multipart; no files, and garbage counts as empty."""
    try:
        return await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
    except HTTPException:
        return FormData()


def _client(request: Request) -> str:
    # Behind a trusted proxy uvicorn has already put X-Forwarded-For's client here.
    return request.client.host if request.client else "unknown"


def app(config: Config) -> Starlette:
    site = Site(config)
    name = html.escape(site.name)

    async def welcome(request: Request) -> Response:
        return page(site.name, (
            f"<p>{name} by email: the latest stories, picked for you.</p>"
            '<p><a href="subscribe">Subscribe</a> · <a href="archive/">Past editions</a></p>'))

    def unsubscribe_form(email: str, status: int = 200) -> HTMLResponse:
        return page(f"Unsubscribe from {site.name}?", (
            f"<p>Stop sending {name} to <strong>{html.escape(email)}</strong>?</p>"
            '<form method="post" action="">'
            '<input type="hidden" name="via" value="page">'
            "<button type=\"submit\">Unsubscribe</button></form>"), status, private=True)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        email = await run_in_threadpool(site.address, token)
        if email is None:
            return refused()
        if request.method == "GET":
            return unsubscribe_form(email)
        form = await _form(request)
        if form.get("via") == "page":
            source = "web page"
        elif form.get("List-Unsubscribe") == "One-Click":
            source = "one-click"
        else:
            # RFC 8058: a one-click POST says so in its body. Anything else posting to the
            # link (a scanner, a bare request) changes nothing and gets the page to decide.
            return unsubscribe_form(email, 400)
        await run_in_threadpool(site.suppress, email, source)
        return page("You are unsubscribed", (
            f"<p>{html.escape(email)} will get no more mail from {name}.</p>"
            "<p>Clicked by mistake?</p>"
            f'<form method="post" action="../resubscribe/{html.escape(token)}">'
            "<button type=\"submit\">Resubscribe</button></form>"), private=True)

    async def resubscribe(request: Request) -> Response:
        email = await run_in_threadpool(site.address, request.path_params["token"])
        if email is None:
            return refused()
        return await _signup(request, Subscriber(email))

    async def _signup(request: Request, signup: Subscriber) -> Response:
        if not site.limiter.allow(_client(request)):
            return page("Too many sign-ups", "<p>Too many requests from your address. Please "
                        "try again in an hour.</p>", 429, True)
        sent = await run_in_threadpool(site.send_confirmation, signup)
        if sent == "limited":
            return page("Check your inbox", (
                f"<p>A confirmation link was sent to <strong>{html.escape(signup.email)}"
                "</strong> several times lately; no more are sent today. Open the latest one "
                "(it may be in a spam folder), or try again tomorrow.</p>"), 429, True)
        if sent == "failed":
            return page("Please try again later", "<p>We could not send the confirmation mail "
                        "just now. Please try again in a few minutes.</p>", 503, True)
        return page("Check your inbox", (
            f"<p>We sent a link to <strong>{html.escape(signup.email)}</strong>. Open it "
            f"within {config.web.confirm_hours} hours to confirm: until then, nothing "
            "changes.</p>"), private=True)

    def form_page(sections: list[str], error: str = "", email: str = "", person: str = "",
                  status: int = 200) -> HTMLResponse:
        boxes = "".join(
            f'<label><input type="checkbox" name="section" value={quoteattr(section)}> '
            f"{html.escape(section)}</label>" for section in sections)
        choice = (f"<fieldset><legend>Sections (none ticked: all of them)</legend>{boxes}"
                  "</fieldset>") if sections else ""
        problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return page(f"Subscribe to {site.name}", (
            f"<p>Receive {name} by email.</p>{problem}"
            '<form method="post" action="">'
            '<label for="email">Email address</label>'
            f'<input id="email" type="email" name="email" required value={quoteattr(email)}>'
            '<label for="name">Name (optional)</label>'
            f'<input id="name" type="text" name="name" maxlength="200" value={quoteattr(person)}>'
            f'{choice}<p><button type="submit">Subscribe</button></p></form>'
            "<p><small>To unsubscribe, use the link at the foot of any digest you "
            "received.</small></p>"), status)

    async def subscribe(request: Request) -> Response:
        sections = await run_in_threadpool(site.sections)
        if request.method == "GET":
            return form_page(sections)
        form = await _form(request)
        address = str(form.get("email") or "").strip()
        # A stranger's name lands in a CSV the operator may open in a spreadsheet: a leading
        # =, +, - or @ would make it a formula there (CSV injection).
        person = compose.one_line(str(form.get("name") or "")).lstrip("=+-@ \t")[:200]
        try:
            email = subscribers.normalise(address)
        except EmailNotValidError as error:
            return form_page(sections, f"That address does not work: {error}", address, person,
                             400)
        chosen = tuple(s for s in sections if s in form.getlist("section"))
        return await _signup(request, Subscriber(email, person, {}, chosen))

    async def confirm(request: Request) -> Response:
        signup = await run_in_threadpool(site.signup, request.path_params["token"])
        if signup is None:
            return refused()
        try:
            await run_in_threadpool(site.confirm, signup)
        except (DigestError, OSError) as error:  # the list is unreadable: the operator's to fix
            log.error("confirmed sign-up of %s not recorded: %s", signup.email, error)
            return page("Please try again later", "<p>We could not record your subscription "
                        "just now. Please open the link again later.</p>", 503, True)
        return page("You are subscribed", f"<p>{html.escape(signup.email)} will receive "
                    f"{name} from the next edition on.</p>", private=True)

    async def archive(request: Request) -> Response:
        editions = await run_in_threadpool(site.archived, 100)
        items = "".join(
            f'<li><a href="{number}">{html.escape(subject)}</a> '
            f"<small>{when:%Y-%m-%d}</small></li>" for number, when, subject in editions)
        return page(f"{site.name}: past editions",
                    (f"<ul>{items}</ul>" if items else "<p>No editions yet.</p>")
                    + '<p><a href="feed.xml">Atom feed</a> · <a href="../subscribe">'
                    "Subscribe</a></p>")

    async def edition(request: Request) -> Response:
        body = await run_in_threadpool(site.edition, request.path_params["number"])
        if body is None:
            return page("No such edition", '<p><a href="./">All editions</a></p>', 404)
        return HTMLResponse(body, headers=HEADERS)

    async def feed(request: Request) -> Response:
        editions = await run_in_threadpool(site.archived, 50)
        home = f"{site.public}/archive/"
        updated = (editions[0][1] if editions else now()).isoformat()
        entries = "".join(
            f"<entry><title>{escape(subject)}</title><id>{home}{number}</id>"
            f'<link href="{home}{number}"/><updated>{when.isoformat()}</updated></entry>'
            for number, when, subject in editions)
        text = ('<?xml version="1.0" encoding="utf-8"?>'
                f'<feed xmlns="http://www.w3.org/2005/Atom"><title>{escape(site.name)}</title>'
                f"<id>{home}</id><updated>{updated}</updated>"
                f"<author><name>{escape(site.name)}</name></author>"
                f'<link rel="self" href="{home}feed.xml"/><link href="{home}"/>{entries}</feed>')
        return Response(text, media_type="application/atom+xml", headers=HEADERS)

    async def framework_error(request: Request, error: Exception) -> Response:
        # No route, a method the route does not take: the router's own answers, made pages.
        assert isinstance(error, HTTPException)
        title = HTTPStatus(error.status_code).phrase
        return page(title, "<p>Check the address you followed.</p>", error.status_code,
                    extra=error.headers)

    async def server_error(request: Request, error: Exception) -> Response:
        # Starlette logs the traceback after this answer; the visitor sees no detail of it.
        return page("Something went wrong", "<p>Please try again later.</p>", 500)

    return Starlette(exception_handlers={HTTPException: framework_error,
                                         Exception: server_error}, routes=[
        Route("/", welcome, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/resubscribe/{token}", resubscribe, methods=["POST"]),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET"]),
        Route("/archive/", archive, methods=["GET"]),
        Route("/archive/feed.xml", feed, methods=["GET"]),
        Route("/archive/{number:int}", edition, methods=["GET"]),
    ])
