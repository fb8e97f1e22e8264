"""When a silent probe is tried again, and what a local failure (no descriptor, no
port, a self-connect) does instead of becoming a port state.

Adaptive tries are sequential, one RTO each, as deep as loss has been seen; with a
fixed timeout a port's tries overlap inside it. Each retry takes the failed try's
place among its port's tries, so an answer to any of them settles all of them.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from .admission import Admission
from .errors import EngineError
from .outcome import PortState
from .work import Job, Probe

#: nmap's cap on retransmissions when it adapts the retry depth.
MAX_ADAPTIVE_ATTEMPTS = 11
#: After this long without being able to open any socket, the scan fails instead of spinning.
LOCAL_STALL_LIMIT = 10.0
#: Pause after the machine ran short of descriptors, ports or buffers.
LOCAL_BACKOFF = 0.002
#: Self-connects to one port before it is taken as closed (nothing listens there).
MAX_SELF_CONNECTS = 8

_CLOSED, _FILTERED = PortState.CLOSED, PortState.FILTERED


class Retries(Admission):
    """Timers, retry depth and the replacement of tries that never reached the network."""

    if TYPE_CHECKING:
        def _final(self, probe: Probe, state: PortState, reason: str, rtt: float | None,
                   banner: str | None = None) -> None: ...

        def _age(self, now: float) -> None: ...

    def allowed_attempts(self, job: Job) -> int:
        if job.options.retries is not None:
            return job.options.retries + 1
        return min(self.max_success_attempt + 1, MAX_ADAPTIVE_ATTEMPTS)

    def attempts_for(self, probe: Probe) -> int:
        """Tries for this probe. Discovery probes go out several at once to each host, so
        they are their own redundancy: one try each until loss has been seen. A silent
        discovery port of a host that turns out up gets its retry as a port probe."""
        if probe.discovery and self.max_success_attempt == 1 and (
                probe.host.job.options.retries is None):
            return 1
        return self.allowed_attempts(probe.host.job)

    def on_sent(self, probe: Probe, now: float) -> None:
        """The connect is under way: start its clock.

        With an adaptive timeout, tries are sequential: each waits one RTO. With a
        fixed timeout T the user asked to wait T for the port, so the tries overlap:
        the n-th of N starts at (n-1)T/N after the first and all end at T. The port
        costs T, not N x T, and a lost SYN is still sent again.
        """
        # only a probe whose connect is under way is in the network: answers straight from
        # connect() never count against the window, and cost no queue entry
        probe.young = True
        self.young += 1
        self._young_q.append(probe)
        fixed = probe.host.job.options.timeout
        if fixed is None:
            heapq.heappush(self.heap, (now + self.rtt.timeout, next(self._seq), probe))
            return
        if probe.start < 0:
            probe.start = now
        end = probe.start + fixed
        attempts = self.attempts_for(probe)
        key = min(end, probe.start + probe.attempt * fixed / attempts) if (
            probe.attempt < attempts) else end
        heapq.heappush(self.heap, (key, next(self._seq), probe))

    def expire(self, now: float) -> list[Probe]:
        """Probes whose time is up; the loop closes their sockets. Retries are queued here."""
        self._age(now)
        heap = self.heap
        if self.rtt.timeout < self._heap_timeout / 2:
            self._rebuild_heap()
        out: list[Probe] = []
        while heap and heap[0][0] <= now:
            _, _, probe = heapq.heappop(heap)
            if probe.done:
                continue
            fixed = probe.host.job.options.timeout
            if fixed is None:
                real = probe.sent + self.rtt.timeout
                if real > now:
                    heapq.heappush(heap, (real, next(self._seq), probe))
                    continue
            else:
                end = probe.start + fixed
                if now < end:
                    # time for the next overlapping try; this one keeps waiting
                    if probe.next is None and probe.attempt < self.attempts_for(probe):
                        retry = probe.retry_of(probe.attempt + 1)
                        retry.prev, probe.next = probe, retry
                        self.retry.append(retry)
                    heapq.heappush(heap, (end, next(self._seq), probe))
                    continue
                self._settle(probe)
                out.append(probe)
                if probe.discovery:
                    probe.host.disc_silent += 1
                if not probe.others():
                    self._final(probe, _FILTERED, "no-response", None)
                continue
            self._settle(probe)
            out.append(probe)
            if probe.discovery:
                probe.host.disc_silent += 1  # a reject that never came, if it is unreachable
            if probe.attempt < self.attempts_for(probe):
                self.retry.append(Probe(probe.host, probe.port, probe.attempt + 1, probe.discovery))
            else:
                self._final(probe, _FILTERED, "no-response", None)
        return out

    def _rebuild_heap(self) -> None:
        timeout = self.rtt.timeout
        # fixed-timeout tries keep their keys (their next-try points); adaptive ones follow
        self.heap = [(key if p.host.job.options.timeout else p.sent + timeout, seq, p)
                     for key, seq, p in self.heap if not p.done]
        heapq.heapify(self.heap)
        self._heap_timeout = timeout

    def _cancel_others(self, probe: Probe) -> None:
        for other in probe.others():
            if other.live:
                self._settle(other)
                self.cancelled.append(other)
            else:
                other.done = True  # still queued: next_probe skips it

    def on_local_error(self, probe: Probe, err: int, now: float) -> None:
        """The machine ran short (EMFILE, EADDRNOTAVAIL, ...): never a port state; try later."""
        self._settle(probe)
        self.local_errors += 1
        self.cwnd.on_local_shortage(self.inflight)
        self.backoff_until = now + LOCAL_BACKOFF
        if self.inflight == 0:
            if self.stalled_since is None:
                self.stalled_since = now
            elif now - self.stalled_since > LOCAL_STALL_LIMIT:
                raise EngineError(f"cannot open sockets for {LOCAL_STALL_LIMIT:.0f} s "
                                  f"(errno {err}): the machine is out of descriptors or ports")
        self.retry.appendleft(self._replacement(probe))

    def unsend(self, probes: list[Probe]) -> None:
        """Probes handed out but never started (the loop ran short first): queued again."""
        for probe in reversed(probes):
            self._settle(probe)
            self.probes_sent -= 1
            self.retry.appendleft(self._replacement(probe))

    @staticmethod
    def _replacement(probe: Probe) -> Probe:
        """The same try again, taking the failed probe's place among its port's tries."""
        again = probe.retry_of(probe.attempt)
        again.prev, again.next = probe.prev, probe.next
        if probe.prev is not None:
            probe.prev.next = again
        if probe.next is not None:
            probe.next.prev = again
        return again

    def on_self_connect(self, probe: Probe, now: float | None = None) -> None:
        """The socket connected to itself (source port == target port): not an open port.

        Retried with a fresh socket; the kernel could only pick the target port as
        source because nothing listens on it, so when the tiny ephemeral range keeps
        choosing it, the port is reported closed rather than retried forever.
        """
        self._settle(probe)
        self_connects = probe.self_connects + 1
        if self_connects >= MAX_SELF_CONNECTS:
            self._cancel_others(probe)
            self._final(probe, _CLOSED, "self-connect",
                        None if now is None else now - probe.sent)
            return
        retry = self._replacement(probe)
        retry.self_connects = self_connects
        self.retry.append(retry)
