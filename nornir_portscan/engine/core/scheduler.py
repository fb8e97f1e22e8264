"""The sans-I/O scheduler: every decision of a scan, none of its I/O.

It decides what to probe next, when a probe has timed out, how the timeout
adapts, when to retry, and how host discovery turns into port outcomes. The
readiness loop (``loop.py``) owns the sockets and tells it what happened, with
the clock passed in, so this whole object is testable without a network.

The class is built in layers, one module each: ``admission`` (state, jobs, hosts,
outcomes), ``retries`` (timers, retry depth, local failures), ``discovery`` (what a
host's first answers mean) and, here, what to send next and what an answer means.

Accounting rule: every (address, port) of every job is emitted exactly once,
whether it was probed, decided by discovery (host down/unreachable) or could
not be resolved.
"""

from __future__ import annotations

import errno
import math

from .admission import OutcomeItem, Resolver
from .discovery import Discovery
from .errors import EngineError
from .outcome import PortState, classify
from .retries import (
    LOCAL_BACKOFF,
    LOCAL_STALL_LIMIT,
    MAX_ADAPTIVE_ATTEMPTS,
    MAX_SELF_CONNECTS,
)
from .work import DISCOVERY_PORTS, Host, Job, JobOptions, Probe, discovery_ports, permuted

__all__ = ["DISCOVERY_PORTS", "LOCAL_BACKOFF", "LOCAL_STALL_LIMIT", "MAX_ADAPTIVE_ATTEMPTS",
           "MAX_SELF_CONNECTS", "EngineError", "Host", "Job", "JobOptions", "OutcomeItem",
           "Probe", "Resolver", "Scheduler", "discovery_ports", "permuted"]

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE, _ERROR = PortState.UNREACHABLE, PortState.ERROR
_ECONNREFUSED = errno.ECONNREFUSED


