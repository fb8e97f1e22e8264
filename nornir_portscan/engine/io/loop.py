"""The readiness loop: the only code that touches probe sockets.

One epoll set, non-blocking connects, each outcome read by a second connect(). Every
decision is the scheduler's; this loop only does what it is told and reports
what the kernel said, with the time it said it.
"""

from __future__ import annotations

import errno
import heapq
import os
import resource
import select
import socket
import struct
from _socket import socket as _raw_socket  # skips socket.socket's Python-level __init__
from collections.abc import Callable, Iterator
from time import monotonic
from typing import cast

from ..core.hold import hold_deadline, reset_seen
from ..core.intake import OutcomeItem
from ..core.outcome import ProbeOutcome
from ..core.scheduler import Scheduler
from ..core.work import Job, Probe
from .limits import FD_RESERVE

_LINGER_RST = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT left behind
_EINPROGRESS, _EALREADY = errno.EINPROGRESS, errno.EALREADY
_EADDRNOTAVAIL = errno.EADDRNOTAVAIL
_SOL_SOCKET, _SO_ERROR, _SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
_STREAM_NB = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_EPOLLOUT, _EPOLLIN = select.EPOLLOUT, select.EPOLLIN
#: A held socket (``_start_banner``): data, the peer's FIN, or its reset (HUP/ERR always).
_WATCH_HELD = select.EPOLLIN | select.EPOLLRDHUP
#: Edge-triggered: a parked socket (unconnected, so "writable") must not wake the loop
#: again and again; every answer to a connect is a new edge.
_WATCH_CONNECT = select.EPOLLOUT | select.EPOLLET
_EISCONN = errno.EISCONN
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_SHUT_RDWR = socket.SHUT_RDWR
_BANNER_BYTES = 512
MAX_EVENTS = 4096
#: Outcomes handed out at once: one list per turn of the loop, but a dead host's
#: thousand ports must not become one huge list (and pickle) in memory.
MAX_BATCH = 2048
#: Connects started between two polls. Small bursts keep answers flowing back while a
#: large window fills, so measured RTTs are the network's, not the length of our burst.
LAUNCH_BURST = 128


#: Parked sockets kept at most: enough for a burst of timeouts to feed the next bursts.
MAX_PARKED = 1024


