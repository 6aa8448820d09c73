"""The command line as a new operator meets it: one clear line for each mistake, never a
traceback, the common options anywhere, and log lines in the documented format."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FeedServer, SmtpServer
from support import Item, Site, digest, rows, rss
from test_scheduler import SCHEDULER, logged, running, until

pytestmark = pytest.mark.backends

ITEMS = (Item("Harbour opens", "https://example.com/harbour", "h1", "Boats return."),
         Item("Bridge repaired", "https://example.com/bridge", "h2", "Traffic flows."))
SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\n"
# The documented log line: time (UTC, milliseconds), level, job, message, facts.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (DEBUG|INFO|WARNING|ERROR)"
                      r" (\S+) ")


def setup(site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    web.serve("/feed.xml", rss(*ITEMS))
    site.feeds = [("News", web.url("/feed.xml"))]
    site.smtp_port = smtp.port
    site.write()
    site.subscribers(SUBSCRIBERS)


@pytest.mark.parametrize("command", [("render", "--out"), ("subscribers", "export", "--out")])
def test_writing_into_a_missing_folder_is_one_line(site: Site, web: FeedServer,
                                                   smtp: SmtpServer,
                                                   command: tuple[str, ...]) -> None:
    setup(site, web, smtp)
    digest("collect")
    target = site.root / "missing" / "x.out"
    result = digest(*command, str(target))
    assert result.exit_code == 2
    assert result.output == f"error: {target}: cannot write: No such file or directory\n"


def test_render_out_dash_writes_to_standard_output(site: Site, web: FeedServer,
                                                   smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    result = digest("render", "--out", "-", "--text")
    assert result.exit_code == 0
    assert "Harbour opens" in result.stdout and "Bridge repaired" in result.stdout
    assert "wrote standard output" in result.stderr
    assert not (site.root / "-").exists()


@pytest.mark.parametrize("command", [("serve", "--port", "99999"), ("sink", "--port", "70000"),
                                     ("preview", "--port", "65536")])
def test_a_port_out_of_range_is_a_usage_error(site: Site, command: tuple[str, ...]) -> None:
    result = digest(*command)
    assert result.exit_code == 2
    assert f"Invalid value for '--port': {command[-1]} is not in the range 1<=x<=65535" \
        in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "preview"])
def test_a_port_in_use_is_one_line_and_nothing_claims_to_serve(
        site: Site, taken: int, command: str) -> None:
    site.write()
    result = subprocess.run([sys.executable, "-m", "digest", command, "--port", str(taken)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{taken}: Address already in use\n"
    assert result.stdout == ""


def test_common_options_are_accepted_after_the_command(site: Site, web: FeedServer,
                                                       smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    elsewhere = site.root / "conf" / "digest.toml"
    elsewhere.parent.mkdir()
    site.config.rename(elsewhere)
    (site.root / "subscribers.csv").rename(elsewhere.parent / "subscribers.csv")
    assert digest("collect", "--config", str(elsewhere)).exit_code == 0
    result = digest("status", "--config", str(elsewhere), "--json")
    assert result.exit_code == 0, result.output
    assert '"name": "News"' in result.stdout
    assert digest("subscribers", "check", "--config", str(elsewhere)).exit_code == 0
    assert digest("subscribers", "--config", str(elsewhere), "check").exit_code == 0
    assert digest("send", "--log-level", "debug", "--config", str(elsewhere)).exit_code == 0
    assert smtp.recipients() == {"ann@example.com": 1, "bob@example.org": 1}
    assert not (site.root / "state").exists()  # every run used the named file's state


def test_cli_log_lines_follow_the_documented_format_and_the_last_level_wins(
        site: Site, web: FeedServer, smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    site.subscribers(SUBSCRIBERS + "not-an-address,Nobody\n")
    result = digest("status")
    logged = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(logged) == 1
    match = LOG_LINE.match(logged[0])
    assert match and match.groups() == ("WARNING", "status"), logged[0]
    assert logged[0].endswith("subscribers.csv:4: skipped: not-an-address: An email address "
                              "must have an @-sign.")
    quiet = digest("--log-level", "debug", "status", "--log-level", "error")
    assert "skipped" not in quiet.stderr


def test_unsubscribe_suppresses_the_good_addresses_and_names_the_bad_one(site: Site) -> None:
    site.write()
    result = digest("subscribers", "unsubscribe", "a@x.com", "not-an-address", "b@y.com")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "not-an-address: not an address, not suppressed: An email address must have an "
        "@-sign.",
        "2 addresses suppressed; 1 not an address (see above)"]
    assert rows(site.database, "SELECT email, source FROM suppressions ORDER BY email") == [
        ("a@x.com", "operator"), ("b@y.com", "operator")]


def test_resend_to_an_address_ends_with_the_summary(site: Site, web: FeedServer,
                                                    smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    digest("collect")
    digest("send")
    result = digest("resend", "1", "--to", "carol@example.net")
    assert result.exit_code == 0
    assert "no new edition asked for" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == "edition 1: 1 deliveries back to pending (carol@example.net)"
    assert lines[-1].startswith("sent 1, deferred 0, failed 0, unknown 0; ")
    assert smtp.recipients()["carol@example.net"] == 1


@pytest.mark.parametrize("command", [("status",), ("collect",), ("check",),
                                     ("subscribers", "check")])
def test_without_a_configuration_file_commands_say_once_what_they_use(
        site: Site, command: tuple[str, ...]) -> None:
    result = digest(*command)
    said = [line for line in result.output.splitlines() if "no configuration file" in line]
    assert said == [f"no configuration file (--config, $DIGEST_CONFIG or ./digest.toml): "
                    f"built-in defaults, the bundled sample feed, subscribers "
                    f"{Path(__file__).parents[1] / 'subscribers.csv'}, mail into the Maildir "
                    f"{site.root / 'outbox'}; state in {site.root / 'state'}"]


def test_once_logs_each_line_under_its_job(site: Site, web: FeedServer,
                                           smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    result = subprocess.run([sys.executable, str(SCHEDULER), "--config", str(site.config),
                             "--once"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    jobs = [LOG_LINE.match(line) for line in result.stderr.splitlines()]
    assert all(jobs), result.stderr
    assert [(match[1], match[2]) for match in jobs if match] == [
        ("INFO", "collect"), ("INFO", "send"), ("INFO", "send")]
    assert " INFO send delivered edition=1 sent=2" in result.stderr


@pytest.mark.backends("sqlite")  # a SQLite file that cannot be opened
def test_a_failed_job_is_logged_under_its_own_name(site: Site, web: FeedServer,
                                                   smtp: SmtpServer) -> None:
    setup(site, web, smtp)
    (site.root / "state" / "digest.db").mkdir(parents=True)  # the database cannot be opened
    with running(site) as scheduler:
        until(lambda: logged(scheduler, "job failed"), what="a failed run")
        assert scheduler.stop() == 0
    failed = logged(scheduler, "job failed")
    assert [(line["job"], line["job_id"]) for line in failed] == [("start", "start")]
