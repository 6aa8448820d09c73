"""A real name server on loopback for the tests: dnslib's UDP server, answering from records a
test puts in, with faults (no reply, SERVFAIL) switched on per name.

It answers for any name it holds and NXDOMAIN for any other, like an authoritative server for
the whole tree; `digest check` reaches it through `check.nameserver` and `check.port`.
"""

from __future__ import annotations

import collections
import threading
from types import TracebackType
from typing import Any, Self

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import DNSLogger, DNSServer

LOOPBACK = "127.0.0.1"


class NameServer:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], list[Any]] = collections.defaultdict(list)
        self._silent: set[str] = set()
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self.queries: collections.Counter[tuple[str, str]] = collections.Counter()
        # No log lines: the tests read what was asked from `queries`.
        self._server = DNSServer(self, address=LOOPBACK, port=0,
                                 logger=DNSLogger(log="-recv,-send,-request,-reply,-truncated,"
                                                  "-error,-data"))
        self.port: int = self._server.server.server_address[1]

    def __enter__(self) -> Self:
        # Polled often, so that stopping it at the end of a test takes no half second.
        threading.Thread(target=self._server.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.stop()
        self._server.server.server_close()

    @property
    def config(self) -> str:
        """The digest.toml lines that send `digest check` here."""
        return f'[check]\nnameserver = "{LOOPBACK}"\nport = {self.port}\ntimeout = 1\n'

    def txt(self, name: str, *values: str) -> Self:
        """One TXT record per value, cut into strings of 255 characters as zone files do."""
        for value in values:
            strings = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
            self._add(name, "TXT", TXT(strings))
        return self

    def address(self, name: str, *addresses: str) -> Self:
        for address in addresses:
            self._add(name, "AAAA" if ":" in address else "A",
                      AAAA(address) if ":" in address else A(address))
        return self

    def mx(self, name: str, *hosts: str) -> Self:
        for preference, host in enumerate(hosts, 10):
            self._add(name, "MX", MX(host, preference))
        return self

    def remove(self, name: str) -> Self:
        with self._lock:
            for key in [key for key in self._records if key[0] == _key(name)]:
                del self._records[key]
        return self

    def silence(self, name: str | None = None) -> Self:
        """Never answer queries for `name` (for every name when None): the client times out."""
        self._silent.add(_key(name) if name else "*")
        return self

    def fail(self, name: str) -> Self:
        """Answer queries for `name` with SERVFAIL."""
        self._failing.add(_key(name))
        return self

    def asked(self, name: str) -> int:
        return sum(count for (asked, _), count in self.queries.items() if asked == _key(name))

    def _add(self, name: str, kind: str, data: Any) -> None:
        with self._lock:
            self._records[(_key(name), kind)].append(data)

    # dnslib's resolver interface, called on the server's thread for each query.
    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name, kind = _key(str(request.q.qname)), QTYPE[request.q.qtype]
        with self._lock:
            self.queries[(name, kind)] += 1
            if "*" in self._silent or name in self._silent:
                raise DNSError("silenced")  # dnslib sends no reply for this
            reply = request.reply()
            if name in self._failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            for data in self._records.get((name, kind), []):
                reply.add_answer(RR(request.q.qname, getattr(QTYPE, kind), rdata=data, ttl=60))
            if not any(key[0] == name for key in self._records):
                reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _key(name: str) -> str:
    return name.lower().rstrip(".")
