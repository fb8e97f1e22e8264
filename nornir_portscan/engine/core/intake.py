"""Intake and outbox: the work a scheduler takes in and the outcomes it hands out.

Hosts come from each job's lazy target stream only as fast as they can be scanned,
names are resolved off the loop (the resolver's futures are only looked at), and every
(address, port) leaves here exactly once: probed, decided in bulk (a down host's ports,
an unresolved name) or out of scope. That is the H x P accounting: a job ends (its
``(job, None)`` marker) only when each of its hosts has every port decided.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from ...inputs.scope import in_networks
from .names import Lookup, LookupStatus, LookupWindow, ResolverTally, reason_for
from .outcome import PortRun, PortState, ProbeOutcome, _new_outcome
from .work import Host, Job, Probe

Resolver = Callable[[str], "Future[Lookup]"]
OutcomeItem = ProbeOutcome | PortRun | None

_ERROR = PortState.ERROR


class Intake:
    """Jobs, their admitted hosts, the probes waiting to go, and the outcome queue."""

    def __init__(self, resolver: Resolver | None, max_active_hosts: int,
                 keep_alive: bool = False) -> None:
        self.resolver = resolver
        self.max_active_hosts = max_active_hosts
        self.jobs: deque[Job] = deque()
        self.ready: deque[Host] = deque()  # hosts with ports left to probe, taken in turn
        self.retry: deque[Probe] = deque()  # tries to send before any new probe
        self.outcomes: deque[tuple[Job, OutcomeItem]] = deque()
        self.active_hosts = 0  # admitted, not all ports decided, not set aside (recheck.py)
        self.feeding = 0  # jobs whose targets are not all admitted yet
        self.keep_alive = keep_alive  # a service: never done, more jobs may come
        # lookups answered, appended by the resolver's thread (deque.append is atomic)
        self.answered: deque[tuple[Job, str, int, Future[Lookup]]] = deque()
        self.reask: deque[tuple[Job, str, int]] = deque()  # names to ask again (names.py)
        self.lookups = 0  # lookups under way, all jobs (at most window.limit)
        self.window = LookupWindow()
        self.resolvers = ResolverTally()  # names each silent resolver cost

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

    @property
    def resolving(self) -> bool:
        """Some name lookup is still under way."""
        return self.lookups > 0 or bool(self.reask)

    def may_admit(self) -> bool:
        """Whether admission could add a host now (room for one, and a target left)."""
        return bool(self.feeding and self.active_hosts < self.max_active_hosts
                    and (self.answered or (self.lookups < self.window.limit and (
                        self.reask or any(not j.exhausted for j in self.jobs)))))

    # ---- the outbox ---------------------------------------------------------------------

    def emit(self, host: Host, port: int, state: PortState, reason: str,
             rtt: float | None, attempts: int, banner: str | None = None) -> None:
        """One (address, port)'s outcome."""
        job = host.job
        # tuple.__new__ skips the named tuple's Python-level constructor: this runs per outcome
        self.outcomes.append((job, _new_outcome(ProbeOutcome, (
            host.addr, port, state, reason, None if rtt is None else rtt * 1000.0, attempts,
            host.name, banner, job.options.worker))))
        job.emitted += 1
        host.pending -= 1
        if host.pending == 0:
            self._host_done(host)

    def emit_bulk(self, job: Job, addr: str, name: str | None, ports: tuple[int, ...],
                  state: PortState, reason: str) -> None:
        """Many ports of one address, one verdict, kept as one ``PortRun``."""
        if ports:
            job.emitted += len(ports)
            self.outcomes.append((job, PortRun(addr, name, ports, state, reason,
                                               job.options.worker)))

    def decide_host(self, host: Host, deferred: list[tuple[int, int]], state: PortState,
                    reason: str, probed_reason: str) -> None:
        """Every port of a host not decided yet gets the host's verdict: its probed ports
        (``deferred``: (port, attempts), ``Verdicts.take_deferred``) one by one with
        ``probed_reason``, the rest in bulk."""
        for port, attempts in deferred:
            self.emit(host, port, state, probed_reason, None, attempts)
        if host.pending == 0:
            return
        job = host.job
        n = len(job.nondisc_ports)
        self.emit_bulk(job, host.addr, host.name, job.nondisc_ports, state, reason)
        host.pending -= n
        if host.pending == 0:
            self._host_done(host)

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

    # ---- the intake ---------------------------------------------------------------------

    def unready(self) -> None:
        """The first ready host has no port left to start: out of the turn."""
        self.ready.popleft().queued = False

    def make_ready(self, host: Host) -> None:
        """The host has ports to start again (it turned out up): back in the turn."""
        if not host.queued:
            host.queued = True
            self.ready.append(host)

    def set_aside(self, host: Host) -> None:
        """A silent host held for re-probes (recheck.py) no longer holds back admission."""
        self.active_hosts -= 1

    def take_back(self, host: Host) -> None:
        """A held host is active again: re-probed, or about to be decided."""
        self.active_hosts += 1

    def add_host(self, job: Job, addr: str, version: int, name: str | None) -> None:
        host = Host(job, addr, version, name)
        job.active += 1
        job.addresses += 1
        self.active_hosts += 1
        self.ready.append(host)

    def admit(self) -> None:
        """Pull hosts from the jobs' lazy target streams until enough are active."""
        answered, reask, window = self.answered, self.reask, self.window
        while answered:  # in the order answers came, not the order names were asked
            job, name, asks, fut = answered.popleft()
            self.lookups -= 1
            try:
                lookup = fut.result()
            except Exception:
                lookup = Lookup([], LookupStatus.FAILED)
            if window.end(lookup, asks):
                reask.append((job, name, asks))  # still resolving: job.resolving stays
                continue
            job.resolving -= 1
            self._resolved(job, name, lookup)
            self._maybe_finish(job)
        while reask and self.lookups < window.limit and self.resolver is not None:
            job, name, asks = reask.popleft()
            self._ask(self.resolver, job, name, asks + 1)
        for job in list(self.jobs):
            while (not job.exhausted and self.active_hosts < self.max_active_hosts
                   and self.lookups < window.limit):
                target = next(job.targets, None)
                if target is None:
                    job.exhausted = True
                    break
                if target.address is not None:
                    self.add_host(job, target.address, target.version, target.name)
                elif self.resolver is None:
                    self._unresolved(job, target.name or "?")
                else:
                    self._look_up(self.resolver, job, target.name or "?")
            self._maybe_finish(job)

    def _look_up(self, resolver: Resolver, job: Job, name: str) -> None:
        job.resolving += 1
        self._ask(resolver, job, name, 1)

    def _ask(self, resolver: Resolver, job: Job, name: str, asks: int) -> None:
        self.lookups += 1
        fut = resolver(name)
        # called in the resolver's thread (or here, when already answered)
        fut.add_done_callback(lambda f: self.answered.append((job, name, asks, f)))

    def _resolved(self, job: Job, name: str, lookup: Lookup) -> None:
        self.resolvers.add(lookup)
        addresses = lookup.addresses
        if not addresses:
            self._unresolved(job, name, reason_for(lookup))
            return
        allowed = job.options.allowed
        for version, addr in addresses:
            if allowed and not in_networks(addr, allowed):
                job.addresses += 1
                self.emit_bulk(job, addr, name, job.ports, _ERROR, "out-of-scope")
                continue
            self.add_host(job, addr, version, name)

    def _unresolved(self, job: Job, name: str, reason: str = "unresolved") -> None:
        """A name with no address (or no resolver): one address's worth of errors."""
        job.addresses += 1
        self.emit_bulk(job, name, name, job.ports, _ERROR, reason)
