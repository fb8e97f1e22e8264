"""Prometheus metrics from a monitor's rounds: what a round's Results become, and what a
scrape sees.

Dashboards and alert rules are written against metric names, label names and label values,
so all three are fixed here and documented in docs/monitor.md: a reason outside the
documented set is reported as ``other`` rather than inventing a label value (and a series)
nobody wrote a rule for. Only ports that were open or that an expectation names get series,
so cardinality follows what matters, not the thousands of closed ports scanned.

A scrape yields the latest ``Snapshot`` whole, built fresh from immutable values: a port
that stopped being open and is not expected simply is not in it, so no stale label set
lingers the way it would in a long-lived labelled Gauge.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..engine.core.anomaly import ALL_OPEN, ANOMALIES
from ..engine.core.names import NAME_REASONS
from ..engine.core.outcome import STATE_ORDER
from ..plugins.common.ports import lookup, ports_in_state

#: The reasons each state may carry (docs/cli.md, "States and reasons").
STATE_REASONS: dict[str, frozenset[str]] = {
    "open": frozenset({"syn-ack"}),
    "closed": frozenset({"conn-refused", "self-connect", "reset-after-syn-ack"}),
    "filtered": frozenset({"no-response", "host-down", "rate-limited?"}),
    "unreachable": frozenset({"host-unreach", "net-unreach", "admin-prohibited",
                              "proto-unreach"}),
    # plus the kernel's errno names, a fixed set of this machine's (errno.errorcode)
    "error": frozenset({*NAME_REASONS, "out-of-scope"}),
}
#: The label value of a state or reason outside the documented sets.
OTHER = "other"

Labels = tuple[tuple[str, str], ...]


def state_label(state: object) -> str:
    return state if isinstance(state, str) and state in STATE_ORDER else OTHER


def reason_label(state: str, reason: object) -> str:
    """``reason`` when it is one this state is documented to carry, else ``other``."""
    if not isinstance(reason, str):
        return OTHER
    if reason in STATE_REASONS.get(state, ()):
        return reason
    if state == "error" and reason in _ERRNO_NAMES:
        return reason
    return OTHER


_ERRNO_NAMES = frozenset(errno.errorcode.values())


def expected_ports(expect: Mapping[str, Iterable[int]]) -> frozenset[int]:
    """Every port an expectation names, whichever way (open, closed, only_open, ...)."""
    return frozenset(port for ports in expect.values() for port in ports)


class PortValue(NamedTuple):
    labels: Labels
    open: int
    state: str
    reason: str


@dataclass(frozen=True)
class HostValues:
    """One nornir host's values from its last good scan."""

    ports: tuple[PortValue, ...]
    up: tuple[tuple[Labels, int], ...]
    violations: int
    # (address labels, its anomaly): only addresses that have one (engine/core/anomaly.py)
    anomalies: tuple[tuple[Labels, str], ...] = ()


def _labels(host: str, address: str, port: int | None = None) -> Labels:
    labels = [("host", host)]
    if address != host:
        labels.append(("address", address))
    if port is not None:
        labels.append(("port", str(port)))
    return tuple(labels)


def host_values(host: str, result: Mapping[str, Any], expected: frozenset[int]) -> HostValues:
    """The series of one host's Result dict (plugins/tasks/result.py) in the monitor."""
    ports: list[PortValue] = []
    up: list[tuple[Labels, int]] = []
    anomalies: list[tuple[Labels, str]] = []
    for address, entry in (result.get("targets") or {}).items():
        address = str(address)
        up.append((_labels(host, address), int(entry.get("status") == "up")))
        anomaly = entry.get("anomaly")
        if anomaly in ANOMALIES:
            anomalies.append((_labels(host, address), str(anomaly)))
        # open ports and expected ones, listed or folded into extraports (ports.py); an
        # all-open host's thousands of open ports are one series, the anomaly's
        opened = () if anomaly == ALL_OPEN else ports_in_state(entry, "open")
        for port in sorted({*opened, *expected}):
            value = lookup(entry, port)
            if value is None:
                continue
            state = state_label(value.get("state"))
            ports.append(PortValue(_labels(host, address, port), int(state == "open"),
                                   state, reason_label(state, value.get("reason"))))
    return HostValues(tuple(ports), tuple(up), len(result.get("violations") or ()),
                      tuple(anomalies))


