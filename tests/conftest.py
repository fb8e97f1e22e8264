"""Shared fixtures: real loopback listeners and closed ports, and the namespace lab.

Network rule for the whole suite: packets go to 127.0.0.0/8 and ::1 only, or to
addresses inside a namespace a test built itself (see ``netns.py``).
"""

from __future__ import annotations

import select
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import NetNS, NetNSUnavailable, build_lab
from tiers import (  # noqa: F401  (pytest finds the hooks by name here)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_call,
    pytest_runtest_setup,
)


class BannerServer:
    """A listener on a thread: accepts, sends ``banner`` (if any), closes."""

    def __init__(self, sock: socket.socket, banner: bytes | None) -> None:
        self.sock = sock
        self.banner = banner
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                if self.banner is not None:
                    conn.sendall(self.banner)
            except OSError:
                pass
            finally:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Callable[..., int]]:
    """``listener(host="127.0.0.1", banner=None, serve=False)`` -> port of a real listener.

    Without ``serve`` the kernel completes handshakes into the backlog (an open port);
    with ``serve`` (or a banner) a thread accepts and sends the banner on each accept.
    """
    socks: list[socket.socket] = []
    servers: list[BannerServer] = []

    def make(host: str = "127.0.0.1", banner: bytes | None = None, serve: bool = False) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sock.listen(1024)
        port: int = sock.getsockname()[1]
        if banner is not None or serve:
            servers.append(BannerServer(sock, banner))
        else:
            socks.append(sock)
        return port

    yield make
    for server in servers:
        server.stop()
    for sock in socks:
        sock.close()


@pytest.fixture
def closed_port() -> Iterator[Callable[..., int]]:
    """``closed_port(host="127.0.0.1")`` -> a port that is bound but not listening.

    Keeping the socket bound for the whole test means no other process can start
    listening there, and connects to it are refused with a reset.
    """
    socks: list[socket.socket] = []

    def make(host: str = "127.0.0.1") -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
        socks.append(sock)
        port: int = sock.getsockname()[1]
        return port

    yield make
    for sock in socks:
        sock.close()


@pytest.fixture(scope="session")
def lab() -> Iterator[NetNS]:
    """The namespace lab (layout in ``netns.build_lab``); skipped where it cannot be built."""
    try:
        ns = build_lab()
    except NetNSUnavailable as exc:
        pytest.skip(f"namespace lab unavailable: {exc}")
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def make_netns() -> Iterator[Callable[[], NetNS]]:
    """A factory of bare namespaces (only ``lo``), each removed after the test."""
    made: list[NetNS] = []

    def make() -> NetNS:
        try:
            ns = NetNS("t")
        except NetNSUnavailable as exc:
            pytest.skip(f"network namespace unavailable: {exc}")
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.destroy()


@pytest.fixture
def dns_netns(make_netns: Callable[[], NetNS]) -> Iterator[NetNS]:
    """A namespace whose /etc/hosts (``ip netns exec`` bind-mounts /etc/netns/NAME/hosts)
    names two loopback addresses ``multi.test`` and ::1 only ``six.test``."""
    ns = make_netns()
    base = Path("/etc/netns")
    made_base = not base.exists()
    conf = base / ns.name
    conf.mkdir(parents=True)
    try:
        (conf / "hosts").write_text("127.0.0.2 multi.test\n127.0.0.3 multi.test\n"
                                    "::1 six.test\n", encoding="ascii")
        yield ns
    finally:
        shutil.rmtree(conf, ignore_errors=True)
        if made_base:
            try:
                base.rmdir()
            except OSError:
                pass  # something else put a namespace's files there meanwhile
