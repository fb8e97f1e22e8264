"""Host discovery: a few ports tell an up host from a down or unreachable one, and a
down host's other ports are decided without a probe."""

from __future__ import annotations

import itertools

from .outcome import PortState
from .retries import Retries
from .work import Host, Probe

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE = PortState.UNREACHABLE


class Discovery(Retries):
    """What each discovery answer means for its host."""

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
