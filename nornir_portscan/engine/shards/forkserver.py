"""Shard workers forked from a small process, not from a big nornir run.

A nornir run plans its scans after it has built its inventory and its runner has queued a
task for every host: at 16,382 hosts that process holds about 100 MiB. Workers forked
from it inherit that heap copy-on-write, and a worker's own allocations land in the free
slots of the inherited arenas, copying each page they touch: each worker ended a run with
about 17 MiB of its own, where ``scan``'s workers end with 6 MiB. Forking from that
process also forks from a process with many threads, where a lock another thread holds
at the fork stays held in the child for good.

So ``run`` and ``monitor`` start a fork server before they read the inventory: a child
that has only the imports, one thread, and waits on a socket. A sharded plan is sent to
it (pickled: the plan is data), it forks the plan's workers with ``workers.fork_workers``,
as ``run_sharded`` does without it, and hands each worker's pipe back over the socket
(``SCM_RIGHTS``) with a pidfd to stop it by. The outcomes still flow from each worker
straight to the process that asked, through its pipe.

Nothing else changes for the caller: ``run_sharded`` asks the server when one serves
(``current_fork_server``), and forks itself otherwise (``scan``, a user's runbook, or a
server that is gone).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..core.errors import EngineError
from ..io.limits import usable_cores

if TYPE_CHECKING:
    from .workers import WorkRequest

_LENGTH = struct.Struct("!I")
_server: ForkServer | None = None


class ServedWorker:
    """A worker the server forked: the read end of its pipe, and a pidfd.

    The worker is the server's child, reaped there; a pidfd names this very process,
    so stopping it can never signal another process that reused its pid."""

    def __init__(self, fd: int, pidfd: int) -> None:
        self.fd, self.pidfd = fd, pidfd

    def stop(self) -> None:
        """End it if it still runs."""
        with contextlib.suppress(OSError):  # already gone
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
        for fd in (self.fd, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _serve(sock: socket.socket) -> None:  # pragma: no cover - runs in the server
    """The server's loop: one request at a time, until the asking process closes the
    socket (it ended, whichever way)."""
    from .workers import fork_workers

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the asking process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    running: set[int] = set()  # forked, not reaped: these pids are still its workers
    while True:
        # workers end on their own; reaped here, while the server waits for the next
        # request (a worker's pidfd, held by the asking process, outlives its reaping)
        while running:
            pid = os.waitpid(-1, os.WNOHANG)[0]
            if pid == 0:
                break
            running.discard(pid)
        if not select.select([sock], [], [], 1.0)[0]:
            continue
        header = _recv_exact(sock, _LENGTH.size)
        body = None if header is None else _recv_exact(sock, _LENGTH.unpack(header)[0])
        if body is None:
            # The asking process ended, however it did (a SIGKILL, an interrupt that left
            # a plan's thread unfinished): its workers go with it. A worker with nothing
            # decided would not write, and so not learn its reader is gone, until its
            # probes time out.
            for pid in running:
                os.kill(pid, signal.SIGTERM)
            for pid in running:  # reaped here: their CPU time counts in the run's
                os.waitpid(pid, 0)
            os._exit(0)
        try:
            workers = fork_workers(pickle.loads(body), in_child=sock.close)
        except Exception as exc:  # the asking process raises it
            text = f"{type(exc).__name__}: {exc}".encode()
            sock.sendall(b"E" + _LENGTH.pack(len(text)) + text)
            continue
        running.update(worker.pid for worker in workers)
        for worker in workers:
            pidfd = os.pidfd_open(worker.pid)  # not reaped yet: the pid is still this one
            socket.send_fds(sock, [b"W"], [worker.fd, pidfd])
            os.close(worker.fd)
            os.close(pidfd)


class ForkServer:
    """The asking side: a socket to the server, one request at a time."""

    def __init__(self) -> None:
        from . import workers  # noqa: F401  imported once, here, not by every request

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the server
            ours.close()
            try:
                _serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self.owner = pid, os.getpid()
        self._sock = ours
        self._lock = threading.Lock()  # a run's plans may shard from several threads
        #: an exchange broke off midway (the server died, an interrupt): the socket may
        #: hold a reply no request will read, so later plans fork their own workers
        self._broken = False

    def start(self, request: WorkRequest) -> list[ServedWorker] | None:
        """The request's workers, forked by the server; None when the server is gone (the
        caller forks them itself)."""
        body = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        workers: list[ServedWorker] = []
        with self._lock:
            if self._broken:
                return None
            try:
                self._sock.sendall(_LENGTH.pack(len(body)) + body)
                for _ in range(request.layout.count):
                    kind, fds, _flags, _addr = socket.recv_fds(self._sock, 1, 2)
                    if kind == b"W" and len(fds) == 2:
                        workers.append(ServedWorker(fds[0], fds[1]))
                        continue
                    for fd in fds:
                        os.close(fd)
                    if kind != b"E":
                        raise OSError("the fork server closed its socket")
                    size = _recv_exact(self._sock, _LENGTH.size)
                    text = _recv_exact(self._sock, _LENGTH.unpack(size)[0]) if size else None
                    raise EngineError(f"cannot start the scan's workers: "
                                      f"{(text or b'?').decode(errors='replace')}")
            except OSError:
                self._broken = True
                for worker in workers:
                    worker.stop()
                return None
            except EngineError:  # the server's answer, read whole: the exchange is over
                raise
            except BaseException:
                self._broken = True
                for worker in workers:
                    worker.stop()
                raise
        return workers

    def close(self) -> None:
        """Close the socket; the server sees it and exits, and is reaped here."""
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def current_fork_server() -> ForkServer | None:
    """The server ``serving()`` started in this process, if any (a forked child of this
    process inherits the variable, never the right to use the socket)."""
    return _server if _server is not None and _server.owner == os.getpid() else None


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """A fork server for the duration of the block, when this machine shards at all (two
    cores or more). Start it early: it forks its workers as small as this process is now.
    Nested blocks share the outer one's server."""
    global _server
    if _server is not None or usable_cores() < 2:
        yield
        return
    _server = ForkServer()
    try:
        yield
    finally:
        server, _server = _server, None
        server.close()