class Scheduler(Discovery):
    """Decides; never waits, never touches a socket. ``now`` always comes from the caller."""

    def next_probe(self, now: float) -> Probe | None:
        """The next probe to start now, or None when the window, the rate or the work says wait."""
        probes = self.next_probes(now, 1)
        return probes[0] if probes else None

    def next_probes(self, now: float, limit: int) -> list[Probe]:
        """Up to ``limit`` probes to start now: as many as the window, the rate and the work allow.

        The loop asks for a burst at a time, so the window and rate checks are paid
        once per burst rather than once per probe."""
        budget = min(limit, self.cwnd.limit - self.inflight)
        if budget <= 0 or now < self.backoff_until:
            return []
        young_q = self._young_q
        if self.young + budget > self.cwnd.size or len(young_q) > self._young_q_cap:
            self._age(now)
            budget = min(budget, math.ceil(self.cwnd.size - self.young))
            if budget <= 0:
                return []
        rate = self.rate
        if rate.rate is not None:
            budget = min(budget, rate.available(now))
            if budget <= 0:
                return []
        out: list[Probe] = []
        retry, ready = self.retry, self.ready
        while len(out) < budget:
            if retry:
                probe = retry.popleft()
                if not probe.done:  # else a try made pointless by an answer to another try
                    out.append(probe)
                continue
            if self.feeding and self.active_hosts < self.max_active_hosts:
                self._admit()
            if not ready:
                if self.recheck_due():
                    out.extend(self.next_rechecks(now, budget - len(out)))
                break
            host = ready[0]
            port = next(host.cursor, None)
            if port is None:
                ready.popleft().queued = False
                continue
            ready.rotate(-1)
            out.append(Probe(host, port, 1, host.in_discovery))
        n = len(out)
        if n:
            rate.take(n)
            self.inflight += n
            self.probes_sent += n
            for probe in out:
                probe.live = True
                probe.sent = now
        return out

    def _young_limit(self) -> float:
        srtt = self.rtt.srtt
        return self.rtt.timeout if srtt is None else max(2 * srtt, 0.002)

    def _age(self, now: float) -> None:
        """Stop counting probes that are done or silent for longer than a couple of RTTs."""
        q = self._young_q
        horizon = now - self._young_limit()
        while q and (q[0].done or q[0].sent <= horizon):
            probe = q.popleft()
            if probe.young:
                probe.young = False
                self.young -= 1

    def poll_timeout(self, now: float) -> float | None:
        """How long the loop may block waiting for sockets; None means until something happens."""
        if self.inflight < self.cwnd.limit and self.young < self.cwnd.size and (
                now >= self.backoff_until) and (
                self.retry or self.ready or (
                self.feeding and self.active_hosts < self.max_active_hosts
                and any(not j.exhausted for j in self.jobs))):
            return self.rate.wait_time()
        wait: float | None = None
        if self.heap:
            wait = max(0.0, self.heap[0][0] - now)
        if self._young_q and self.young >= self.cwnd.size:
            age_out = max(0.0, self._young_q[0].sent + self._young_limit() - now)
            wait = age_out if wait is None else min(wait, age_out)
        if self.backoff_until > now:
            pause = self.backoff_until - now
            wait = pause if wait is None else min(wait, pause)
        if self.recheck_due():
            until = self.recheck_wait(now)
            if until is not None:
                wait = until if wait is None else min(wait, until)
        if self.stalled_since is not None or self.resolving:
            wait = 0.01 if wait is None else min(wait, 0.01)
        return wait

    def on_failed_connects(self, answers: list[tuple[Probe, int, float]]) -> None:
        """Connects that failed straight away (probe, errno, when): the loop's common case.

        No socket stays open for any of them. A first try refused is settled inline;
        the burst gives one RTT sample (its slowest) and one window update, as TCP
        takes one sample per window. Anything else takes ``on_answer``'s full path.
        """
        refused = 0
        young = 0
        slowest = -1.0
        emit = self._emit
        for probe, err, now in answers:
            if (err != _ECONNREFUSED or probe.discovery or probe.attempt != 1 or probe.done
                    or probe.next is not None):
                if self.on_answer(probe, err, now):
                    self.on_banner(probe, None)  # a reset after the handshake: nothing to read
                continue
            probe.done = True
            probe.live = False
            if probe.young:
                probe.young = False
                young += 1
            rtt = now - probe.sent
            if rtt > slowest:
                slowest = rtt
            refused += 1
            host = probe.host
            if host.pending > 0:
                emit(host, probe.port, _CLOSED, "conn-refused", rtt, 1)
        if refused:
            self.inflight -= refused
            self.young -= young
            self.stalled_since = None
            self.rtt.observe(slowest)
            self.cwnd.on_answer(refused)

    def on_answer(self, probe: Probe, err: int, now: float) -> bool:
        """The kernel's answer for a probe (immediate or via SO_ERROR).

        Returns True when the loop should keep the socket open to read a banner.
        """
        if probe.done:
            return False
        result = classify(err)
        if result is None:
            self.on_local_error(probe, err, now)
            return False
        self._settle(probe)
        self.stalled_since = None
        if probe.prev is not None or probe.next is not None:
            self._cancel_others(probe)
        state, reason = result
        rtt = now - probe.sent
        if state is not _ERROR:
            self.rtt.observe(rtt)
            self.cwnd.on_answer()
            # an answer to a later try means an earlier one was lost, unless the tries
            # overlap and the earlier one simply had not had this long yet
            if probe.attempt > 1 and (probe.host.job.options.timeout is None
                                      or rtt < probe.sent - probe.start):
                # an answer to a retry: the earlier try was lost on the way
                self.cwnd.on_loss(now, self.rtt.srtt or 0.0)
                if probe.attempt > self.max_success_attempt:
                    self.max_success_attempt = probe.attempt
        host = probe.host
        if state is _OPEN and host.job.options.banners and (
                not probe.discovery or probe.port in host.job.ports_set):
            if probe.discovery and not host.up:
                self._host_up(host)  # do not hold the host's scan back for the banner
            self.inflight += 1  # the socket stays open while the loop reads
            probe.rtt = rtt
            return True
        self._final(probe, state, reason, rtt)
        return False

    def on_banner(self, probe: Probe, banner: str | None) -> None:
        self.inflight -= 1
        self._final(probe, _OPEN, "syn-ack", probe.rtt, banner)
