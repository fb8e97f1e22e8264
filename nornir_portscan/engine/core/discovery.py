"""Host discovery: a few ports tell an up host from a down or unreachable one, and a
down host's other ports are decided without a probe.

ICMP rate limits. Routers and Linux hosts send ICMP errors to one peer only so fast
(Linux: a burst of 6, then one a second), so in a sweep of a network whose router
rejects hosts with host-unreachable only the first few rejects arrive and the other
unreachable hosts fall silent, like dead ones. When a network has answered with
host-unreachable, its silent hosts are therefore not called down at once: they are
held until the rest of the scan is done. If some unreachable host of the network had
as many rejects that never came (silent tries) as came, more than loss explains, the
limiter is at work and the held hosts are re-probed (one discovery port each) inside
a bounded extra time; otherwise they are down, with no further probe. The
re-probes go out in groups, one group at a time, each only after a pace past the
last ICMP error seen: as long as the limiter has one error to give, a group that
draws no error at all shows that none of its hosts is unreachable, so they are down;
a group that draws some errors gives those hosts' verdicts and puts the rest back.
A scan split over shards shares the limiter among them, so each shard sends its
groups only in time slots of its own. What the time does not cover is reported as
``filtered`` with the reason ``rate-limited?``: silent, in a network known to
rate-limit its rejects, and so neither known down nor known unreachable.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import deque

from .outcome import PortState
from .retries import Retries
from .work import Host, Job, Probe

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE = PortState.UNREACHABLE

#: The reason of a silent host that a network's ICMP rate limit leaves undecided.
RATE_LIMITED = "rate-limited?"
#: Wait after an ICMP error before a re-probe counts on the limiter having another one:
#: Linux's default (net.ipv4.icmp_ratelimit, 1000 ms); Cisco IOS allows one per 500 ms.
ICMP_PACE = 1.0
#: Re-probing may add this share of the scan's time so far, and at least RECHECK_FLOOR.
RECHECK_SHARE = 0.1
RECHECK_FLOOR = 2.0
#: Re-probes in a group at most; a group is halved when it draws errors, doubled when
#: it draws none (it starts at admission.RECHECK_GROUP).
RECHECK_GROUP_MAX = 64
#: Silent hosts decided this soon after a job's start wait for the end of the scan even
#: before any reject was seen: a limiter spent by an earlier scan gives its first
#: errors late (one a pace), after the first dead hosts have timed out.
QUIET_WINDOW = 5.0
#: Each shard's turn on a shared limiter: groups start only in the first
#: RECHECK_WINDOW of its slot, so the next shard's slot starts over a pace later.
RECHECK_WINDOW = 0.25 * ICMP_PACE
RECHECK_SLOT = RECHECK_WINDOW + 1.05 * ICMP_PACE


def _slot_wait(job: Job, now: float) -> float:
    """0 when a group may go out now, else how long until it may.

    Shards of one scan share the limiter (it counts errors per peer: this machine), so
    each sends groups only at the start of its own slot (RECHECK_WINDOW of RECHECK_SLOT
    seconds), one shard after the other (CLOCK_MONOTONIC is the same clock in every process). Any
    other shard's last error is then at least ICMP_PACE old when a group starts, and a
    group's silence proves as much as it does for a scan alone."""
    index, count = job.options.limiter_slot
    if count <= 1:
        return 0.0
    start, phase = index * RECHECK_SLOT, now % (count * RECHECK_SLOT)
    if start <= phase < start + RECHECK_WINDOW:
        return 0.0
    return (start - phase) % (count * RECHECK_SLOT)


def network_of(addr: str) -> str:
    """The network an ICMP error vouches for: the address's /24 (IPv4) or /64 (IPv6)."""
    if ":" not in addr:
        return addr.rpartition(".")[0]
    return str(ipaddress.IPv6Network((addr, 64), strict=False))


