"""The public web app behind `digest serve`: unsubscribe, sign-up with confirmation, archive.

    GET  /                       where to go: the sign-up form, the archive
    POST /unsubscribe/{token}    one-click (RFC 8058), what List-Unsubscribe points at: the
                                 body must say List-Unsubscribe=One-Click; also the button of
                                 the page below
    GET  /unsubscribe/{token}    a page with a button: a GET alone never unsubscribes, since
                                 mail scanners prefetch links
    GET  /preferences/{token}    "Manage preferences" in every mail's footer: sections, cadence,
                                 time zone, pause or resume, unsubscribe; POST saves, the
                                 form again with the error (status 400) for any unknown value
    POST /resubscribe/{token}    mails a confirmation link: only its click lifts the opt-out
    GET  /subscribe, POST        the sign-up form; a confirmation mail with an expiring link
                                 (double opt-in), rate-limited per client and per recipient
    GET  /confirm/{token}        adds the subscriber to the CSV, or lifts their opt-out
    GET  /archive/, /archive/{id}, /archive/feed.xml    past editions, for anyone
    GET  /img/{hash}.{ext}       the hosted copies of the cards' pictures (images.py); named
                                 by a hash of their bytes, so cached for a year
    GET  /metrics                the state's numbers for Prometheus (metrics.py), only to
                                 clients in web.metrics_allow

Every answer is the same whether an address is listed or not: nothing here tells a stranger
who subscribes, and no token in a URL holds an address (see tokens.py). A refused token gets
one plain page with status 400, whatever was wrong with it. Every page, the framework's error
pages included, carries the same security headers. Links inside pages are relative, so the app
works under any prefix a reverse proxy gives it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http import HTTPStatus
from typing import Any, Literal

from email_validator import EmailNotValidError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from digest import compose, deliver, images, metrics, subscribers, tokens, transport
from digest.config import Config
from digest.errors import DigestError
from digest.records import CADENCES, Outcome, Preferences, Result, Subscriber
from digest.store import Archived, Store, now
from digest.web import templates

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

# What the forms say of each cadence, in the order offered (the first is the default).
CADENCE_WORDS = {"daily": "Every day", "weekly": "Once a week: the week's stories in one round-up"}
assert tuple(CADENCE_WORDS) == CADENCES

# However many clients ask, one address gets at most this many confirmation mails a day: the
# form must not be a way to flood a stranger's inbox.
CONFIRMATIONS_PER_ADDRESS = 3
CONFIRMATION_WINDOW = timedelta(days=1)


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


class Site:
    """The app's state (`app.state.site`): configuration, signing secret, rate limiter. The
    database is opened per request in a worker thread (a Store serves one thread at a time)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = config.newsletter.name
        self.secret = tokens.secret(config.secret, config.paths.state)
        self.list_id = config.newsletter.list_id
        self.public = config.newsletter.public_url.rstrip("/")
        self.limiter = Limiter(config.web.signups_per_hour)
        self.metrics_allow = config.web.metrics_networks
        self.metrics = metrics.registry(config)
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
        """Add the confirmed address to the list (when not there yet) and lift any opt-out.
        A cadence or time zone the list has no column for is kept as the new subscriber's
        preferences instead, so no choice made on the form is lost."""
        path = self.config.paths.subscribers
        added = subscribers.add(path, signup)
        columns = subscribers.columns(path)
        unkept = ((signup.cadence != CADENCES[0] and "cadence" not in columns)
                  or (bool(signup.timezone) and "timezone" not in columns))
        with Store(self.config.paths.database) as store:
            if added and unkept:
                store.prefer(subscribers.key(signup.email), Preferences(
                    signup.sections, signup.cadence, signup.timezone))
            if store.unsuppress(signup.email):
                log.info("%s re-subscribed: opt-out lifted", signup.email)

    def standing(self, email: str) -> tuple[Preferences, bool]:
        """What the preferences page shows for the address: what is in effect for it (its
        own choice, else its row of the list, else the defaults), and whether it opted out."""
        names = [feed.title for feed in self.config.feeds]
        with Store(self.config.paths.database) as store:
            chosen = store.preference(subscribers.key(email))
            opted_out = subscribers.key(email) in {subscribers.key(address)
                                                   for address in store.suppressed()}
        if chosen is None:
            listed = next((found for found in subscribers.Listing(
                self.config.paths.subscribers, names).walk() if isinstance(found, Subscriber)
                and subscribers.key(found.email) == subscribers.key(email)), Subscriber(email))
            chosen = Preferences(listed.sections, listed.cadence, listed.timezone)
        return chosen, opted_out

    def prefer(self, email: str, chosen: Preferences) -> None:
        with Store(self.config.paths.database) as store:
            store.prefer(subscribers.key(email), chosen)

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
        except transport.TransportDown as error:
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

    def archived(self, limit: int) -> list[Archived]:
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


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def render(request: Request, template: str, status: int = 200, *, private: bool = False,
           headers: Mapping[str, str] | None = None, media_type: str | None = None,
           **context: Any) -> Response:
    """One of our templates with the newsletter's name, under the security headers."""
    return templates.TemplateResponse(
        request, template, {"name": _site(request).name, **context}, status,
        {**(PRIVATE if private else HEADERS), **(headers or {})}, media_type)


