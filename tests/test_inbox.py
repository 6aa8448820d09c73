"""What comes back: real bounces from many servers, a real Postfix bouncing digest's own mail,
ARF complaints and vacation replies built with the email package, a real Dovecot for IMAP,
and messages that are no mail at all; all acted on through `digest inbox` and checked in the
real state file and mail folders afterwards."""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from click.testing import CliRunner
from imapclient import IMAPClient
from mailservers import Dovecot, Postfix
from servers import free_port
from support import Site, digest, rows

from digest import inbox
from digest.cli import main
from digest.returns import Ours

pytestmark = pytest.mark.backends

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".corpora" / "flufl-bounce"
OURS = Ours("bounces@news.example.com", "unsubscribe@news.example.com",
            "https://news.example.com/unsubscribe/")
RETURNS = '[delivery]\nreturn_path = "bounces@news.example.com"\n'


def report(message: EmailMessage | bytes) -> inbox.Report:
    data = message if isinstance(message, bytes) else message.as_bytes()
    return inbox.classify(inbox.read(data), data, OURS)


def mailed(site: Site, emails: list[str], extra: str = RETURNS) -> list[bytes]:
    """A site that mailed one edition of the sample feed to `emails` (into its outbox);
    returns the messages as sent."""
    site.extra = extra
    site.write()
    site.subscribers("email,name\n" + "".join(f"{e},\n" for e in emails))
    assert digest("collect").exit_code == 0
    sent = digest("send")
    assert sent.exit_code == 0, sent.output
    return [path.read_bytes() for path in sorted((site.root / "outbox" / "new").glob("*"))]


