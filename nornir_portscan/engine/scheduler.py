"""The sans-I/O scheduler: every decision of a scan, none of its I/O.

It decides what to probe next, when a probe has timed out, how the timeout
adapts, when to retry, and how host discovery turns into port outcomes. The
readiness loop (``loop.py``) owns the sockets and tells it what happened, with
the clock passed in, so this whole object is testable without a network.

Accounting rule: every (address, port) of every job is emitted exactly once,
whether it was probed, decided by discovery (host down/unreachable) or could
not be resolved.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from ..inputs.scope import in_networks
from .outcome import PortRun, PortState, ProbeOutcome, _new_outcome, classify
from .timing import CongestionWindow, RateLimiter, RttEstimator
from .work import DISCOVERY_PORTS, Host, Job, JobOptions, Probe, discovery_ports, permuted

__all__ = ["DISCOVERY_PORTS", "EngineError", "Host", "Job", "JobOptions", "Probe", "Scheduler",
           "discovery_ports", "permuted"]

#: nmap's cap on retransmissions when it adapts the retry depth.
MAX_ADAPTIVE_ATTEMPTS = 11
#: After this long without being able to open any socket, the scan fails instead of spinning.
LOCAL_STALL_LIMIT = 10.0
#: Pause after the machine ran short of descriptors, ports or buffers.
LOCAL_BACKOFF = 0.002
#: Self-connects to one port before it is taken as closed (nothing listens there).
MAX_SELF_CONNECTS = 8

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE, _ERROR = PortState.UNREACHABLE, PortState.ERROR
_ECONNREFUSED = errno.ECONNREFUSED

Resolver = Callable[[str], "Future[list[tuple[int, str]]]"]


class EngineError(RuntimeError):
    """The scan cannot go on (the machine cannot open sockets at all)."""


OutcomeItem = ProbeOutcome | PortRun | None


class Scheduler:
    """Decides; never waits, never touches a socket. ``now`` always comes from the caller."""

    def __init__(self, *, concurrency: int, rate: float | None = None,
                 resolver: Resolver | None = None, rtt: RttEstimator | None = None,
                 max_active_hosts: int | None = None) -> None:
        self.cwnd = CongestionWindow(limit=max(1, concurrency))
        self.rate = RateLimiter(rate)
        self.rtt = rtt or RttEstimator()
        self.resolver = resolver
        self.max_active_hosts = max_active_hosts or max(64, self.cwnd.limit // 4)
        self.jobs: deque[Job] = deque()
        self.ready: deque[Host] = deque()
        self.retry: deque[Probe] = deque()
        self.heap: list[tuple[float, int, Probe]] = []
        self._heap_timeout = self.rtt.timeout
        self._seq = itertools.count()
        self.inflight = 0  # probes holding a socket: bounded by cwnd.limit (descriptors)
        self.young = 0  # probes sent less than a few RTTs ago: bounded by the window
        self._young_q: deque[Probe] = deque()
        self.active_hosts = 0
        self.max_success_attempt = 1
        self.outcomes: deque[tuple[Job, OutcomeItem]] = deque()
        self.stalled_since: float | None = None
        self.probes_sent = 0
        self.local_errors = 0  # EMFILE, EADDRNOTAVAIL, ...: shortages met (and retried)
        self.keep_alive = False
        self.feeding = 0  # jobs whose targets are not all admitted yet
        self.backoff_until = 0.0  # after a local shortage, wait a moment before the next socket
        self.cancelled: list[Probe] = []  # in-flight tries the loop must close (answered elsewhere)
        self._young_q_cap = 4 * self.cwnd.limit + 1024

    # ---- jobs and hosts -------------------------------------------------------------------

    def add_job(self, job: Job) -> Job:
        self.jobs.append(job)
        self.feeding += 1
        if not job.ports:
            job.exhausted = True
            self._maybe_finish(job)
        return job

    @property
    def done(self) -> bool:
        return not self.jobs and not self.keep_alive

    def _emit(self, host: Host, port: int, state: PortState, reason: str,
              rtt: float | None, attempts: int, banner: str | None = None) -> None:
        job = host.job
        # tuple.__new__ skips the named tuple's Python-level constructor: this runs per outcome
        self.outcomes.append((job, _new_outcome(ProbeOutcome, (
            host.addr, port, state, reason, None if rtt is None else rtt * 1000.0, attempts,
            host.name, banner))))
        job.emitted += 1
        host.pending -= 1
        if host.pending == 0:
            self._host_done(host)

    def _emit_bulk(self, job: Job, addr: str, name: str | None, ports: tuple[int, ...],
                   state: PortState, reason: str) -> None:
        if ports:
            job.emitted += len(ports)
            self.outcomes.append((job, PortRun(addr, name, ports, state, reason)))

    def _host_done(self, host: Host) -> None:
        self.active_hosts -= 1
        job = host.job
        job.active -= 1
        self._maybe_finish(job)

    def _maybe_finish(self, job: Job) -> None:
        if job.exhausted and not job.resolving and not job.fed:
            job.fed = True
            self.feeding -= 1
        if job.exhausted and not job.resolving and job.active == 0 and not job.done:
            job.done = True
            self.outcomes.append((job, None))
            try:
                self.jobs.remove(job)
            except ValueError:
                pass

    def _add_host(self, job: Job, addr: str, version: int, name: str | None) -> None:
        host = Host(job, addr, version, name)
        if version == 6:
            host.sockaddr = (addr, 0, 0, 0)
        job.active += 1
        job.addresses += 1
        self.active_hosts += 1
        self.ready.append(host)

    def _admit(self) -> None:
        """Pull hosts from the jobs' lazy target streams until enough are active."""
        for job in list(self.jobs):
            while job.resolving and job.resolving[0][1].done():
                name, fut = job.resolving.popleft()
                self._resolved(job, name, fut)
            while not job.exhausted and self.active_hosts < self.max_active_hosts:
                target = next(job.targets, None)
                if target is None:
                    job.exhausted = True
                    break
                if target.address is not None:
                    self._add_host(job, target.address, target.version, target.name)
                elif self.resolver is None:
                    self._unresolved(job, target.name or "?", "no resolver")
                else:
                    name = target.name or "?"
                    job.resolving.append((name, self.resolver(name)))
            self._maybe_finish(job)

    def _resolved(self, job: Job, name: str, fut: Future[list[tuple[int, str]]]) -> None:
        try:
            addresses = fut.result()
        except Exception:
            addresses = []
        if not addresses:
            self._unresolved(job, name, "unresolved")
            return
        allowed = job.options.allowed
        for version, addr in addresses:
            if allowed and not in_networks(addr, allowed):
                job.addresses += 1
                self._emit_bulk(job, addr, name, job.ports, _ERROR, "out-of-scope")
                continue
            self._add_host(job, addr, version, name)

    def _unresolved(self, job: Job, name: str, reason: str) -> None:
        job.addresses += 1
        self._emit_bulk(job, name, name, job.ports, _ERROR, "unresolved")

    @property
    def resolving(self) -> bool:
        return any(job.resolving for job in self.jobs)

    # ---- what to send ---------------------------------------------------------------------

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

    def _settle(self, probe: Probe) -> None:
        """A probe stopped holding its socket."""
        probe.done = True
        probe.live = False
        self.inflight -= 1
        if probe.young:
            probe.young = False
            self.young -= 1

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
        if self.stalled_since is not None or self.resolving:
            wait = 0.01 if wait is None else min(wait, 0.01)
        return wait

    # ---- what happened --------------------------------------------------------------------

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

    def _cancel_others(self, probe: Probe) -> None:
        for other in probe.others():
            if other.live:
                self._settle(other)
                self.cancelled.append(other)
            else:
                other.done = True  # still queued: next_probe skips it

    def on_banner(self, probe: Probe, banner: str | None) -> None:
        self.inflight -= 1
        self._final(probe, _OPEN, "syn-ack", probe.rtt, banner)

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
                if not probe.others():
                    self._final(probe, _FILTERED, "no-response", None)
                continue
            self._settle(probe)
            out.append(probe)
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

    def _final(self, probe: Probe, state: PortState, reason: str, rtt: float | None,
               banner: str | None = None) -> None:
        host = probe.host
        if not probe.discovery:
            if host.pending > 0:
                self._emit(host, probe.port, state, reason, rtt, probe.attempt, banner)
            return
        host.disc_left -= 1
        if state is _OPEN or state is _CLOSED:
            if not host.up:
                self._host_up(host)
        elif state is _UNREACHABLE:
            host.disc_unreach = reason
        job = host.job
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
                st, why = _UNREACHABLE, host.disc_unreach
                self._emit_deferred(host, st, why)
            else:
                self._emit_deferred(host, _FILTERED, "no-response")
                st, why = _FILTERED, "host-down"
            if host.pending == 0:
                return
            n = len(job.nondisc_ports)
            self._emit_bulk(job, host.addr, host.name, job.nondisc_ports, st, why)
            host.pending -= n
            if host.pending == 0:
                self._host_done(host)

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

    # ---- outcomes -------------------------------------------------------------------------

    def drain_some(self, limit: int, runs: bool = False) -> list[tuple[Job, OutcomeItem]]:
        """About ``limit`` outcomes decided so far, in order.

        A down host's ``PortRun`` is handed out a slice at a time as single outcomes,
        so a batch stays small in memory; with ``runs`` it stays whole (it is small as it
        is) and counts as its ports toward the limit."""
        out: list[tuple[Job, OutcomeItem]] = []
        outcomes = self.outcomes
        taken = 0
        while outcomes and taken < limit:
            job, item = outcomes[0]
            if not isinstance(item, PortRun):
                outcomes.popleft()
                out.append((job, item))
                taken += 1
                continue
            want = limit - taken
            if runs or len(item.ports) <= want:
                outcomes.popleft()
                part = item
            else:
                outcomes[0] = (job, item._replace(ports=item.ports[want:]))
                part = item._replace(ports=item.ports[:want])
            taken += len(part.ports)
            if runs:
                out.append((job, part))
            else:
                out.extend([(job, outcome) for outcome in part.outcomes()])
        return out

    def drain(self) -> Iterator[tuple[Job, ProbeOutcome | None]]:
        """Outcomes decided so far, in order; (job, None) marks the end of a job."""
        outcomes = self.outcomes
        while outcomes:
            job, item = outcomes.popleft()
            if isinstance(item, PortRun):
                for outcome in item.outcomes():
                    yield job, outcome
            else:
                yield job, item