class Discovery(Retries):
    """What each discovery answer means for its host, and the re-probes of silent hosts
    that an ICMP rate limit may have silenced."""

    def _final(self, probe: Probe, state: PortState, reason: str, rtt: float | None,
               banner: str | None = None) -> None:
        host = probe.host
        if state is _UNREACHABLE:
            # the limiter gave this error: a re-probe can count on it only a pace later
            self.recheck_after = max(self.recheck_after, probe.sent + (rtt or 0.0) + ICMP_PACE)
        if not probe.discovery:
            if host.pending > 0:
                self._emit(host, probe.port, state, reason, rtt, probe.attempt, banner)
            return
        host.disc_left -= 1
        job = host.job
        if job.started < 0:
            job.started = probe.sent
        if host.rechecking:
            self._rechecked(host, state, reason)
            return
        if state is _OPEN or state is _CLOSED:
            if not host.up:
                self._host_up(host)
        elif state is _UNREACHABLE:
            host.disc_rejects += 1
            if host.disc_unreach is None:
                host.disc_unreach = reason
                self.icmp.saw_reject(network_of(host.addr))
        if probe.port in job.ports_set and host.pending > 0:
            if state is _FILTERED and not host.up:
                host.deferred.append((probe.port, probe.attempt))
            elif state is _FILTERED and probe.attempt < self.allowed_attempts(job):
                # a silent discovery try on an up host: retried like any port probe
                self.retry.append(Probe(host, probe.port, probe.attempt + 1, False))
            else:
                self._emit(host, probe.port, state, reason, rtt, probe.attempt, banner)
        if host.disc_left == 0 and not host.up and host.pending > 0:
            # discovery is over and nothing answered: the host is down or unreachable
            if host.disc_unreach is not None:
                if host.disc_silent >= host.disc_rejects:
                    # as many of its rejects never came as came: more than loss explains
                    # (a lost try is retried, and its retry draws the reject), so the
                    # network's errors are rate-limited
                    self.icmp.saw_limit(network_of(host.addr))
                self._host_decided(host, _UNREACHABLE, host.disc_unreach)
            elif job.options.recheck != 0 and (
                    self.icmp.has_rejects(network_of(host.addr))
                    or probe.sent - job.started < QUIET_WINDOW):
                # perhaps down, perhaps unreachable with its reject suppressed; early on even
                # before any reject was seen: a limiter spent by an earlier scan gives its
                # first errors late, after the first silent hosts time out
                self._hold(host, self.held_new)
            else:
                self._host_decided(host, _FILTERED, "host-down")

    def _host_decided(self, host: Host, state: PortState, reason: str) -> None:
        """Every port of a host that discovery found down or unreachable, in bulk."""
        job = host.job
        self._emit_deferred(host, state, "no-response" if reason == "host-down" else reason)
        if host.pending == 0:
            return
        n = len(job.nondisc_ports)
        self._emit_bulk(job, host.addr, host.name, job.nondisc_ports, state, reason)
        host.pending -= n
        if host.pending == 0:
            self._host_done(host)

    # ---- re-probes of hosts an ICMP rate limit may have silenced ----------------------------

    def _hold(self, host: Host, where: deque[Host]) -> None:
        """Set a silent host aside; it no longer holds back the admission of others."""
        where.append(host)
        self.active_hosts -= 1

    def _unhold(self, host: Host) -> None:
        self.active_hosts += 1

    def recheck_due(self) -> bool:
        """Held hosts wait for everything else: the re-probes must not compete with the
        scan's own probes for the limiter's few errors."""
        return bool(self.held or self.held_new) and self.active_hosts == 0 and (
            not self.feeding)

    def _deadline(self, job: Job, now: float) -> float:
        if job.recheck_deadline < 0:
            budget = job.options.recheck
            if budget is None:
                elapsed = now - job.started if job.started >= 0 else 0.0
                # a shard on a shared limiter waits up to a cycle for its slot
                cycle = job.options.limiter_slot[1] * RECHECK_SLOT if (
                    job.options.limiter_slot[1] > 1) else 0.0
                budget = max(RECHECK_SHARE * elapsed, RECHECK_FLOOR, cycle + RECHECK_WINDOW)
            job.recheck_deadline = now + budget
        return job.recheck_deadline

    def next_rechecks(self, now: float, limit: int) -> list[Probe]:
        """The next group of re-probes, once the scan's other work is done and the limiter
        has had time to recover; held hosts past their job's time are given up on."""
        new, held = self.held_new, self.held
        while new:  # sorted once, now that the scan has shown which networks rate-limit
            host = new.popleft()
            if self.icmp.is_limited(network_of(host.addr)):
                held.append(host)
            else:
                # every reject of its network arrived: no limiter hid one, it is down
                self._unhold(host)
                self._host_decided(host, _FILTERED, "host-down")
        while held and now >= self._deadline(held[0].job, now):
            host = held.popleft()
            self._unhold(host)
            self._host_decided(host, _FILTERED, RATE_LIMITED)
        out: list[Probe] = []
        if not held or now < self.recheck_after or _slot_wait(held[0].job, now) > 0:
            return out
        self.recheck_errors = 0
        while held and len(out) < min(limit, self.recheck_group):
            host = held.popleft()
            self._unhold(host)
            host.rechecking = True
            host.disc_left += 1
            out.append(Probe(host, host.job.disc_ports[0], 1, True))
        self.recheck_left = len(out)
        self.rechecks_sent += len(out)
        return out

    def recheck_wait(self, now: float) -> float | None:
        """How long until ``next_rechecks`` has something to do; None when nothing is held."""
        if self.held_new:
            return 0.0
        if not self.held:
            return None
        job = self.held[0].job
        after = max(self.recheck_after, now)
        until = min(after + _slot_wait(job, after), self._deadline(job, now))
        return max(0.0, until - now)

    def _rechecked(self, host: Host, state: PortState, reason: str) -> None:
        """A re-probe's verdict; silent hosts wait for the rest of their group."""
        host.rechecking = False
        self.recheck_left -= 1
        if state is _UNREACHABLE:
            self.recheck_errors += 1
            self.rechecks_recovered += 1
            host.disc_unreach = reason
            self._host_decided(host, _UNREACHABLE, reason)
        elif state is _OPEN or state is _CLOSED:
            # up after all (its discovery answers were lost): scanned like any up host
            self.rechecks_recovered += 1
            self._host_up(host)
        else:
            self.recheck_silent.append(host)
        if self.recheck_left:
            return
        silent, self.recheck_silent = self.recheck_silent, []
        if self.recheck_errors == 0:
            # the limiter had an error to give and gave none: no host of the group rejects
            self.recheck_group = min(RECHECK_GROUP_MAX, self.recheck_group * 2)
            for quiet in silent:
                self._host_decided(quiet, _FILTERED, "host-down")
        else:
            # an error may have used the limiter up: the group's silence proves nothing
            self.recheck_group = max(1, self.recheck_group // 2)
            for quiet in silent:
                self._hold(quiet, self.held)

    def _host_up(self, host: Host) -> None:
        """First answer from a host: its discovery ports not yet sent become plain probes."""
        job = host.job
        host.up = True
        host.in_discovery = False
        unsent = list(host.cursor)
        host.disc_left -= len(unsent)
        unsent = [p for p in unsent if p in job.ports_set]
        rest = job.port_order(hash(host.addr))
        host.cursor = itertools.chain(unsent, rest) if unsent else rest
        if not host.queued:
            host.queued = True
            self.ready.append(host)
        deferred, host.deferred = host.deferred, []
        for port, attempts in deferred:
            if attempts < self.allowed_attempts(job):
                self.retry.append(Probe(host, port, attempts + 1, False))
            else:
                self._emit(host, port, _FILTERED, "no-response", None, attempts)

    def _emit_deferred(self, host: Host, state: PortState, reason: str) -> None:
        deferred, host.deferred = host.deferred, []
        for port, attempts in deferred:
            self._emit(host, port, state, reason, None, attempts)
