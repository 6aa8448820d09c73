"""subscribers.csv as operators really write it: BOMs, semicolons, comments, mistakes; and what
its values may and may not do in a mail."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from hypothesis import event, given, settings
from hypothesis import strategies as st
from servers import SmtpServer
from support import Item, Site, digest, rows, rss

from digest import subscribers
from digest.config import bundled
from digest.errors import DigestError
from digest.records import Preferences, Subscriber
from digest.store import Store

pytestmark = pytest.mark.backends

SECTIONS = ["World", "Tech"]


def listed(path: Path) -> subscribers.Roster:
    return subscribers.read(path, SECTIONS)


def test_bom_semicolons_comments_and_blank_lines_are_understood(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_bytes("\ufeff# our readers\nEmail;Name;Sections\n\nann@example.com;Ann;World\n"
                     "# bob left\n  \nbob@example.org;Bob;\"Tech; world\"\n".encode())
    roster = listed(path)
    assert roster.problems == ()
    assert roster.subscribers == (
        Subscriber("ann@example.com", "Ann", {}, ("World",)),
        Subscriber("bob@example.org", "Bob", {}, ("Tech", "World")),
    )


def test_rejected_rows_name_their_line_and_reason_and_the_rest_stay(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "email,name,sections,status,cadence,timezone\n"
        'ann@example.com,"Ann\nAnother line",,\n'   # lines 2-3: one record over two lines
        "not-an-address,Nobody,,\n"                 # 4
        "ANN@Example.com,Ann again,,\n"             # 5: same address in other case
        "cat@example.com,Cat,Sport,\n"              # 6: no such section
        "dan@example.com,Dan,,retired\n"            # 7: no such status
        "eve@example.com,Eve,,paused\n"             # 8: valid, held
        "fay@example.com,Fay,,,,,surplus\n"         # 9: more cells than columns
        "gus@exa mple.com,Gus,,\n"                  # 10
        "hal@Example.COM,Hal,tech,active\n"         # 11
        "josé@example.com,José,,\n"                 # 12: relays may refuse it
        "ida@bücher.example,Ida,,\n"                # 13: mailed to its IDNA form
        "jan@example.com,Jan,,,monthly,\n"          # 14: no such cadence
        "kim@example.com,Kim,,,Weekly,Asia/Kathmandu\n"
        "lea@example.com,Lea,,,,Mars/Olympus\n"     # 16: no such zone
        "max@example.com,Max,,,,../../etc/passwd\n",  # 17: a name, never a path
        encoding="utf-8")
    roster = listed(path)
    problems = {p.line: p.reason for p in roster.problems}
    assert sorted(problems) == [4, 5, 6, 7, 9, 10, 12, 14, 16, 17]
    assert "Internationalized characters before the @-sign" in problems[12]
    assert problems[4].startswith("not-an-address: ")
    assert problems[5] == "ANN@example.com: duplicate of line 2"
    assert "unknown section 'Sport'" in problems[6] and "World, Tech" in problems[6]
    assert "unknown status 'retired'" in problems[7]
    assert "more than the header" in problems[9]
    assert problems[14] == "jan@example.com: unknown cadence 'monthly' (use daily, weekly)"
    assert "unknown time zone 'Mars/Olympus'" in problems[16]
    assert "unknown time zone '../../etc/passwd'" in problems[17]
    assert [s.email for s in roster.subscribers] == [
        "ann@example.com", "hal@example.com", "ida@xn--bcher-kva.example", "kim@example.com"]
    assert (roster.subscribers[0].cadence, roster.subscribers[0].timezone) == ("daily", "")
    assert (roster.subscribers[3].cadence, roster.subscribers[3].timezone) == (
        "weekly", "Asia/Kathmandu")
    assert roster.subscribers[0].name == "Ann Another line"  # a name never spans lines
    assert roster.subscribers[1].sections == ("Tech",)  # as configured, whatever the case
    assert roster.held == 1


def test_a_list_without_an_email_column_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text("# list\naddress,name\nann@example.com,Ann\n")
    with pytest.raises(DigestError, match=r"subscribers.csv:2: the header row must name"):
        listed(path)


def test_a_list_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_bytes("email,name\njose@example.net,José\n".encode("latin-1"))
    with pytest.raises(DigestError, match="not UTF-8"):
        listed(path)


def test_add_appends_in_the_files_own_format_and_never_twice(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text("email;sections;name;company\nann@example.com;;Ann;ACME", encoding="utf-8")
    assert subscribers.add(path, Subscriber("bob@example.org", "Bob; Jr", {}, ("World", "Tech")))
    assert not subscribers.add(path, Subscriber("ANN@example.com", "Other Ann"))
    assert path.read_text() == ("email;sections;name;company\nann@example.com;;Ann;ACME\n"
                                'bob@example.org;"World;Tech";"Bob; Jr";\n')
    assert [s.email for s in listed(path).subscribers] == ["ann@example.com", "bob@example.org"]
    fresh = tmp_path / "new" / "subscribers.csv"
    assert subscribers.add(fresh, Subscriber("cat@example.com", "Cat"))
    assert listed(fresh).subscribers == (Subscriber("cat@example.com", "Cat"),)


# -- through the command line and into the mail ---------------------------------------------------

def with_feed(site: Site, smtp: SmtpServer, *items: Item) -> None:
    feed = site.root / "feed.xml"
    feed.write_text(rss(*items))
    site.feeds = [("World", str(feed))]
    site.smtp_port = smtp.port
    site.write()


def test_check_reports_rejected_rows_and_exits_1(site: Site) -> None:
    site.write()
    site.subscribers("email,name\nann@example.com,Ann\nnope,Nobody\nann@EXAMPLE.com,Ann\n")
    result = digest("subscribers", "check")
    assert result.exit_code == 1
    path = site.root / "subscribers.csv"
    assert f"{path}:3: nope: " in result.output
    assert f"{path}:4: ann@example.com: duplicate of line 2" in result.output
    assert "1 to mail" in result.output and "2 rows rejected" in result.output
    site.subscribers("email,name\nann@example.com,Ann\n")
    assert digest("subscribers", "check").exit_code == 0


def test_check_tells_a_pause_on_the_preferences_page_from_an_opt_out(site: Site) -> None:
    site.write()
    site.subscribers("email,status\nann@example.com,\nbob@example.org,\ncat@example.com,\n"
                     "dan@example.com,paused\n")
    with Store(site.database) as store:
        for email in ("bob@example.org", "cat@example.com"):
            store.prefer(email, Preferences(paused=True))
        store.suppress("cat@example.com", "unsubscribed", "preferences page")
    result = digest("subscribers", "check")
    assert result.exit_code == 0
    assert ("1 to mail, 1 suppressed, 1 paused on their preferences page, 1 paused or "
            "unsubscribed in the file, 0 rows rejected") in " ".join(result.output.split())


def test_export_writes_the_list_the_next_send_sees(site: Site) -> None:
    site.write()
    site.subscribers("email;name;status;company\nann@example.com;Ann;;ACME\n"
                     "bob@example.org;Bob;paused;\ncat@example.com;Cat;;Initech\nbad;Bad;;\n")
    digest("subscribers", "check")  # creates the database
    rows(site.database, "INSERT INTO suppressions (email, reason, at) VALUES "
                        "('CAT@example.com', 'unsubscribed', '2026-11-01')")
    result = digest("subscribers", "export", "--out", "export.csv")
    assert result.exit_code == 0
    assert (site.root / "export.csv").read_text() == (
        "email,name,sections,cadence,timezone,company\nann@example.com,Ann,,daily,,ACME\n")
    assert "1 subscribers written; 1 rows rejected" in result.output


def test_operator_unsubscribes_addresses_from_the_mailbox(site: Site) -> None:
    site.write()
    site.subscribers("email\nann@example.com\nbob@example.org\n")
    result = digest("subscribers", "unsubscribe", "BOB@EXAMPLE.ORG", "no address")
    # The good address asked not to be mailed: a typo beside it must not undo that.
    assert result.exit_code == 1 and "no address: not an address" in result.output
    assert rows(site.database, "SELECT email, source FROM suppressions") == [
        ("BOB@example.org", "operator")]
    exported = digest("subscribers", "export").stdout
    assert exported == "email,name,sections,cadence,timezone\nann@example.com,,,daily,\n"


def templates_printing(site: Site, line: str) -> Path:
    """A copy of the bundled templates whose footer also prints `line`, in both parts."""
    folder = site.root / "templates"
    shutil.copytree(bundled("templates"), folder)
    for name, marker in (("digest.html", "<td class=\"foot\">"), ("digest.txt", "-" * 72)):
        path = folder / name
        path.write_text(path.read_text().replace(marker, f"{marker}\n{line}\n", 1))
    return folder


def test_custom_columns_reach_the_template_per_subscriber(site: Site, smtp: SmtpServer) -> None:
    site.extra = "[paths]\ntemplates = 'templates'\n"
    with_feed(site, smtp, Item("Harbour opens", "https://example.com/h", "h1"))
    templates_printing(site, "Account: [{{ subscriber.fields.company }}] "
                             "plan [{{ subscriber.fields['plan'] }}]")
    site.subscribers("email,name,Company,plan,unused\nann@example.com,Ann,ACME & Co,gold,x\n"
                     "bob@example.org,Bob,,,y\n")
    digest("collect")
    assert digest("send").exit_code == 0
    mails = {m.rcpt_tos[0]: m.message for m in smtp.messages}
    ann, bob = mails["ann@example.com"], mails["bob@example.org"]
    assert "Account: [ACME & Co] plan [gold]" in ann.get_body(("plain",)).get_content()
    assert "Account: [ACME &amp; Co] plan [gold]" in ann.get_body(("html",)).get_content()
    assert "Account: [] plan []" in bob.get_body(("plain",)).get_content()
    assert "DIGEST-PERSONAL" not in ann.get_body(("html",)).get_content()


def test_a_name_with_line_breaks_or_html_is_inert(site: Site, smtp: SmtpServer) -> None:
    site.extra = "[paths]\ntemplates = 'templates'\n"
    with_feed(site, smtp, Item("Harbour opens", "https://example.com/h", "h1"))
    templates_printing(site, "Hello {{ subscriber.name }}!")
    site.subscribers('email,name\nann@example.com,"Ann\r\nBcc: victim@example.net"\n'
                     'bob@example.org,"<script>alert(1)</script> Bob"\n')
    digest("collect")
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    mails = {m.rcpt_tos[0]: m for m in smtp.messages}
    ann = mails["ann@example.com"]
    assert b"\nBcc:" not in ann.data and ann.message["Bcc"] is None
    # The whole value stays one display name in one header.
    assert ann.message["To"].addresses[0].display_name == "Ann Bcc: victim@example.net"
    bob = mails["bob@example.org"].message
    html = bob.get_body(("html",)).get_content()
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt; Bob!" in html
    assert "<script>" not in html
    assert "Hello <script>alert(1)</script> Bob!" in bob.get_body(("plain",)).get_content()


def test_paused_and_unsubscribed_rows_are_not_mailed(site: Site, smtp: SmtpServer) -> None:
    with_feed(site, smtp, Item("Harbour opens", "https://example.com/h", "h1"))
    site.subscribers("email,status\nann@example.com,\nbob@example.org,paused\n"
                     "cat@example.com,unsubscribed\n")
    digest("collect")
    assert digest("send").exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1}


# -- properties ------------------------------------------------------------------------------------

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(NAMES, max_size=6), delimiter=st.sampled_from(",;"))
def test_whatever_a_name_says_an_added_row_reads_back_as_written(
        tmp_path_factory: pytest.TempPathFactory, names: list[str], delimiter: str) -> None:
    path = tmp_path_factory.mktemp("list") / "subscribers.csv"
    path.write_text(f"email{delimiter}name{delimiter}company\n", encoding="utf-8")
    for number, name in enumerate(names):
        assert subscribers.add(path, Subscriber(f"p{number}@example.com", name))
    roster = subscribers.read(path)
    assert roster.problems == ()
    # Line breaks and NULs become spaces: a name is one line, wherever it goes.
    assert [(s.email, s.name) for s in roster.subscribers] == [
        (f"p{number}@example.com", name.translate({13: " ", 10: " ", 0: " "}).strip())
        for number, name in enumerate(names)]


# -- addresses: the fast path for plain ones is email_validator's answer ------------------------

def validated(address: str) -> str:
    """The address as email_validator has it: what `normalise` returned before plain ones got
    their own path, and still returns for every other."""
    checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    return checked.ascii_email or checked.normalized


LONG = "a" * 63
WIDE = ".".join([LONG, LONG, LONG, "b" * 55, "com"])  # 251 characters, no label over 63
PLAIN_ADDRESSES = st.from_regex(subscribers.PLAIN, fullmatch=True)
# Mostly what addresses are made of, with enough else to reach every edge of the plain shape.
CHARACTERS = st.sampled_from(
    string.ascii_letters + string.digits + ".-_+@" * 6 + '"( [\\<>,' + "éßİ\u200b")
TEXT = st.text(CHARACTERS, max_size=30)


@st.composite
def edited(draw: st.DrawFn) -> str:
    """A plain address with a piece replaced by some text: near misses of every kind."""
    address = draw(PLAIN_ADDRESSES)
    start = draw(st.integers(0, len(address)))
    end = draw(st.integers(start, len(address)))
    return address[:start] + draw(TEXT) + address[end:]


@st.composite
def listed_names(draw: st.DrawFn) -> str:
    """Plain addresses the library treats apart, in any case: the RFC 2142 mailboxes, and the
    special-use domains and those under them (read from the library, as the fast path reads
    them)."""
    local = draw(st.sampled_from(CASE_INSENSITIVE_MAILBOX_NAMES) | st.just("ann"))
    name = draw(st.sampled_from(email_validator.SPECIAL_USE_DOMAIN_NAMES) | st.just("org"))
    above = draw(st.sampled_from(["", "example.", "mail.example."]))
    return "".join(draw(st.sampled_from([c, c.upper()])) for c in f"{local}@{above}{name}")


@st.composite
def hyphenated(draw: st.DrawFn) -> str:
    """Labels of a few characters about a run of hyphens, Punycode's "xn--" among them."""
    ends = st.text("axnXN1", min_size=1, max_size=3)
    labels = draw(st.lists(st.builds("{}{}{}".format, ends, st.text("-", max_size=3), ends),
                           min_size=1, max_size=3))
    return draw(st.text("aA.+", min_size=1, max_size=3)) + "@" + ".".join(labels) + ".com"


