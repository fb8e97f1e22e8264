"""The sans-I/O scheduler: every decision of a scan, none of its I/O.

It decides what to probe next, when a probe has timed out, how the timeout adapts,
when to retry, and how host discovery turns into port outcomes. The readiness loop
(``io/loop.py``) owns the sockets and tells it what happened, with the clock passed in,
so this whole object is testable without a network.

The ``Scheduler`` is the one object the loop talks to. It owns five parts, each with its
own state and none with a reference to another or back to it; a part returns what it
decided and the scheduler applies it to the others:

- ``timers.py``: the deadline heap of probes whose connect is under way;
- ``flight.py``: the window, the rate cap, the RTT estimate, the probes in flight;
- ``intake.py``: jobs, admitted hosts, name lookups, the probes waiting, the outcomes;
- ``verdicts.py``: what answers and silence mean: retry depth, when a silent port is
  filtered, when a host is up, down or unreachable;
- ``recheck.py``: re-probes of silent hosts an ICMP rate limit may have silenced.

Accounting rule: every (address, port) of every job is emitted exactly once,
whether it was probed, decided by discovery (host down/unreachable) or could
not be resolved.
"""

from __future__ import annotations

import errno
from collections import deque

from .flight import FlightControl
from .hold import RESET_AFTER_SYN_ACK
from .intake import Intake, OutcomeItem, Resolver
from .outcome import PortState, classify
from .recheck import RATE_LIMITED, Recheck
from .timers import Timers
from .timing import CongestionWindow, RateLimiter, RttEstimator
from .verdicts import (
    DOWN_REASON,
    HOST_DOWN,
    HOST_HOLD,
    HOST_RECHECKED,
    HOST_SAME,
    HOST_UP,
    NEXT_TRY,
    NO_RESPONSE,
    PORT_EMIT,
    PORT_RETRY,
    REARM,
    RETRY,
    SILENT_LAST,
    Unreachable,
    Verdicts,
)
from .work import Host, IcmpEvidence, Job, Probe

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE, _ERROR = PortState.UNREACHABLE, PortState.ERROR
_ECONNREFUSED = errno.ECONNREFUSED


