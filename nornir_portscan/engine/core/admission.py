"""The scheduler's ground floor: its state, the jobs and hosts it admits, and the
outcomes it hands out.

Hosts come from each job's lazy target stream only as fast as they can be scanned,
names are resolved off the loop, and every (address, port) leaves here exactly once:
probed, decided in bulk (a down host's ports, an unresolved name) or out of scope.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from ...inputs.scope import in_networks
from .outcome import PortRun, PortState, ProbeOutcome, _new_outcome
from .timing import CongestionWindow, RateLimiter, RttEstimator
from .work import Host, IcmpEvidence, Job, Probe

Resolver = Callable[[str], "Future[list[tuple[int, str]]]"]
OutcomeItem = ProbeOutcome | PortRun | None

_ERROR = PortState.ERROR
#: Re-probes in the first group of an ICMP rate-limit recheck (discovery.py).
RECHECK_GROUP = 4


class Admission:
    """State shared by every part of the scheduler, and the admission of work into it."""

    def __init__(self, *, concurrency: int, rate: float | None = None,
                 resolver: Resolver | None = None, rtt: RttEstimator | None = None,
                 max_active_hosts: int | None = None,
                 icmp_evidence: IcmpEvidence | None = None) -> None:
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
        # re-probes of silent hosts an ICMP rate limit may have silenced (discovery.py)
        self.icmp = icmp_evidence or IcmpEvidence()
        self.held_new: deque[Host] = deque()  # silent hosts set aside, not yet sorted
        self.held: deque[Host] = deque()  # ... of networks that rate-limit: to re-probe
        self.recheck_left = 0  # re-probes of the current group not yet decided
        self.recheck_errors = 0  # ICMP errors the current group drew
        self.recheck_silent: list[Host] = []  # the current group's silent hosts
        self.recheck_group = RECHECK_GROUP
        self.recheck_after = 0.0  # no group before this: the limiter needs time
        self.rechecks_sent = 0
        self.rechecks_recovered = 0  # held hosts a re-probe found unreachable or up

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

    def _settle(self, probe: Probe) -> None:
        """A probe stopped holding its socket."""
        probe.done = True
        probe.live = False
        self.inflight -= 1
        if probe.young:
            probe.young = False
            self.young -= 1

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
