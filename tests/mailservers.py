"""Real mail servers for the inbox tests, each in folders of its own on a loopback port:
Postfix, relaying digest's mail and bouncing unknown users with real DSNs into a Maildir, and
Dovecot, serving an IMAP folder. Both are Debian's packages, started and stopped by the test;
nothing of the system's own mail set-up is touched."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from servers import free_port

POSTFIX = Path("/usr/sbin/postfix")
DOVECOT = Path("/usr/sbin/dovecot")


def _folder(prefix: str) -> Path:
    """A folder of its own that the daemons' unprivileged users can reach (pytest's own
    tmp_path sits under a folder only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stdout.read() if process.stdout else b""
            raise AssertionError(f"{what} exited at start: {said!r}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


class Postfix:
    """Accepts mail for example.org on loopback and bounces unknown users there; every DSN,
    and anything for bounces.example.net, lands in the Maildir `inbox` (see
    ../shared/recipes/postfix-bounces.md)."""

    def __init__(self) -> None:
        self.root = root = _folder("digest-postfix-")
        self.port = free_port()
        self.inbox = root / "mail" / "inbox"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        _installed(POSTFIX, "postfix")
        etc, spool, data, mail = (self.root / name for name in ("etc", "spool", "data", "mail"))
        for folder in (etc, spool, data, mail):
            folder.mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        postfix = pwd.getpwnam("postfix")
        os.chown(data, postfix.pw_uid, postfix.pw_gid)
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"^smtp\s+inet\s.*$",
                        f"127.0.0.1:{self.port} inet n - n - - smtpd", master, count=1,
                        flags=re.MULTILINE)
        (etc / "master.cf").write_text(master)
        (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
myhostname = mx.example.org
mydestination = example.org, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
maillog_file = /dev/stdout
smtputf8_enable = no
virtual_mailbox_domains = bounces.example.net
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
recipient_delimiter = +
""")
        self.process = subprocess.Popen([str(POSTFIX), "-c", str(etc), "start-fg"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.process, "postfix")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.root / "etc"), "stop"],
                       capture_output=True, check=False)
        _ended(self.process, self.root)

    def delivered(self, count: int, timeout: float = 30) -> list[Path]:
        """The messages in the Maildir once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = sorted((self.inbox / "new").glob("*")) if (self.inbox / "new").is_dir() \
                else []
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


class Dovecot:
    """An IMAP server for one user, `reader` with password `secret`, on loopback, plain
    text (it is a test), mail in a Maildir under `root`."""

    user, password = "reader", "secret"

    def __init__(self) -> None:
        self.root = _folder("digest-dovecot-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        _installed(DOVECOT, "dovecot-imapd")
        nobody = pwd.getpwnam("nobody")
        home = self.root / "home"
        (self.root / "run").mkdir(parents=True)
        home.mkdir(parents=True)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        config = self.root / "dovecot.conf"
        config.write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/run
log_path = {self.root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={home}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
        self.process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.process, "dovecot")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process is not None:
            self.process.terminate()
        _ended(self.process, self.root)


def _installed(program: Path, package: str) -> None:
    """A missing server fails its tests, saying what to install: never a silent skip."""
    if not program.exists():
        raise RuntimeError(f"{program} is missing: apt-get install {package} (.ci/run does)")


def _ended(process: subprocess.Popen[bytes] | None, root: Path) -> None:
    """Wait for a server told to stop (killed after 20 s), then remove its folders."""
    if process is not None:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(root, ignore_errors=True)