class Scheduler:
    """Decides; never waits, never touches a socket. ``now`` always comes from the caller."""

    def __init__(self, *, concurrency: int, rate: float | None = None,
                 resolver: Resolver | None = None, rtt: RttEstimator | None = None,
                 max_active_hosts: int | None = None,
                 icmp_evidence: IcmpEvidence | None = None, keep_alive: bool = False) -> None:
        self.flight = FlightControl(concurrency, rate, rtt or RttEstimator())
        self.timers = Timers(self.flight.rtt.timeout)
        self.intake = Intake(resolver,
                             max_active_hosts or max(64, self.flight.cwnd.limit // 4),
                             keep_alive)
        self.verdicts = Verdicts(icmp_evidence or IcmpEvidence())
        self.recheck = Recheck()
        #: Outcomes decided so far (the intake's queue): the loop checks it every turn.
        self.outcomes = self.intake.outcomes
        #: In-flight tries the loop must close: another try of their port was answered.
        #: The loop takes them with ``take_cancelled``.
        self.cancelled: list[Probe] = []

    # ---- what the loop, the local scan and the shared engine read -----------------------

    @property
    def done(self) -> bool:
        return self.intake.done

    @property
    def keep_alive(self) -> bool:
        """A service's scheduler (``keep_alive=True``): never done, more jobs may come."""
        return self.intake.keep_alive

    @property
    def jobs(self) -> deque[Job]:
        return self.intake.jobs

    @property
    def cwnd(self) -> CongestionWindow:
        return self.flight.cwnd

    @property
    def rate(self) -> RateLimiter:
        return self.flight.rate

    def set_rate(self, rate: float | None) -> None:
        """A new cap (probes a second; None: none) from now on: a shared engine's strictest
        running job's (``io/service.py``)."""
        self.flight.set_rate(rate)

    def take_cancelled(self) -> list[Probe]:
        """The tries the loop must close now (another try of their port was answered),
        handed over once."""
        cancelled, self.cancelled = self.cancelled, []
        return cancelled

    @property
    def inflight(self) -> int:
        return self.flight.inflight

    @property
    def young(self) -> int:
        return self.flight.young

    @property
    def probes_sent(self) -> int:
        return self.flight.probes_sent

    @property
    def local_errors(self) -> int:
        return self.flight.local_errors

    @property
    def rechecks_sent(self) -> int:
        return self.recheck.sent

    @property
    def rechecks_recovered(self) -> int:
        return self.recheck.recovered

    def add_job(self, job: Job) -> Job:
        return self.intake.add_job(job)

    def drain_some(self, limit: int, runs: bool = False) -> list[tuple[Job, OutcomeItem]]:
        """About ``limit`` outcomes decided so far, in order (``Intake.drain_some``)."""
        return self.intake.drain_some(limit, runs)

    # ---- what to send, and how long the loop may wait ------------------------------------

    def next_probes(self, now: float, limit: int) -> list[Probe]:
        """Up to ``limit`` probes to start now: as many as the window, the rate and the work allow.

        The loop asks for a burst at a time, so the window and rate checks are paid
        once per burst rather than once per probe."""
        flight = self.flight
        budget = flight.budget(now, limit)
        if budget <= 0:
            return []
        intake = self.intake
        out: list[Probe] = []
        retry, ready = intake.retry, intake.ready
        while len(out) < budget:
            if retry:
                probe = retry.popleft()
                if not probe.done:  # else a try made pointless by an answer to another try
                    out.append(probe)
                continue
            if intake.feeding and intake.active_hosts < intake.max_active_hosts:
                intake.admit()
            if not ready:
                if self.recheck.due(intake.active_hosts, intake.feeding):
                    out.extend(self.next_rechecks(now, budget - len(out)))
                break
            host = ready[0]
            port = next(host.cursor, None)
            if port is None:
                intake.unready()
                continue
            ready.rotate(-1)
            out.append(Probe(host, port, 1, host.in_discovery))
        if out:
            flight.launched(out, now)
        return out

    def poll_timeout(self, now: float) -> float | None:
        """How long the loop may block waiting for sockets; None means until something happens."""
        flight, intake = self.flight, self.intake
        if flight.may_send(now) and (intake.retry or intake.ready or intake.may_admit()):
            return flight.rate.wait_time()
        wait: float | None = None
        deadline = self.timers.next_deadline()
        if deadline is not None:
            wait = max(0.0, deadline - now)
        held_back = flight.wait(now)
        if held_back is not None:
            wait = held_back if wait is None else min(wait, held_back)
        if self.recheck.due(intake.active_hosts, intake.feeding):
            until = self.recheck.wait(now)
            if until is not None:
                wait = until if wait is None else min(wait, until)
        if flight.stalled_since is not None or intake.resolving:
            wait = 0.01 if wait is None else min(wait, 0.01)
        return wait

    # ---- what the kernel said ------------------------------------------------------------

    def on_sent(self, probe: Probe, now: float) -> None:
        """The connect is under way: its clock starts (``Verdicts.deadline``)."""
        flight = self.flight
        flight.sent(probe)
        self.timers.add(self.verdicts.deadline(probe, now, flight.rtt.timeout), probe)

    def on_failed_connects(self, answers: list[tuple[Probe, int, float]]) -> None:
        """Connects that failed straight away (probe, errno, when): the loop's common case.

        No socket stays open for any of them. A first try refused is settled inline;
        the burst gives one RTT sample (its slowest) and one window update, as TCP
        takes one sample per window. Anything else takes ``on_answer``'s full path.
        """
        refused: list[Probe] = []
        slowest = -1.0
        emit = self.intake.emit
        for probe, err, now in answers:
            if (err != _ECONNREFUSED or probe.discovery or probe.attempt != 1 or probe.done
                    or probe.next is not None):
                if self.on_answer(probe, err, now):
                    self.on_banner(probe, None)  # a reset after the handshake: nothing to read
                continue
            # a first try with no other try of its port: settled (``refused_burst``) after
            # the burst, as nothing before then reads it
            refused.append(probe)
            rtt = now - probe.sent
            if rtt > slowest:
                slowest = rtt
            host = probe.host
            if host.pending > 0:
                emit(host, probe.port, _CLOSED, "conn-refused", rtt, 1)
        if refused:
            self.flight.refused_burst(refused, slowest)

    def on_answer(self, probe: Probe, err: int, now: float) -> bool:
        """The kernel's answer for a probe (immediate or via SO_ERROR).

        Returns True when the loop should keep the socket open: every port that
        completed a handshake is held a moment (``hold.py``) to see whether the peer resets
        it, and read its banner when asked for; ``on_banner`` or ``on_reset`` ends the hold.
        """
        if probe.done:
            return False
        result = classify(err)
        if result is None:
            self.on_local_error(probe, err, now)
            return False
        flight = self.flight
        flight.heard(probe)
        if probe.prev is not None or probe.next is not None:
            self._cancel_others(probe)
        state, reason = result
        rtt = now - probe.sent
        if state is not _ERROR:
            flight.answered(rtt)
            if probe.attempt > 1 and self.verdicts.shows_loss(probe, rtt):
                flight.lost(now)
        host = probe.host
        if state is _OPEN and (not probe.discovery or probe.port in host.job.ports_set):
            if probe.discovery and not host.up:
                self._host_up(host)  # do not hold the host's scan back for the hold
            flight.banner_started()
            probe.rtt = rtt
            return True
        self._final(probe, state, reason, rtt)
        return False

    def on_banner(self, probe: Probe, banner: str | None) -> None:
        """A held connection stayed up (data, an orderly close, or quiet): open."""
        self.flight.banner_done()
        if not probe.host.job.options.banners:
            banner = None  # read only to tell a service from a reset
        self._final(probe, _OPEN, "syn-ack", probe.rtt, banner)

    def on_reset(self, probe: Probe) -> None:
        """A held connection was reset by the peer: a SYN proxy's closed port."""
        self.flight.banner_done()
        self._final(probe, _CLOSED, RESET_AFTER_SYN_ACK, probe.rtt)

    def expire(self, now: float) -> list[Probe]:
        """Probes whose time is up; the loop closes their sockets. Retries are queued here."""
        flight, timers, verdicts = self.flight, self.timers, self.verdicts
        flight.age(now)
        timeout = flight.rtt.timeout
        timers.follow(timeout)
        retry = self.intake.retry
        out: list[Probe] = []
        for probe in timers.expire(now):
            if probe.done:
                continue
            action, deadline = verdicts.on_due(probe, now, timeout)
            if action is REARM:
                timers.add(deadline, probe)
                continue
            if action is NEXT_TRY:  # the next overlapping try goes out; this one waits on
                retry.append(probe.overlapping_try())
                timers.add(deadline, probe)
                continue
            flight.settle(probe)
            out.append(probe)
            if action is RETRY:
                retry.append(Probe(probe.host, probe.port, probe.attempt + 1, probe.discovery))
            elif action is SILENT_LAST:
                self._final(probe, _FILTERED, NO_RESPONSE, None)
        return out

    def on_local_error(self, probe: Probe, err: int, now: float) -> None:
        """The machine ran short (EMFILE, EADDRNOTAVAIL, ...): never a port state; try later."""
        self.flight.settle(probe)
        self.flight.shortage(err, now)
        self.intake.retry.appendleft(probe.replacement())

    def unsend(self, probes: list[Probe]) -> None:
        """Probes handed out but never started (the loop ran short first): queued again."""
        for probe in reversed(probes):
            self.flight.unsent(probe)
            self.intake.retry.appendleft(probe.replacement())

    def on_self_connect(self, probe: Probe, now: float | None = None) -> None:
        """The socket connected to itself (source port == target port): not an open port.

        Retried with a fresh socket; a port that keeps doing it is closed
        (``Verdicts.self_connect_closes``).
        """
        self.flight.settle(probe)
        if self.verdicts.self_connect_closes(probe):
            self._cancel_others(probe)
            self._final(probe, _CLOSED, "self-connect",
                        None if now is None else now - probe.sent)
            return
        self.intake.retry.append(probe.self_connect_retry())

    def _cancel_others(self, probe: Probe) -> None:
        """The port is answered: its other tries are pointless."""
        for other in probe.others():
            if other.live:
                self.flight.settle(other)
                self.cancelled.append(other)
            else:
                self.flight.void(other)  # still queued: next_probes skips it

    # ---- applying verdicts ---------------------------------------------------------------

    def _final(self, probe: Probe, state: PortState, reason: str, rtt: float | None,
               banner: str | None = None) -> None:
        """A probe's last word (its answer, or silence after its port's last try)."""
        if state is _UNREACHABLE:
            # the limiter gave this error: a re-probe can count on it only a pace later
            self.recheck.saw_error(probe.sent + (rtt or 0.0))
        host = probe.host
        if not probe.discovery:
            if host.pending > 0:
                self.intake.emit(host, probe.port, state, reason, rtt, probe.attempt, banner)
            return
        port_do, host_do = self.verdicts.discovery(probe, state, reason)
        if host_do is HOST_RECHECKED:
            self._rechecked(host, state, reason)
            return
        if host_do is HOST_UP:
            self._host_up(host)
        if port_do is PORT_EMIT:
            self.intake.emit(host, probe.port, state, reason, rtt, probe.attempt, banner)
        elif port_do is PORT_RETRY:
            self.intake.retry.append(Probe(host, probe.port, probe.attempt + 1, False))
        if host_do is HOST_SAME:
            return
        if isinstance(host_do, Unreachable):
            self._host_decided(host, _UNREACHABLE, host_do.reason)
        elif host_do is HOST_HOLD:
            self._hold(host)
        elif host_do is HOST_DOWN:
            self._host_decided(host, _FILTERED, DOWN_REASON)

    def _host_up(self, host: Host) -> None:
        """First answer from a host: its ports are probed, its silent discovery ports
        retried or decided (``Verdicts.host_up``)."""
        retries, filtered = self.verdicts.host_up(host)
        intake = self.intake
        intake.make_ready(host)
        intake.retry.extend(retries)
        for port, attempts in filtered:
            intake.emit(host, port, _FILTERED, NO_RESPONSE, None, attempts)

    def _host_decided(self, host: Host, state: PortState, reason: str) -> None:
        """Every port of a host that discovery found down or unreachable, in bulk."""
        self.intake.decide_host(host, self.verdicts.take_deferred(host), state, reason,
                                self.verdicts.probed_reason(reason))

    def _hold(self, host: Host) -> None:
        """Set a silent host aside for re-probes; it no longer holds back admission."""
        self.recheck.hold(host)
        self.intake.set_aside(host)

    def next_rechecks(self, now: float, limit: int) -> list[Probe]:
        """The next group of re-probes, once the scan's other work is done and the limiter
        has had time to recover; held hosts past their job's time are given up on."""
        recheck, intake = self.recheck, self.intake
        for host in recheck.sort_new(self.verdicts.rate_limited):
            intake.take_back(host)
            self._host_decided(host, _FILTERED, DOWN_REASON)
        for host in recheck.give_up(now):
            intake.take_back(host)
            self._host_decided(host, _FILTERED, RATE_LIMITED)
        probes = recheck.next_group(now, limit)
        for probe in probes:
            intake.take_back(probe.host)
            self.verdicts.reprobing(probe.host)
        return probes

    def _rechecked(self, host: Host, state: PortState, reason: str) -> None:
        """A re-probe's verdict; silent hosts wait for the rest of their group."""
        host_do, quiet, down = self.recheck.answered(host, state, reason)
        if isinstance(host_do, Unreachable):
            self._host_decided(host, _UNREACHABLE, host_do.reason)
        elif host_do is HOST_UP:
            self._host_up(host)
        for other in quiet:
            if down:
                self._host_decided(other, _FILTERED, DOWN_REASON)
            else:
                self.intake.set_aside(other)  # held again (Recheck.answered put it back)
