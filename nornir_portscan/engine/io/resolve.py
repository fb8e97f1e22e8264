"""Name resolution off the readiness loop: many lookups in flight on one c-ares channel.

``getaddrinfo`` blocks a thread per lookup: 8 threads behind a resolver 20 ms away made
names cost twice the scan, and behind a silent one each held its thread for 2 x 5 s, past
any signal. c-ares (through pycares) sends every lookup at once from its own event thread
and reads what the system resolver reads: /etc/hosts, resolv.conf's nameservers, search
domains and ndots. What it does not use: NSS modules (mDNS, LDAP, nss-myhostname, ...).

The scheduler only looks at the futures handed out here; what an answer means (its
reason, how long to wait) is ``engine/core/names.py``'s.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from ..core.names import TRIES, TRY_TIMEOUT, Lookup, LookupStatus


class Resolver:
    """One c-ares channel per process (made on first use, again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channel: Any = None
        self._pid = 0
        self._servers = ""
        self._status: dict[int, LookupStatus] = {}

    def _ready(self) -> Any:
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                # loaded on the first name: a scan of addresses never pays for it
                import pycares

                errno = pycares.errno
                self._status = {errno.ARES_ENOTFOUND: LookupStatus.NO_SUCH_NAME,
                                errno.ARES_ENODATA: LookupStatus.NO_ADDRESS,
                                errno.ARES_ETIMEOUT: LookupStatus.TIMEOUT}
                self._channel = pycares.Channel(timeout=TRY_TIMEOUT, tries=TRIES)
                self._pid = os.getpid()
                try:
                    self._servers = ", ".join(self._channel.servers)
                except Exception:  # no nameserver configured: c-ares asks its default
                    self._servers = ""
            return self._channel

    def __call__(self, name: str) -> Future[Lookup]:
        """Start resolving ``name``; the future gives its ``Lookup`` (and never raises)."""
        fut: Future[Lookup] = Future()
        servers = ""

        def done(result: Any, error: int | None) -> None:
            if error:
                status = self._status.get(error, LookupStatus.FAILED)
                fut.set_result(Lookup([], status, servers))
                return
            fut.set_result(_answered(((node.family, node.addr[0]) for node in result.nodes),
                                     servers))

        if name.rstrip(".").lower() == "localhost":
            # c-ares makes up ::1 for localhost when /etc/hosts gives only 127.0.0.1; the
            # system's answer (local, no query sent) is what scans of localhost always had
            fut.set_result(_system_lookup(name))
            return fut
        try:
            channel = self._ready()
            servers = self._servers
            channel.getaddrinfo(name, None, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM,
                                callback=done)
        except Exception:  # a name c-ares will not take, a channel it could not make
            if not fut.done():
                fut.set_result(Lookup([], LookupStatus.FAILED, servers))
        return fut

    def close(self) -> None:
        """End every lookup under way (their futures give FAILED): before the interpreter
        goes, so c-ares's thread calls no Python code into a finished interpreter."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None and self._pid == os.getpid():
            try:
                channel.cancel()
                channel.close()
            except Exception:
                pass


def _system_lookup(name: str) -> Lookup:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return Lookup([], LookupStatus.NO_SUCH_NAME, "")
    return _answered(((family, sockaddr[0]) for family, _, _, _, sockaddr in infos), "")


def _answered(answers: Iterable[tuple[int, Any]], servers: str) -> Lookup:
    """A lookup's (ip version, address) pairs, in the order given, each once, without an
    IPv6 zone; NO_ADDRESS when none is IPv4 or IPv6."""
    seen: dict[tuple[int, str], None] = {}
    for family, addr in answers:
        text = addr.decode("ascii") if isinstance(addr, bytes) else str(addr)
        if family == socket.AF_INET:
            seen.setdefault((4, text), None)
        elif family == socket.AF_INET6:
            seen.setdefault((6, text.split("%")[0]), None)
    return Lookup(list(seen), LookupStatus.ANSWERED if seen else LookupStatus.NO_ADDRESS,
                  servers)


resolve = Resolver()
atexit.register(resolve.close)
