"""The audit's decisions, with no I/O: what to probe, what the outcomes mean for the records,
and what ``--apply`` would write. Everything here runs the same in a test without a server.

Probing: every address of the scope's networks, on one port list (the user's ``-p`` and
every TCP port a service of the scope documents), so each address gets the same ports and
the scan is one engine plan (rate, resume, cluster and every report reused as they are).

The findings:

- ``silent-address``: an IP record with status Active gave no sign of life on any port
  (no port open, none refused);
- ``missing-service``: a documented TCP service port of an address is not open (its state
  and reason said). A service bound to no address applies to its owner's primary ones;
- ``undocumented-service``: an address of a record has an open port that no service of its
  device or VM lists (no owner: no service can list it);
- ``unknown-host``: an address without a record answered (a port open or refused), with
  its open ports (which get no finding of their own).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..engine.core.outcome import PortRun, PortState, ProbeOutcome
from ..inputs.services import SERVICES
from .model import (
    KINDS,
    Changes,
    Finding,
    NewAddress,
    NewService,
    Prefix,
    Service,
    Snapshot,
)

ACTIVE = "active"
_NAMES = {port: name for name, port in reversed(list(SERVICES.items()))}


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def in_scope(snapshot: Snapshot, address: str) -> bool:
    ip = _ip(address)
    return any(ip in ipaddress.ip_network(n, strict=False) for n in snapshot.networks)


def tcp_services(snapshot: Snapshot) -> dict[str, list[int]]:
    """Owner id -> every TCP port its services list (sorted, once each)."""
    out: dict[str, set[int]] = {}
    for s in snapshot.services:
        if s.protocol.lower() == "tcp":
            out.setdefault(s.owner.id, set()).update(s.ports)
    return {k: sorted(v) for k, v in out.items()}


def audit_ports(snapshot: Snapshot, extra: Iterable[int]) -> tuple[int, ...]:
    """The ports every address is probed on: ``extra`` (``-p``) and every documented TCP
    port of an owner with an address in scope."""
    ports = set(extra)
    owners = {a.owner.id for a in snapshot.addresses.values() if a.owner is not None}
    for s in snapshot.services:
        if s.protocol.lower() == "tcp" and s.owner.id in owners:
            ports.update(s.ports)
    return tuple(sorted(ports))


@dataclass
class Sightings:
    """What the scan saw, kept small: which addresses answered, their open ports, and the
    state of each documented (address, port) pair (``watch``)."""

    watch: frozenset[tuple[str, int]] = frozenset()
    alive: set[str] = field(default_factory=set)
    open: dict[str, set[int]] = field(default_factory=dict)
    states: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    probes: int = 0

    def add(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        watch = self.watch
        for o in outcomes:
            self.probes += 1
            if o.state is PortState.OPEN:
                self.alive.add(o.host)
                self.open.setdefault(o.host, set()).add(o.port)
            elif o.state is PortState.CLOSED:
                self.alive.add(o.host)
            if (o.host, o.port) in watch:
                self.states[(o.host, o.port)] = (o.state.value, o.reason)
        for run in runs:  # a host that gave no sign of life: every port decided at once
            self.probes += len(run.ports)
            for port in run.ports:
                if (run.host, port) in watch:
                    self.states[(run.host, port)] = (run.state.value, run.reason)


def watched(snapshot: Snapshot) -> frozenset[tuple[str, int]]:
    """The (address, port) pairs a documented service expects open."""
    return frozenset((address, port) for address, service in _applicable(snapshot)
                     for port in service.ports)


def _applicable(snapshot: Snapshot) -> Iterable[tuple[str, Service]]:
    """(address in scope, TCP service) for each service and address it applies to."""
    for s in snapshot.services:
        if s.protocol.lower() != "tcp":
            continue
        bound = s.addresses or snapshot.primaries.get(s.owner.id, ())
        for address in bound:
            record = snapshot.addresses.get(address)
            if record is not None and record.owner is not None and record.owner.id == s.owner.id:
                yield address, s


def find(snapshot: Snapshot, seen: Sightings) -> list[Finding]:
    """Every finding, ordered by kind, then address, then port."""
    documented = tcp_services(snapshot)
    found: list[Finding] = []
    for address, record in snapshot.addresses.items():
        owner = record.owner
        if address not in seen.alive and record.status.lower() == ACTIVE:
            found.append(Finding("silent-address", address, record.ref, owner=owner))
        listed = set(documented.get(owner.id, ())) if owner is not None else set()
        for port in sorted(seen.open.get(address, set()) - listed):
            found.append(Finding("undocumented-service", address, owner or record.ref,
                                 port=port, state="open", reason="syn-ack", owner=owner))
    for address, service in _applicable(snapshot):
        for port in service.ports:
            state, reason = seen.states.get((address, port), ("unprobed", "no-outcome"))
            if state != "open":
                found.append(Finding("missing-service", address, service.ref,
                                     port=port, state=state, reason=reason,
                                     owner=service.owner))
    for address in seen.alive - snapshot.addresses.keys():
        prefix = narrowest_prefix(snapshot.prefixes, address)
        found.append(Finding("unknown-host", address, None if prefix is None else prefix.ref,
                             state="up", reason="answered",
                             open_ports=tuple(sorted(seen.open.get(address, ())))))
    order = {kind: i for i, kind in enumerate(KINDS)}
    found.sort(key=lambda f: (order[f.kind], _ip(f.address).version, _ip(f.address),
                              f.port or 0))
    return found


def narrowest_prefix(prefixes: Iterable[Prefix], address: str) -> Prefix | None:
    """The most specific prefix holding ``address`` (where a new record of it belongs)."""
    ip = _ip(address)
    best: tuple[int, Prefix] | None = None
    for p in prefixes:
        net = ipaddress.ip_network(p.network, strict=False)
        if ip.version == net.version and ip in net and (best is None
                                                        or net.prefixlen > best[0]):
            best = (net.prefixlen, p)
    return None if best is None else best[1]


def service_name(port: int) -> str:
    """The name a created service gets: the port's well-known name and the port
    (``http-8080``), so two created on one device never clash."""
    return f"{_NAMES.get(port, 'tcp')}-{port}"


def changes(snapshot: Snapshot, findings: Sequence[Finding], seen: Sightings, today: str,
            services: bool = False) -> Changes:
    """What ``--apply`` writes: the last-seen date of each documented address seen alive
    (only where it is not ``today`` already: a second run the same day writes nothing),
    a record of each unknown host, and with ``services`` a service for each undocumented
    open port of an address whose device or VM is known."""
    out = Changes(today=today)
    for address, record in snapshot.addresses.items():
        if address in seen.alive and record.last_seen != today:
            out.seen.append(record)
    for f in findings:
        if f.kind == "unknown-host":
            prefix = narrowest_prefix(snapshot.prefixes, f.address)
            if prefix is None:
                out.skipped.append(f"{f.address}: no prefix of the source of truth holds it; "
                                   f"not recorded")
            else:
                out.new_addresses.append(NewAddress(f.address, prefix))
        elif f.kind == "undocumented-service" and services and f.port is not None:
            owned = snapshot.addresses[f.address]
            if owned.owner is None:
                out.skipped.append(f"{f.address} port {f.port}: the address belongs to no "
                                   f"device or virtual machine; no service recorded")
            else:
                out.new_services.append(NewService(owned.owner, owned, f.port,
                                                   service_name(f.port)))
    return out