@st.composite
def long_ones(draw: st.DrawFn) -> str:
    """Plain addresses about the limits: 64 before the @, 63 a label, 254 in all."""
    local = "a" * draw(st.integers(1, 70))
    labels = ["b" * size for size in draw(st.lists(st.integers(55, 66), min_size=1, max_size=4))]
    return f"{local}@{'.'.join(labels)}.com"


ADDRESSES = PLAIN_ADDRESSES | TEXT | st.builds("{}@{}".format, TEXT, TEXT) | edited() \
    | listed_names() | hyphenated() | long_ones()


@settings(max_examples=1000, deadline=None)
@given(ADDRESSES)
def test_the_fast_path_gives_what_email_validator_gives(address: str) -> None:
    fast = subscribers.plain(address)
    event("fast path" if fast is not None else "left to email_validator")
    if fast is not None:
        assert fast == validated(address)  # which must not raise either


@settings(max_examples=500, deadline=None)
@given(ADDRESSES)
def test_normalise_accepts_refuses_and_words_as_email_validator_does(address: str) -> None:
    agrees(address)


def agrees(address: str) -> None:
    """`normalise` answers as email_validator: with the same address, or the same error."""
    try:
        expected = validated(address)
    except EmailNotValidError as error:
        with pytest.raises(EmailNotValidError) as refused:
            subscribers.normalise(address)
        assert str(refused.value) == str(error)
    else:
        assert subscribers.normalise(address) == expected