@dataclass(frozen=True)
class Snapshot:
    """What a scrape sees: each host's last good values and the rounds' bookkeeping.

    Immutable, so the monitor swaps in a new one after a round while a scrape reads the
    old one whole. ``finished`` and ``duration`` belong to the last round without errors.
    """

    hosts: Mapping[str, HostValues] = field(default_factory=dict)
    rounds: int = 0
    errors: int = 0
    finished: float | None = None
    duration: float | None = None

    def after_round(self, fresh: Mapping[str, HostValues], failed: bool, finished: float,
                    duration: float) -> Snapshot:
        """Hosts scanned this round take their new values; a host whose scan failed keeps
        its old ones. A failed round counts an error and leaves the round's time as it was."""
        hosts = {**self.hosts, **fresh}
        if failed:
            return replace(self, hosts=hosts, rounds=self.rounds + 1, errors=self.errors + 1)
        return replace(self, hosts=hosts, rounds=self.rounds + 1, finished=finished,
                       duration=duration)

    def failed_round(self) -> Snapshot:
        """A round that produced nothing at all (the runner itself failed)."""
        return replace(self, rounds=self.rounds + 1, errors=self.errors + 1)

    def only(self, names: Iterable[str]) -> Snapshot:
        """Without the hosts an inventory reload removed: they are no longer monitored."""
        keep = set(names)
        return replace(self, hosts={n: v for n, v in self.hosts.items() if n in keep})


#: name -> help text; docs/monitor.md says the same in more words.
HELP = {
    "portscan_port_open": "1 if the port is open, 0 if not; only ports that are open or "
                          "named in an expectation",
    "portscan_port_state": "1 for the port's current state and reason (fixed sets; see "
                           "docs/monitor.md); same ports as portscan_port_open",
    "portscan_expectations_violated": "number of the host's expectations violated in its "
                                      "last scan",
    "portscan_host_up": "1 if the address answered on any port (open or closed), else 0",
    "portscan_host_anomaly": "1 for an address whose ports cannot be read one by one: "
                             "anomaly=all-open (every port accepts) or syn-proxy (handshakes "
                             "reset right after completing); absent for ordinary addresses",
    "portscan_scan_duration_seconds": "how long the last round without errors took",
    "portscan_last_round_timestamp_seconds": "Unix time the last round without errors ended",
    "portscan_rounds": "rounds run since the monitor started",
    "portscan_round_errors": "rounds in which the inventory could not be read or a host's "
                             "scan failed; such a host keeps its last values",
}


def families(snap: Snapshot) -> list[Metric]:
    """Every portscan_* metric family of a snapshot, in a fixed order."""
    port_open = Metric("portscan_port_open", HELP["portscan_port_open"], "gauge")
    port_state = Metric("portscan_port_state", HELP["portscan_port_state"], "gauge")
    violated = Metric("portscan_expectations_violated", HELP["portscan_expectations_violated"],
                      "gauge")
    host_up = Metric("portscan_host_up", HELP["portscan_host_up"], "gauge")
    host_anomaly = Metric("portscan_host_anomaly", HELP["portscan_host_anomaly"], "gauge")
    for name in sorted(snap.hosts):
        values = snap.hosts[name]
        for labels, anomaly in values.anomalies:
            host_anomaly.add_sample("portscan_host_anomaly", {**dict(labels), "anomaly": anomaly},
                                    1)
        violated.add_sample("portscan_expectations_violated", {"host": name},
                            values.violations)
        for labels, up in values.up:
            host_up.add_sample("portscan_host_up", dict(labels), up)
        for port in values.ports:
            port_open.add_sample("portscan_port_open", dict(port.labels), port.open)
            port_state.add_sample("portscan_port_state",
                                  {**dict(port.labels), "state": port.state,
                                   "reason": port.reason}, 1)
    out: list[Metric] = [port_open, port_state, violated, host_up, host_anomaly]
    duration = GaugeMetricFamily("portscan_scan_duration_seconds",
                                 HELP["portscan_scan_duration_seconds"])
    finished = GaugeMetricFamily("portscan_last_round_timestamp_seconds",
                                 HELP["portscan_last_round_timestamp_seconds"])
    if snap.finished is not None and snap.duration is not None:
        duration.add_metric([], snap.duration)
        finished.add_metric([], snap.finished)
    out += [duration, finished,
            CounterMetricFamily("portscan_rounds", HELP["portscan_rounds"], value=snap.rounds),
            CounterMetricFamily("portscan_round_errors", HELP["portscan_round_errors"],
                                value=snap.errors)]
    return out


class SnapshotCollector(Collector):
    """A prometheus_client collector serving whatever snapshot was last ``publish``ed."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def publish(self, snap: Snapshot) -> None:
        self.snapshot = snap  # one reference swap: a scrape sees the old or the new, whole

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot)