def message(request: Request, title: str, text: str, status: int, private: bool = True,
            headers: Mapping[str, str] | None = None) -> Response:
    """A page that only says something: a refusal, a limit, a failure."""
    return render(request, "message.html", status, private=private, headers=headers,
                  title=title, text=text)


def refused(request: Request) -> Response:
    # One answer for forged, altered, other-list and expired alike: nothing to learn from it.
    return message(request, "This link does not work", "The link is not valid or no longer "
                   "valid. If you copied it from an email, make sure you copied all of it.", 400)


async def welcome(request: Request) -> Response:
    return render(request, "home.html")


async def unsubscribe(request: Request) -> Response:
    token = request.path_params["token"]
    email = await run_in_threadpool(_site(request).address, token)
    if email is None:
        return refused(request)
    if request.method == "GET":
        return render(request, "unsubscribe.html", private=True, email=email)
    form = await _form(request)
    if form.get("via") == "page":
        source = "web page"
    elif form.get("List-Unsubscribe") == "One-Click":
        source = "one-click"
    else:
        # RFC 8058: a one-click POST says so in its body. Anything else posting to the
        # link (a scanner, a bare request) changes nothing and gets the page to decide.
        return render(request, "unsubscribe.html", 400, private=True, email=email)
    await run_in_threadpool(_site(request).suppress, email, source)
    return render(request, "unsubscribed.html", private=True, email=email, token=token)


async def resubscribe(request: Request) -> Response:
    email = await run_in_threadpool(_site(request).address, request.path_params["token"])
    if email is None:
        return refused(request)
    return await _signup(request, Subscriber(email))


async def _signup(request: Request, signup: Subscriber) -> Response:
    site = _site(request)
    if not site.limiter.allow(_client(request)):
        return message(request, "Too many sign-ups", "Too many requests from your address. "
                       "Please try again in an hour.", 429)
    sent = await run_in_threadpool(site.send_confirmation, signup)
    if sent == "failed":
        return message(request, "Please try again later", "We could not send the confirmation "
                       "mail just now. Please try again in a few minutes.", 503)
    return render(request, "check_inbox.html", 429 if sent == "limited" else 200, private=True,
                  limited=sent == "limited", email=signup.email,
                  hours=site.config.web.confirm_hours)


def choices(request: Request) -> dict[str, Any]:
    """What the sign-up and preferences forms offer besides sections: the cadences, and every
    IANA zone after the newsletter's own (the default, kept as '')."""
    return {"cadences": CADENCE_WORDS, "zones": sorted(subscribers.zones()),
            "newsletter_zone": _site(request).config.newsletter.timezone}


def _refusal(form: FormData, sections: list[str]) -> str:
    """What is wrong with the cadence, time zone or sections posted, '' when nothing: the
    forms only offer good values, so a bad one was made by hand and is named back."""
    unknown = [name for name in form.getlist("section") if name not in sections]
    cadence = form.get("cadence", CADENCES[0])
    zone = form.get("timezone", "")
    if unknown:
        return f"There is no section {str(unknown[0])!r}."
    if cadence not in CADENCES:
        return f"Unknown cadence {str(cadence)!r}: choose {' or '.join(CADENCES)}."
    if zone and zone not in subscribers.zones():
        return f"Unknown time zone {str(zone)!r}: choose one from the list."
    return ""


def _chosen(form: FormData, sections: list[str]) -> Preferences | str:
    """The preferences page's form as preferences, or what is wrong with it."""
    if form.get("via") != "page":  # a scanner's or a bare POST: nothing is saved
        return "Please use the form to save your choices."
    delivery = form.get("delivery")
    if delivery not in ("active", "paused"):
        return f"Unknown delivery {str(delivery)!r}: choose active or paused."
    return _refusal(form, sections) or Preferences(
        tuple(name for name in sections if name in form.getlist("section")),
        str(form.get("cadence")), str(form.get("timezone", "")), delivery == "paused")


async def subscribe(request: Request) -> Response:
    sections = await run_in_threadpool(_site(request).sections)
    if request.method == "GET":
        return render(request, "subscribe.html", sections=sections, error="", email="",
                      person="", signup=Subscriber(""), **choices(request))
    form = await _form(request)
    address = str(form.get("email") or "").strip()
    # A stranger's name lands in a CSV the operator may open in a spreadsheet: a leading
    # =, +, - or @ would make it a formula there (CSV injection).
    person = compose.one_line(str(form.get("name") or "")).lstrip("=+-@ \t")[:200]
    # Kept as posted, so the form shown again after a mistake keeps every other choice.
    signup = Subscriber("", person, {}, tuple(s for s in sections if s in form.getlist("section")),
                        str(form.get("cadence", CADENCES[0])), str(form.get("timezone", "")))
    try:
        email = subscribers.normalise(address)
    except EmailNotValidError as problem:
        error = f"That address does not work: {problem}"
    else:
        error = _refusal(form, sections)
    if error:
        return render(request, "subscribe.html", 400, sections=sections, email=address,
                      person=person, signup=signup, error=error, **choices(request))
    return await _signup(request, replace(signup, email=email))