def park_capacity(in_flight_limit: int) -> int:
    """Sockets that may wait parked: only descriptors the probes in flight cannot need."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_PARKED
    return max(0, min(MAX_PARKED, soft - FD_RESERVE - in_flight_limit))


def decode_banner(data: bytes) -> str | None:
    """A safe, short, printable form of what a service sent first."""
    text = data.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() or ch in "\t" else " " for ch in text)
    text = " ".join(text.split())[:200]
    return text or None


def is_self_connect(sock: _raw_socket, probe: Probe) -> bool:
    """A connect to a local port inside the ephemeral range can pick that port as its source."""
    try:
        local = sock.getsockname()
    except OSError:
        return False
    return bool(local[1] == probe.port and local[0] == probe.host.addr)


class ReadinessLoop:
    """Runs a scheduler's probes until it is done (or, as a service, forever)."""

    def __init__(self, sched: Scheduler, wake_fd: int | None = None,
                 on_wake: Callable[[], None] | None = None) -> None:
        self.sched = sched
        self.wake_fd = wake_fd
        self.on_wake = on_wake
        self.inflight: dict[int, Probe] = {}
        self.banners: dict[int, Probe] = {}
        #: The socket of each probe in ``inflight`` or ``banners``: the loop's own map (core's
        #: probes hold no I/O object).
        self.sockets: dict[Probe, _raw_socket] = {}
        self.banner_heap: list[tuple[float, int, Probe]] = []
        self.ep: select.epoll | None = None
        self.routable: dict[str, bool] = {}
        self.spare: dict[int, _raw_socket] = {}  # one unconnected socket per family, for reuse
        self.parked: dict[int, list[_raw_socket]] = {_AF_INET: [], _AF_INET6: []}
        self.park_cap = 0
        self.sockets_opened = 0  # far fewer than probes: refused and timed-out sockets are reused

    def run(self) -> Iterator[tuple[Job, ProbeOutcome | None]]:
        """Outcomes one by one, each with its job; (job, None) marks a job's end."""
        for batch in self.run_batches():
            yield from cast("list[tuple[Job, ProbeOutcome | None]]", batch)

    def run_batches(self, runs: bool = False) -> Iterator[list[tuple[Job, OutcomeItem]]]:
        """Like ``run``, a turn of the loop at a time: per-outcome hand-offs cost as much
        as the probes on a fast network. With ``runs``, a down host's ports come as one
        ``PortRun`` (see ``Scheduler.drain_some``); without, every item is an outcome."""
        sched = self.sched
        ep = self.ep = select.epoll()
        inflight = self.inflight
        banners = self.banners
        sockets = self.sockets
        if self.wake_fd is not None:
            ep.register(self.wake_fd, _EPOLLIN)
        register = ep.register
        poll = ep.poll
        new_socket = _raw_socket
        next_probes = sched.next_probes
        on_sent = sched.on_sent
        stamp = sched.flight.stamp  # a plain function: Probe.sent is flight control's
        on_failed = sched.on_failed_connects
        spare = self.spare
        parked = self.parked  # unconnected sockets still in the epoll set, for reuse
        self.park_cap = park_capacity(sched.cwnd.limit)
        try:
            while not sched.done or inflight or banners:
                now = monotonic()
                # 1. start connects, a burst at a time, as the scheduler allows
                failed: list[tuple[Probe, int, float]] = []
                probes = next_probes(now, LAUNCH_BURST)
                for probe in probes:
                    host = probe.host
                    family = host.family
                    stack = parked[family]
                    registered = bool(stack)
                    if registered:
                        sock = stack.pop()
                    else:
                        unused = spare.pop(family, None)
                        if unused is None:
                            try:
                                unused = new_socket(family, _STREAM_NB)
                                self.sockets_opened += 1
                            except OSError as exc:
                                sched.unsend(probes[probes.index(probe) + 1:])
                                sched.on_local_error(probe, exc.errno or errno.EMFILE, now)
                                break
                        sock = unused
                    sent = monotonic()
                    stamp(probe, sent)
                    addr = ((host.addr, probe.port) if family == _AF_INET
                            else (host.addr, probe.port, *host.sockaddr[2:]))
                    err = sock.connect_ex(addr)
                    if err == _EINPROGRESS:
                        # On loopback (and local addresses) the kernel usually handles the SYN
                        # and its answer inside connect() itself. A second connect() reports
                        # that verdict (0 once connected, the error once refused) or EALREADY
                        # while the handshake is still under way; after an error it also
                        # resets the socket, so the next probe can reuse it.
                        err = sock.connect_ex(addr)
                        if err == _EALREADY or err == _EINPROGRESS:
                            # an ICMP error that came while connect() held the socket is
                            # only a "soft" error: the socket still waits, SO_ERROR has it
                            err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                            if not err:  # really pending: epoll tells the rest
                                fd = sock.fileno()
                                sockets[probe] = sock
                                inflight[fd] = probe
                                if not registered:
                                    register(fd, _WATCH_CONNECT)
                                on_sent(probe, sent)
                                continue
                            failed.append((probe, err, monotonic()))
                            self._abandon(sock, registered)  # stop its SYNs, keep the socket
                            continue
                    elif registered and (err == _EISCONN or err == _EALREADY):
                        # a parked socket that was not clean after all (it connected in
                        # the moment before its probe timed out): the probe gets a new one
                        sock.close()
                        sched.unsend([probe])
                        continue
                    if err:
                        # refused, unreachable, or a local shortage before any SYN left: the
                        # socket is unconnected again, and reusing it saves a socket() and
                        # a close() (about a third of the kernel's cost of a closed port)
                        if err == _EADDRNOTAVAIL and not self._routable(probe):
                            err = errno.ENETUNREACH
                        failed.append((probe, err, monotonic()))
                        # self._keep(sock, registered), inlined on the hot path; a parked
                        # socket goes back where it came from, so there is room for it
                        if registered:
                            stack.append(sock)
                        elif family in spare:
                            sock.close()
                        else:
                            spare[family] = sock
                        continue
                    self._connected(probe, sock, monotonic(), registered)
                if failed:
                    on_failed(failed)
                if sched.cancelled:
                    self._close_cancelled()
                # 2. wait for sockets, deadlines, or a wake-up
                timeout = sched.poll_timeout(now)
                if self.banner_heap:
                    bt = max(0.0, self.banner_heap[0][0] - now)
                    timeout = bt if timeout is None else min(timeout, bt)
                if sched.done and not inflight and not banners:
                    break  # the outcomes decided so far are drained below
                if sched.outcomes:
                    timeout = 0.0  # outcomes decided without a socket: hand them out first
                events = poll(-1 if timeout is None else timeout, MAX_EVENTS)
                now = monotonic()
                answered: list[tuple[Probe, int, float]] = []
                for fd, _ in events:
                    waiting = inflight.get(fd)
                    if waiting is not None:
                        sock = sockets[waiting]
                        host = waiting.host
                        # the same second connect() as above: unlike SO_ERROR it tells
                        # "connected" (0) from "still waiting" (EALREADY), and it resets a
                        # failed socket for reuse
                        err = sock.connect_ex((host.addr, waiting.port, *host.sockaddr[2:]))
                        still_trying = err == _EALREADY
                        if still_trying:
                            err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)  # a soft ICMP error?
                            if not err:
                                continue  # an edge left over from the socket's previous probe
                        del inflight[fd]
                        del sockets[waiting]
                        if err and err != _EISCONN:
                            answered.append((waiting, err, now))
                            if still_trying:
                                self._abandon(sock)
                            else:
                                self._keep(sock)
                        else:
                            self._connected(waiting, sock, now, registered=True)
                    elif fd in banners:
                        self._read_banner(banners.pop(fd))
                    elif fd == self.wake_fd:
                        os.read(fd, 4096)
                        if self.on_wake is not None:
                            self.on_wake()
                if answered:
                    on_failed(answered)
                if sched.cancelled:
                    self._close_cancelled()
                # 3. time out probes only once every ready event has been read,
                #    so a late-noticed answer is never taken for silence
                if len(events) < MAX_EVENTS:
                    for probe in sched.expire(now):
                        held = sockets.pop(probe, None)
                        if held is not None:
                            inflight.pop(held.fileno(), None)
                            self._abandon(held)
                    self._expire_banners(now)
                    if sched.cancelled:
                        self._close_cancelled()
                while sched.outcomes:
                    yield sched.drain_some(MAX_BATCH, runs)
            # outcomes decided without any socket (unresolved names, out-of-scope addresses)
            while sched.outcomes:
                yield sched.drain_some(MAX_BATCH, runs)
        finally:
            for sock in [*spare.values(), *parked[_AF_INET], *parked[_AF_INET6]]:
                sock.close()
            spare.clear()
            for stack in parked.values():
                stack.clear()
            for sock in sockets.values():
                sock.close()
            sockets.clear()
            inflight.clear()
            banners.clear()
            ep.close()

    def _room_for(self, family: int, registered: bool) -> bool:
        """Whether an unconnected socket may be kept: parked sockets (in the epoll set) up
        to ``park_cap``, and one unregistered spare per family."""
        if registered:
            return len(self.parked[family]) < self.park_cap
        return family not in self.spare

    def _keep(self, sock: _raw_socket, registered: bool = True) -> None:
        """Keep an unconnected socket for a later probe, if there is room."""
        family = sock.family
        if not self._room_for(family, registered):
            sock.close()
        elif registered:
            self.parked[family].append(sock)
        else:
            self.spare[family] = sock

    def _abandon(self, sock: _raw_socket, registered: bool = True) -> None:
        """A probe timed out (or its answer came elsewhere): stop its connect and, if
        there is room, keep the socket.

        shutdown() of a socket still sending SYNs drops the attempt (nothing goes on
        the wire, as with close()) and leaves the socket unconnected and in the epoll
        set: the next probe saves socket(), epoll_ctl() and close(). If the answer
        came in the meantime, shutdown() fails or the next connect() says EISCONN,
        and the socket is closed instead."""
        if not self._room_for(sock.family, registered):
            sock.close()  # no shutdown() for a socket that cannot be kept
            return
        try:
            sock.shutdown(_SHUT_RDWR)
        except OSError:
            sock.close()
            return
        self._keep(sock, registered)

    def _close_cancelled(self) -> None:
        """Stop tries made pointless by an answer to another try of the same port."""
        for probe in self.sched.take_cancelled():
            sock = self.sockets.pop(probe, None)
            if sock is not None:
                self.inflight.pop(sock.fileno(), None)
                self._abandon(sock)

    def _routable(self, probe: Probe) -> bool:
        """Whether this machine has a source address and route for the host at all.

        EADDRNOTAVAIL means either "no ephemeral port free right now" (wait and retry)
        or "no address of this family here" (IPv6 switched off): a UDP connect, which
        only looks up the route and sends nothing, tells the two apart."""
        host = probe.host
        known = self.routable.get(host.addr)
        if known is None:
            try:
                with socket.socket(host.family, socket.SOCK_DGRAM) as udp:
                    udp.connect((host.addr, probe.port, *host.sockaddr[2:]))
                known = True
            except OSError:
                known = False
            if len(self.routable) > 4096:
                self.routable.clear()
            self.routable[host.addr] = known
        return known

    def _connected(self, probe: Probe, sock: _raw_socket, now: float,
                   registered: bool = False) -> None:
        """The handshake completed: an open port, unless the socket reached itself."""
        sched = self.sched
        # only a connected socket can leave TIME_WAIT behind: make its close an RST
        sock.setsockopt(_SOL_SOCKET, _SO_LINGER, _LINGER_RST)
        if is_self_connect(sock, probe):
            sock.close()
            sched.on_self_connect(probe, now)
            return
        if sched.on_answer(probe, 0, now):
            self._start_banner(probe, sock, registered, now)
            return
        sock.close()

    # ---- the hold after a handshake (issue 25: SYN proxies) --------------------------------
    # An open port's socket stays registered for read/hangup until the hold ends
    # (``core/hold.py`` says how long, from the RTT estimate; the banner wait, when banners
    # are read, if longer). The first event decides: a reset is a SYN proxy's closed port,
    # data or a FIN an open one; no event by the deadline: open. ``banners`` and
    # ``banner_heap`` hold these sockets, as they held banner reads before.

    def _start_banner(self, probe: Probe, sock: _raw_socket, registered: bool,
                      now: float) -> None:
        """Keep an open port's socket to see whether the peer resets it, and to read what
        the service says first when banners are asked for."""
        fd = sock.fileno()
        self.sockets[probe] = sock
        self.banners[fd] = probe
        assert self.ep is not None
        if registered:
            self.ep.modify(fd, _WATCH_HELD)
        else:
            self.ep.register(fd, _WATCH_HELD)
        heapq.heappush(self.banner_heap, (self._hold_deadline(probe), fd, probe))

    def _hold_deadline(self, probe: Probe) -> float:
        options = probe.host.job.options
        return hold_deadline(self.sched.flight.rtt, probe.sent, probe.rtt,
                             options.banner_wait if options.banners else 0.0)

    def _read_banner(self, probe: Probe) -> None:
        sock = self.sockets.pop(probe)
        data = b""
        try:
            data = sock.recv(_BANNER_BYTES)
        except OSError as exc:
            if reset_seen(exc.errno or 0):
                sock.close()
                self.sched.on_reset(probe)
                return
        sock.close()
        self.sched.on_banner(probe, decode_banner(data) if data else None)

    def _expire_banners(self, now: float) -> None:
        heap = self.banner_heap
        while heap and heap[0][0] <= now:
            _, fd, probe = heapq.heappop(heap)
            if self.banners.get(fd) is not probe:
                continue
            later = self._hold_deadline(probe)  # the RTT estimate may have grown since
            if later > now:
                heapq.heappush(heap, (later, fd, probe))
                continue
            del self.banners[fd]
            self.sockets.pop(probe).close()
            self.sched.on_banner(probe, None)