def maildir(root: Path, *messages: bytes | EmailMessage) -> Path:
    for folder in ("new", "cur", "tmp"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for number, message in enumerate(messages):
        data = message if isinstance(message, bytes) else message.as_bytes()
        (root / "new" / f"{number:03d}.test").write_bytes(data)
    return root


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def suppressions(site: Site) -> dict[str, str]:
    return dict(rows(site.database, "SELECT email, reason FROM suppressions"))


def dsn(to: str, recipient: str, status: str, diagnostic: str, action: str = "failed",
        original: bytes = b"") -> EmailMessage:
    """A delivery status notification (RFC 3464) as a relay writes one."""
    message = EmailMessage()
    message["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    message["To"] = to
    message["Subject"] = "Undelivered Mail Returned to Sender"
    message["Message-ID"] = make_msgid(domain="mx.example.org")
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(f"<{recipient}>: {diagnostic}\n")
    message.make_mixed()
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    for name, value in (("Final-Recipient", f"rfc822; {recipient}"), ("Action", action),
                        ("Status", status), ("Diagnostic-Code", f"smtp; {diagnostic}")):
        per_recipient[name] = value
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([per_message, per_recipient])
    message.attach(status_part)
    if original:
        message.attach(MIMEMessage(message_from_bytes(original)))
    message.replace_header("Content-Type", "multipart/report; report-type=delivery-status")
    return message


def arf(original: bytes, feedback: str = "abuse", rcpt: str = "") -> EmailMessage:
    """A feedback-loop report (RFC 5965) as a mailbox provider sends one."""
    message = EmailMessage()
    message["From"] = "Feedback Loop <fbl@isp.example>"
    message["To"] = "abuse@news.example.com"
    message["Subject"] = "Complaint about message"
    message["Message-ID"] = make_msgid(domain="isp.example")
    message.set_content("This is an email abuse report for an email message received.\n")
    message.make_mixed()
    fields = MIMEBase("message", "feedback-report")
    fields.set_payload(f"Feedback-Type: {feedback}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
                       + (f"Original-Rcpt-To: {rcpt}\n" if rcpt else ""))
    message.attach(fields)
    message.attach(MIMEMessage(message_from_bytes(original)))
    message.replace_header("Content-Type", "multipart/report; report-type=feedback-report")
    return message


def vacation(sender: str, to: str, subject: str = "Out of Office: Test Digest",
             auto: str | None = "auto-replied", body: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message["In-Reply-To"] = "<1.abc@example.com>"
    if auto:
        message["Auto-Submitted"] = auto
    message.set_content(body or f"I am away until Monday. Your message to {sender} will be "
                                "read when I am back. Mailbox full? User unknown? Neither.")
    return message


# -- the rules -------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "words", "expected"), [
    ("5.1.1", "", True), ("5.1.10", "", True), ("5.1.2", "", True), ("5.2.1", "", True),
    ("5.1.6", "", True),
    ("5.2.2", "mailbox full", False), ("5.3.4", "message too big", False),
    ("5.7.1", "rejected as spam", False), ("5.7.1", "blocked using zen.spamhaus.org", False),
    ("5.7.26", "unauthenticated mail is prohibited by policy", False),
    ("5.0.0", "", False), ("5.0.0", "550 unknown user <ann@example.org>", True),
    ("", "Sorry, no mailbox here by that name.", True),
    ("", "This user doesn't have a yahoo.com account", True),
    ("", "client host blocked using a blocklist: user unknown to us", False),
    ("4.2.2", "mailbox full", False), ("4.1.1", "user unknown", False), ("", "", False),
    ("5.5.0", "mailbox unavailable", False),
])
def test_only_a_dead_address_is_a_hard_bounce(status: str, words: str, expected: bool) -> None:
    assert inbox.hard(status, words) is expected


def test_soft_bounces_suppress_only_in_as_many_editions_as_the_limit() -> None:
    bounce = inbox.Report(inbox.Kind.BOUNCE, "test", "<1@x>",
                          (inbox.Recipient("ann@example.org", "5.2.2", False, "full"),))
    match = inbox.Match("ann@example.org", 3, bounce.recipients[0], "address")
    assert inbox.decide(bounce, [match], {"ann@example.org": {1}}, 3).action == "counted"
    # the same edition again counts once
    assert inbox.decide(bounce, [match], {"ann@example.org": {1, 3}}, 3).action == "counted"
    third = inbox.decide(bounce, [match], {"ann@example.org": {1, 2}}, 3)
    assert third.action == "suppressed"
    assert third.suppress[0].reason == "bounce" and "3 editions" in third.suppress[0].evidence


@pytest.mark.parametrize(("subject", "auto"), [
    ("Out of Office: Test Digest", "auto-replied"),  # RFC 3834
    ("Automatic reply: Test Digest", "auto-generated"),  # Outlook's
    ("Abwesenheitsnotiz: Test Digest", "auto-replied (vacation)"),
])
def test_a_vacation_reply_is_an_auto_reply_however_it_is_worded(subject: str,
                                                                auto: str) -> None:
    found = report(vacation("ann@example.org", "bounces+x@news.example.com", subject, auto))
    assert found.kind is inbox.Kind.AUTO_REPLY and found.recipients == ()


def test_our_own_newsletter_or_a_readers_letter_is_other_mail() -> None:
    letter = vacation("ann@example.org", "news@example.com", "Re: Test Digest", None,
                      "Loved the harbour story. My old address bob@example.org is dead.")
    assert report(letter).kind is inbox.Kind.OTHER
    newsletter = vacation("news@example.com", "ann@example.org", "Test Digest: Harbour",
                          "auto-generated", "Today's stories")
    assert report(newsletter).kind is inbox.Kind.OTHER


def test_a_delay_warning_is_an_auto_reply_not_a_bounce() -> None:
    delayed = dsn("news@example.com", "ann@example.org", "4.4.7", "connection timed out",
                  action="delayed")
    assert report(delayed).kind is inbox.Kind.AUTO_REPLY


def test_a_feedback_report_of_another_type_is_no_complaint() -> None:
    assert report(arf(b"From: a@b.c\r\n\r\nx\r\n", "abuse")).kind is inbox.Kind.COMPLAINT
    assert report(arf(b"From: a@b.c\r\n\r\nx\r\n", "fraud")).kind is inbox.Kind.COMPLAINT
    assert report(arf(b"From: a@b.c\r\n\r\nx\r\n", "auth-failure")).kind is inbox.Kind.OTHER


# -- real bounces from many servers ------------------------------------------------------------

def corpus() -> Path:
    """flufl.bounce's own test data, from the source distribution of the installed version,
    fetched into an ignored folder the first time (the package registry is all it needs)."""
    data = CORPUS / "tests" / "data"
    if not data.is_dir():
        _fetch_corpus()
    return data


def _fetch_corpus() -> None:
    version = importlib.metadata.version("flufl.bounce")
    with tempfile.TemporaryDirectory() as download:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", download, f"flufl.bounce=={version}"], capture_output=True, text=True)
        archives = list(Path(download).glob("*.tar.gz"))
        if fetched.returncode or not archives:
            pytest.fail(f"cannot fetch flufl.bounce {version}'s source distribution into "
                        f"{CORPUS}: {fetched.stderr.strip()[-300:]}")
        CORPUS.parent.mkdir(exist_ok=True)
        unpacked = Path(tempfile.mkdtemp(dir=CORPUS.parent))
        with tarfile.open(archives[0]) as archive:
            top = archive.getnames()[0].split("/")[0]
            archive.extractall(unpacked, filter="data")
        # Parallel test processes may both fetch it: the first rename wins, the other's is
        # thrown away.
        with contextlib.suppress(OSError):
            (unpacked / top).rename(CORPUS)
        shutil.rmtree(unpacked)


def oracle() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """What flufl.bounce's own tests say each file holds: permanent and temporary failures."""
    tree = ast.parse((CORPUS / "tests" / "test_detectors.py").read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "DETECTORS")
    permanent: dict[str, set[str]] = {}
    temporary: dict[str, set[str]] = {}
    for _, name, addresses, transient in ast.literal_eval(table):
        into = temporary if transient else permanent
        into.setdefault(name, set()).update(a.decode().lower() for a in addresses)
    return permanent, temporary


def test_every_real_bounce_is_read_and_names_the_recipients_its_format_holds() -> None:
    data = corpus()
    permanent, temporary = oracle()
    files = sorted(data.glob("*.txt"))
    assert len(files) > 100
    named = 0
    for path in files:
        found = report(path.read_bytes())  # never Unreadable, never a traceback
        addresses = {r.address.lower() for r in found.recipients}
        named += bool(found.recipients)
        if permanent.get(path.name):
            assert found.kind is inbox.Kind.BOUNCE, path.name
            assert permanent[path.name] <= addresses, path.name
        elif temporary.get(path.name):
            assert found.kind is inbox.Kind.AUTO_REPLY, path.name  # a delay warning
    # Not bounces at all: a reply flufl.bounce's GroupWise detector once took for one, and an
    # auto-reply.
    for name in ("groupwise_03.txt", "qmail_08.txt"):
        assert report((data / name).read_bytes()).kind is not inbox.Kind.BOUNCE
    print(f"\ncorpus: {named} of {len(files)} classified with a recipient "
          f"({named / len(files):.0%})")
    assert named / len(files) > 0.8


def test_every_real_bounce_for_an_address_on_the_list_is_matched(site: Site) -> None:
    data = corpus()
    permanent, _ = oracle()
    listed = sorted({a for found in permanent.values() for a in found if "..." not in a})
    mailed(site, listed, extra="")
    box = maildir(site.root / "bounces")
    for path in sorted(data.glob("*.txt")):
        shutil.copy(path, box / "new" / path.name)
    result = digest("inbox", "--maildir", str(box), "--json")
    assert result.exit_code == 0, result.output
    by_name = {line["message"]: line for line in lines(result.output)}
    on_list = set(rows(site.database, "SELECT email FROM deliveries"))
    wrongly = []
    for name, line in by_name.items():
        ours = {r["address"].lower() for r in line["recipients"]} & {e[0] for e in on_list}
        if line["kind"] == "bounce" and ours:
            assert line["action"] in ("suppressed", "counted"), line
        if line["kind"] != "bounce":
            assert line["action"] == "ignored", line
            wrongly += [name] if line["suppressed"] else []
    assert wrongly == []
    # handled ones set aside, the others where they were
    assert (box / ".handled" / "new" / "dsn_14.txt").is_file()
    assert (box / "new" / "groupwise_03.txt").is_file()


# -- a real MTA: Postfix bounces digest's own mail -------------------------------------------

def test_a_postfix_bounce_suppresses_exactly_the_delivery_it_answers(site: Site) -> None:
    with Postfix() as postfix:
        site.extra = ("[delivery]\ntransport = \"smtp\"\nreturn_path = "
                      "\"bounces@bounces.example.net\"\n[smtp]\nhost = \"127.0.0.1\"\n"
                      f"port = {postfix.port}\nsecurity = \"none\"\ntimeout = 10\n")
        site.write()
        site.subscribers("email,name\nnosuchuser@example.org,Nobody\n"
                         "reader@bounces.example.net,Reader\n")
        assert digest("collect").exit_code == 0
        sent = digest("send")
        assert sent.exit_code == 0, sent.output
        # The DSN and the reader's own copy of the newsletter, which is no bounce.
        delivered = postfix.delivered(2)
        assert len(delivered) == 2
        box = postfix.inbox
        copy = next(p for p in delivered if b"report-type=delivery-status" not in p.read_bytes())
        before = copy.read_bytes()

        dry = digest("inbox", "--maildir", str(box), "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        assert suppressions(site) == {} and sorted((box / "new").iterdir()) == delivered

        result = digest("inbox", "--maildir", str(box), "--json")
        assert result.exit_code == 0, result.output
        assert copy.read_bytes() == before  # the unrelated message untouched, where it was
        again = digest("inbox", "--maildir", str(box / ".handled"), "--json")
    found = {line["kind"]: line for line in lines(result.output)}
    bounce = found["bounce"]
    assert bounce["recipients"] == [{"address": "nosuchuser@example.org", "status": "5.1.1",
                                     "hard": True}]
    assert bounce["action"] == "suppressed" and bounce["moved"]
    assert found["other"]["action"] == "ignored" and not found["other"]["moved"]
    assert suppressions(site) == {"nosuchuser@example.org": "bounce"}
    evidence = rows(site.database, "SELECT source FROM suppressions")[0][0]
    assert "5.1.1" in evidence and "edition 1" in evidence
    ledger = dict(rows(site.database, "SELECT email, status FROM deliveries"))
    assert ledger == {"nosuchuser@example.org": "bounced", "reader@bounces.example.net": "sent"}

    assert [line["action"] for line in lines(again.output)] == ["ignored"]
    assert rows(site.database, "SELECT count(*) FROM returns")[0][0] == 1

    status = digest("status", "--json")
    state = json.loads(status.output)
    assert state["editions"][0]["returns"] == {"hard": 1, "soft": 0, "complaints": 0}
    assert state["editions"][0]["deliveries"]["bounced"] == 1
    assert state["subscribers"]["suppressed_by_reason"] == {"bounce": 1}
    assert any("hard bounces" in problem for problem in state["attention"])
    assert status.exit_code == 1


def test_a_forged_or_altered_return_token_changes_nothing(site: Site) -> None:
    sent = mailed(site, ["ann@example.org", "bob@example.org"])
    envelope_token = "a" * 34  # the right length, not signed by us
    box = maildir(site.root / "bounces",
                  dsn(f"bounces+{envelope_token}@news.example.com", "ann@example.org",
                      "5.1.1", "550 5.1.1 user unknown"),
                  # a DSN for an address this list never mailed
                  dsn("bounces@news.example.com", "carol@example.org", "5.1.1",
                      "550 5.1.1 user unknown"))
    result = digest("inbox", "--maildir", str(box), "--json")
    assert result.exit_code == 0, result.output
    assert [line["action"] for line in lines(result.output)] == ["ignored", "ignored"]
    assert suppressions(site) == {}
    assert len(sent) == 2


# -- mailto unsubscribes and complaints --------------------------------------------------------

def _unsubscribe_address(message: bytes) -> str:
    line = next(line for line in message.decode().splitlines()
                if "mailto:" in line)
    return line.split("mailto:")[1].split("?")[0]


def test_a_mail_to_the_mailto_unsubscribes_its_subscriber_whatever_from_it_has(
        site: Site) -> None:
    sent = mailed(site, ["ann@example.org", "bob@example.org"])
    ann = next(m for m in sent if b"To: ann@example.org" in m)
    address = _unsubscribe_address(ann)
    assert address.startswith("unsubscribe+") and "ann" not in address
    request = EmailMessage()
    request["From"] = "Someone Else <other@elsewhere.example>"
    request["To"] = address
    request["Subject"] = "unsubscribe"
    request["Message-ID"] = make_msgid()
    request.set_content("unsubscribe")
    piped = CliRunner().invoke(main, ["inbox", "-", "--json"], input=request.as_bytes())
    assert piped.exit_code == 0, piped.output
    assert lines(piped.output)[0]["action"] == "suppressed"
    assert suppressions(site) == {"ann@example.org": "mailto"}
    kept = list((site.root / "inbox" / ".handled" / "new").iterdir())
    assert len(kept) == 1  # piped in, kept, set aside: nothing lost

    forged = EmailMessage()
    forged["From"] = "ann@example.org"
    forged["To"] = address.replace("unsubscribe+", "unsubscribe+x")
    forged["Subject"] = "unsubscribe"
    forged["Message-ID"] = make_msgid()
    forged.set_content("unsubscribe bob please")
    again = CliRunner().invoke(main, ["inbox", "-", "--json"], input=forged.as_bytes())
    assert lines(again.output)[0]["action"] == "ignored"
    assert suppressions(site) == {"ann@example.org": "mailto"}


def test_a_complaint_suppresses_at_once_and_shows_in_status(site: Site) -> None:
    sent = mailed(site, ["ann@example.org", "bob@example.org"])
    bob = next(m for m in sent if b"To: bob@example.org" in m)
    # Providers redact the recipient: the tokens in the original's headers say who it was.
    redacted = bob.replace(b"To: bob@example.org", b"To: redacted@isp.example")
    box = maildir(site.root / "fbl", arf(redacted),
                  vacation("ann@example.org", "news@example.com"),
                  vacation("carol@example.org", "news@example.com", subject="Hello",
                           auto=None, body="A letter from a reader."))
    result = digest("inbox", "--maildir", str(box), "--json")
    assert result.exit_code == 0, result.output
    kinds = [(line["kind"], line["action"], line["moved"]) for line in lines(result.output)]
    assert kinds == [("complaint", "suppressed", True), ("auto-reply", "ignored", True),
                     ("other", "ignored", False)]
    assert suppressions(site) == {"bob@example.org": "complaint"}
    state = json.loads(digest("status", "--json").output)
    assert state["editions"][0]["returns"]["complaints"] == 1
    assert any("complaints" in problem for problem in state["attention"])
    exported = digest("subscribers", "export")
    assert "1 complaint" in exported.output and "bob@example.org" not in exported.stdout


# -- what is no mail, or too much ------------------------------------------------------------

def test_a_non_mail_a_huge_one_and_an_undecodable_one_are_named_and_left(site: Site) -> None:
    site.write()
    box = maildir(site.root / "box",
                  b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
                  "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n".encode("utf-16"))
    huge = box / "new" / "huge.eml"
    with huge.open("wb") as out:
        out.write(b"From: a@example.org\r\nSubject: big\r\n\r\n")
        out.truncate(50 * 1024 * 1024)
    result = digest("inbox", "--maildir", str(box))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    skipped = [line for line in result.output.splitlines() if "skipped" in line]
    assert any(line.startswith("000.test: skipped: not a mail") for line in skipped)
    assert any(line.startswith("001.test: skipped") for line in skipped)
    assert any(line.startswith("huge.eml: skipped: 52,428,800 bytes") for line in skipped)
    assert sorted(p.name for p in (box / "new").iterdir()) == ["000.test", "001.test",
                                                               "huge.eml"]


def test_a_folder_that_is_not_a_maildir_is_one_line(site: Site) -> None:
    site.write()
    result = digest("inbox", "--maildir", str(site.root / "nothing"))
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a Maildir" in result.output


# -- IMAP: a real Dovecot ---------------------------------------------------------------------

def _imap(site: Site, port: int) -> None:
    site.extra = (RETURNS + f"[inbox]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = "
                            "\"none\"\nusername = \"reader\"\ntimeout = 5\n")
    site.write()


def test_imap_moves_what_it_handled_and_leaves_the_rest_unread(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = mailed(site, ["ann@example.org", "bob@example.org"])
    ann = next(m for m in sent if b"To: ann@example.org" in m)
    with Dovecot() as server:
        _imap(site, server.port)
        monkeypatch.setenv("DIGEST_INBOX_PASSWORD", "secret")
        client = IMAPClient("127.0.0.1", server.port, ssl=False)
        client.login(server.user, server.password)
        letter = vacation("carol@example.org", "news@example.com", subject="Thanks",
                          auto=None, body="A reader writes.")
        for message in (arf(ann), vacation("bob@example.org", "news@example.com"), letter):
            client.append("INBOX", message.as_bytes())
        result = digest("inbox", "--imap", "--json")
        assert result.exit_code == 0, result.output
        assert [line["kind"] for line in lines(result.output)] == ["complaint", "auto-reply",
                                                                   "other"]
        client.select_folder("INBOX")
        left = client.fetch(client.search("ALL"), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        assert [b"Thanks" in value[b"BODY[HEADER.FIELDS (SUBJECT)]"] for value in left.values()] \
            == [True]
        assert all(b"\\Seen" not in value[b"FLAGS"] for value in left.values())
        client.select_folder("digest-handled")
        assert len(client.search("ALL")) == 2
        client.logout()
    assert suppressions(site) == {"ann@example.org": "complaint"}


def test_an_imap_server_down_or_refusing_the_login_is_one_line(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    _imap(site, free_port())
    monkeypatch.setenv("DIGEST_INBOX_PASSWORD", "secret")
    down = digest("inbox", "--imap")
    assert down.exit_code == 1
    assert down.output.strip().count("\n") == 0 and "cannot reach IMAP server" in down.output
    with Dovecot() as server:
        _imap(site, server.port)
        monkeypatch.setenv("DIGEST_INBOX_PASSWORD", "wrong")
        refused = digest("inbox", "--imap")
    assert refused.exit_code == 1
    assert refused.output.strip().count("\n") == 0 and "refused the login" in refused.output


# -- the scheduler ------------------------------------------------------------------------------

def test_the_scheduler_reads_the_inbox_only_when_told(site: Site) -> None:
    from datetime import UTC, datetime

    from digest import config, scheduling

    moment = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    site.write()
    assert [run.job for run in scheduling.next_runs(config.load(site.config), moment)] == [
        "collect", "send", "weekly"]
    site.extra = '[schedule]\ninbox = "10m"\n'
    site.write()
    runs = scheduling.next_runs(config.load(site.config), moment)
    assert runs[-1].job == "inbox" and runs[-1].at == datetime(2026, 11, 27, 6, 10,
                                                               tzinfo=UTC)


def test_smtp_mail_goes_out_with_a_return_path_naming_its_row(site: Site) -> None:
    from servers import SmtpServer

    with SmtpServer() as smtp:
        site.smtp_port = smtp.port
        site.write()
        site.config.write_text(site.config.read_text().replace(
            '[delivery]\ntransport = "smtp"',
            '[delivery]\ntransport = "smtp"\nreturn_path = "bounces@news.example.com"'))
        site.subscribers("email,name\nann@example.org,\nbob@example.org,\n")
        assert digest("collect").exit_code == 0
        assert digest("send").exit_code == 0
        senders = {m.mail_from for m in smtp.messages}
    assert len(senders) == 2
    assert all(s.startswith("bounces+") and s.endswith("@news.example.com") and "ann" not in s
               for s in senders)