async def preferences(request: Request) -> Response:
    site, token = _site(request), request.path_params["token"]
    email = await run_in_threadpool(site.address, token)
    if email is None:
        return refused(request)
    sections = [feed.title for feed in site.config.feeds]
    error, saved = "", False
    if request.method == "POST":  # a GET changes nothing
        form = await _form(request)
        if form.get("via") == "page" and form.get("action") == "unsubscribe":
            await run_in_threadpool(site.suppress, email, "preferences page")
            return render(request, "unsubscribed.html", private=True, email=email, token=token)
        chosen = _chosen(form, sections)
        if isinstance(chosen, str):
            error = chosen
        else:
            await run_in_threadpool(site.prefer, email, chosen)
            saved = True
    try:
        shown, opted_out = await run_in_threadpool(site.standing, email)
    except DigestError as problem:  # the list is unreadable: the operator's to fix
        log.error("preferences page of %s not shown: %s", email, problem)
        return message(request, "Please try again later", "We could not read your "
                       "preferences just now. Please open the link again later.", 503)
    return render(request, "preferences.html", 400 if error else 200, private=True,
                  email=email, token=token, chosen=shown, opted_out=opted_out,
                  sections=sections if len(sections) > 1 else [], error=error, saved=saved,
                  **choices(request))


async def confirm(request: Request) -> Response:
    signup = await run_in_threadpool(_site(request).signup, request.path_params["token"])
    if signup is None:
        return refused(request)
    try:
        await run_in_threadpool(_site(request).confirm, signup)
    except (DigestError, OSError) as error:  # the list is unreadable: the operator's to fix
        log.error("confirmed sign-up of %s not recorded: %s", signup.email, error)
        return message(request, "Please try again later", "We could not record your "
                       "subscription just now. Please open the link again later.", 503)
    return render(request, "subscribed.html", private=True, email=signup.email)


async def archive(request: Request) -> Response:
    editions = await run_in_threadpool(_site(request).archived, 100)
    return render(request, "archive.html", editions=editions)


async def edition(request: Request) -> Response:
    body = await run_in_threadpool(_site(request).edition, request.path_params["number"])
    if body is None:
        return render(request, "no_edition.html", 404)
    # The edition as we composed and stored it (feed text sanitised and escaped when it was
    # rendered): sent as it is, so no template has to mark it safe.
    return HTMLResponse(body, headers=HEADERS)


async def feed(request: Request) -> Response:
    editions = await run_in_threadpool(_site(request).archived, 50)
    return render(request, "feed.xml", media_type="application/atom+xml", editions=editions,
                  home=f"{_site(request).public}/archive/",
                  updated=editions[0].created_at if editions else now())


async def picture(request: Request) -> Response:
    name = request.path_params["name"]
    path = images.file(_site(request).config.paths.images, name)
    if path is None:
        return message(request, "Not Found", "Check the address you followed.", 404,
                       private=False)
    # A name is a hash of the file's bytes: what it names never changes.
    return FileResponse(path, media_type=images.MEDIA_TYPES[path.suffix[1:]], headers={
        **HEADERS, "Cache-Control": "public, max-age=31536000, immutable"})


async def scrape(request: Request) -> Response:
    site = _site(request)
    # The client as uvicorn names it: behind a trusted proxy, the one X-Forwarded-For names,
    # so a visitor coming through the public proxy on loopback is not taken for a local one.
    if not metrics.allowed(site.metrics_allow, _client(request)):
        return message(request, "Forbidden", "Metrics are for the operator's monitoring.",
                       403, private=False)
    body = await run_in_threadpool(generate_latest, site.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers=PRIVATE)


async def framework_error(request: Request, error: Exception) -> Response:
    # No route, a method the route does not take: the router's own answers, made pages.
    assert isinstance(error, HTTPException)
    return message(request, HTTPStatus(error.status_code).phrase,
                   "Check the address you followed.", error.status_code, private=False,
                   headers=error.headers)


async def server_error(request: Request, error: Exception) -> Response:
    # Starlette logs the traceback after this answer; the visitor sees no detail of it.
    return message(request, "Something went wrong", "Please try again later.", 500,
                   private=False)


def app(config: Config) -> Starlette:
    application = Starlette(exception_handlers={HTTPException: framework_error,
                                                Exception: server_error}, routes=[
        Route("/", welcome, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/resubscribe/{token}", resubscribe, methods=["POST"]),
        Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET"]),
        Route("/archive/", archive, methods=["GET"]),
        Route("/archive/feed.xml", feed, methods=["GET"]),
        Route("/archive/{number:int}", edition, methods=["GET"]),
        Route("/img/{name}", picture, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
    ])
    application.state.site = Site(config)
    return application