@pytest.mark.parametrize(("address", "fast", "kept"), [
    ("reader7@example.org", True, "reader7@example.org"),
    ("  Ann@Example.COM\t", True, "Ann@example.com"),
    ("o'neil+news@mail.example.co.uk", True, "o'neil+news@mail.example.co.uk"),
    ("Postmaster@example.com", False, "postmaster@example.com"),  # RFC 2142
    ("a@b.local", False, None),
    ("a@B.LocalHost", False, None),
    ("a@localhost", False, None),  # no dot
    ("a@xn--bcher-kva.example", False, "a@xn--bcher-kva.example"),
    ("a@xn--zz.example", False, None),  # not Punycode
    ("a@ab--cd.example", False, None),
    ("a@a-b--c.example", False, "a@a-b--c.example"),
    ("a@example.123", False, None),
    ("a" * 64 + "@example.com", True, "a" * 64 + "@example.com"),
    (f"a@{WIDE}", True, f"a@{WIDE}"),  # 253 characters
    (f"ab@{WIDE}", True, f"ab@{WIDE}"),  # 254
    (f"abc@{WIDE}", False, None),  # 255
    (f"ab@{WIDE.upper()}", True, f"ab@{WIDE}"),
    (f"a@{'b' * 63}.com", True, f"a@{'b' * 63}.com"),
    (f"a@{'b' * 64}.com", False, None),
    ("a@example.com.", False, None),
    ("a..b@example.com", False, None),
    ("a@example..com", False, None),
    ("josé@example.com", False, None),
    ("a@bücher.example", False, "a@xn--bcher-kva.example"),
])
def test_plain_addresses_take_the_fast_path_and_the_rest_email_validator(
        address: str, fast: bool, kept: str | None) -> None:
    assert len(WIDE) == 251
    assert subscribers.plain(address.strip()) == (kept if fast else None)
    if kept is None:
        with pytest.raises(EmailNotValidError):
            validated(address)
        with pytest.raises(EmailNotValidError):
            subscribers.normalise(address)
    else:
        assert validated(address) == subscribers.normalise(address) == kept


def test_the_librarys_settings_hold_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Documented settings of email_validator: a program may reserve a name of its own, or
    # make every check strict. A local part over 64 is refused when strict (and always by
    # older versions), so it is never the fast path's.
    longest, over = "a" * 64 + "@example.org", "a" * 65 + "@example.org"
    assert subscribers.plain(over) is None
    agrees(over)
    assert subscribers.normalise("ann@mail.example.com") == "ann@mail.example.com"
    monkeypatch.setattr(email_validator, "SPECIAL_USE_DOMAIN_NAMES",
                        [*email_validator.SPECIAL_USE_DOMAIN_NAMES, "example.com"])
    monkeypatch.setattr(email_validator, "STRICT", True)
    with pytest.raises(EmailNotValidError, match="special-use or reserved name"):
        subscribers.normalise("ann@mail.example.com")
    with pytest.raises(EmailNotValidError, match="too long before the @-sign"):
        subscribers.normalise(over)
    assert subscribers.normalise(longest) == longest
