"""The plain dict a scan leaves in ``Result.result``, expectations and baseline diffs.

The dict holds only builtins so that ``print_result``, ``json.dump`` and a later
run's ``baseline=`` all read it as is; a baseline that went through JSON comes
back with string port keys, which is why everything read back is normalised. An
address's ports are read through ports.py (``lookup``, ``ports_in_state``): most of a
full-range address's ports are folded into ``extraports`` there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

from ...engine.core.anomaly import describe, judge, judge_ports
from ...engine.core.hold import RESET_AFTER_SYN_ACK
from ...engine.core.names import NAME_REASONS
from ...engine.core.outcome import STATE_ORDER, PortState, ProbeOutcome
from ...inputs.targets import address_order
from ..common.ports import (
    FOLD_ABOVE,
    fold_of,
    folded,
    is_scanned,
    lookup,
    port_ranges,
    ports_in_state,
    reason_count,
    target_states,
)
from ..common.shapes import Diff, HostResult, PortEntry, TargetEntry

STATES = STATE_ORDER
_UP = ("open", "closed")

#: Targets as the task builds them, and as a baseline's are read back (normalised, unchecked)
Targets = dict[str, TargetEntry]
RawTargets = dict[str, dict[str, Any]]
#: What a reader of targets takes: either of the two
AnyTargets = Mapping[str, Mapping[str, Any]]
#: ``lookup``'s answer for a port that was not probed, where a reader wants a mapping
_NOT_PROBED: Mapping[str, object] = {}


def host_status(ports: Mapping[Any, Mapping[str, Any]],
                folded: Mapping[str, Any] | None = None) -> str:
    """up when anything answered (even a reset), unreachable when the network said so."""
    states = {p.get("state") for p in ports.values()}
    if folded is not None:
        states.add(folded.get("state"))
    return host_status_of(states)


def host_status_of(states: Iterable[object]) -> str:
    """``host_status`` from the address's port states."""
    seen = set(states)
    if seen & set(_UP):
        return "up"
    return "unreachable" if "unreachable" in seen else "down"


#: A state's text, by a dict lookup: an Enum's ``.value`` is a descriptor call, per port
_STATE_TEXT: dict[PortState, str] = {state: state.value for state in PortState}


def port_entry(outcome: ProbeOutcome) -> PortEntry:
    """A port's entry: the keys and order of ``scan --format json``, so a run's jsonl and
    csv rows carry what a scan's do (``attempts`` included)."""
    entry: PortEntry = {
        "state": _STATE_TEXT[outcome.state], "reason": outcome.reason,
        "rtt_ms": None if outcome.rtt_ms is None else round(outcome.rtt_ms, 3),
        "attempts": outcome.attempts}
    if outcome.banner is not None:
        entry["banner"] = outcome.banner
    if outcome.worker is not None:  # run on a cluster: the vantage point that probed it
        entry["worker"] = outcome.worker
    return entry


def build(outcomes: Iterable[ProbeOutcome], all_ports: bool = True) -> HostResult:
    """targets / open / summary for one host's outcomes (violations are added by the caller).

    ``all_ports=False`` folds each address's most common port state into ``extraports``
    (ports.py): the compact form of documents and Results.
    """
    if not all_ports:
        return _build_compact(outcomes)
    targets: Targets = {}
    for o in outcomes:
        entry = targets.setdefault(o.host, {"status": "down", "name": o.name, "ports": {}})
        entry["ports"][o.port] = port_entry(o)
    return finish_targets(targets)


def _build_compact(outcomes: Iterable[ProbeOutcome]) -> HostResult:
    """``build(all_ports=False)``, the same document, without first making an entry for
    each port it then folds: a full-range host's 65,535 entries, and a count over them,
    took 0.46 s a host, most of a two-host run's time after its scan. The fold is decided
    on (state, reason) pairs in port order, as ``compact_target`` decides it, so a tie
    goes the same way; ``test_compact`` holds the two to the same bytes."""
    by_address: dict[str, tuple[str | None, dict[int, ProbeOutcome]]] = {}
    for o in outcomes:
        found = by_address.get(o.host)
        if found is None:
            found = by_address[o.host] = (o.name, {})
        found[1][o.port] = o  # the last of a port's outcomes, as build's dict keeps it
    targets: dict[str, TargetEntry] = {}
    summary = dict.fromkeys(STATES, 0)
    for address in sorted(by_address, key=address_order) if len(by_address) > 1 else by_address:
        name, by_port = by_address[address]
        ports = sorted(by_port)
        text = _STATE_TEXT
        pairs = [(text[o.state], o.reason) for o in map(by_port.__getitem__, ports)]
        states = Counter(map(itemgetter(0), pairs))
        for state, n in states.items():
            summary[state] = summary.get(state, 0) + n
        entry: TargetEntry = {"status": host_status_of(states.keys()), "name": name}
        resets = sum(1 for state, reason in pairs
                     if state != "open" and reason == RESET_AFTER_SYN_ACK)
        anomaly = judge(len(pairs), states.get("open", 0), resets)
        fold = fold_of(pairs) if len(pairs) > FOLD_ABOVE else None
        if fold is None:
            entry["ports"] = {p: port_entry(by_port[p]) for p in ports}
            if anomaly is not None:
                entry["anomaly"] = anomaly
        else:
            if anomaly is not None:
                entry["anomaly"] = anomaly
            entry["ports"] = {p: port_entry(by_port[p])
                              for p, pair in zip(ports, pairs, strict=True) if pair != fold[0]}
            entry["extraports"] = {"state": fold[0][0], "reason": fold[0][1],
                                   "count": fold[1]}
            entry["scanned"] = port_ranges(ports)
        targets[address] = entry
    return {"targets": targets, "open": open_ports(targets), "summary": summary,
            "violations": []}


def finish_targets(targets: Targets) -> HostResult:
    ordered: Targets = {}
    summary = dict.fromkeys(STATES, 0)
    # a run's usual host has one address and a few ports: nothing to sort
    for address in sorted(targets, key=address_order) if len(targets) > 1 else targets:
        entry = targets[address]
        if len(entry["ports"]) > 1:
            entry["ports"] = dict(sorted(entry["ports"].items()))
        entry["status"] = host_status(entry["ports"])
        for port in entry["ports"].values():
            summary[port["state"]] = summary.get(port["state"], 0) + 1
        anomaly = judge_ports([(p["state"], p["reason"]) for p in entry["ports"].values()])
        if anomaly is not None:  # the host's verdict (engine/core/anomaly.py)
            entry["anomaly"] = anomaly
        ordered[address] = entry
    return {"targets": ordered, "open": open_ports(ordered), "summary": summary,
            "violations": []}


def open_ports(targets: AnyTargets) -> dict[str, list[int]]:
    return {address: ports_in_state(entry, "open") for address, entry in targets.items()}


def scan_errors(targets: AnyTargets) -> list[str]:
    """Probes the engine could not make at all: a scan failure, not a port state."""
    errors: list[str] = []
    for address, entry in targets.items():
        failed = ports_in_state(entry, "error")
        if not failed:
            continue
        reasons = sorted({str((lookup(entry, p) or _NOT_PROBED).get("reason")) for p in failed})
        if len(reasons) == 1 and reasons[0] in NAME_REASONS:
            errors.append(f"{address}: name could not be resolved: "
                          f"{NAME_REASONS[reasons[0]]} ({reasons[0]})")
        else:
            errors.append(f"{address}: {len(failed)} port(s) could not be probed "
                          f"({', '.join(reasons)})")
    return errors


def _actual(port: Mapping[str, Any] | None) -> str:
    if port is None:
        return "not scanned"
    return f"{port.get('state')} ({port.get('reason')})"


def endpoint(address: str, port: int) -> str:
    """address:port, with IPv6 in brackets: '::1:22' would itself read as an address."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def check(targets: AnyTargets, expect: Mapping[str, Iterable[int]]) -> list[str]:
    """One readable line per (address, port) that contradicts an expectation."""
    violations: list[str] = []
    if not expect:  # most hosts of a big run: nothing to check
        return violations
    wanted: list[tuple[str, tuple[int, ...], str, Any]] = [
        ("open", tuple(expect.get("open", ())), "open", lambda s: s == "open"),
        ("closed", tuple(expect.get("closed", ())), "closed", lambda s: s == "closed"),
        ("not_open", tuple(expect.get("not_open", ())), "not open", lambda s: s != "open"),
        ("filtered", tuple(expect.get("filtered", ())), "filtered", lambda s: s == "filtered"),
    ]
    only = tuple(expect["only_open"]) if "only_open" in expect else None
    for address, entry in targets.items():
        why = _anomaly_note(entry)
        for _, listed, label, holds in wanted:
            for port in listed:
                got = lookup(entry, port)
                if got is None or not holds(got.get("state")):
                    violations.append(f"{endpoint(address, port)} expected {label}, "
                                      f"got {_actual(got)}{why}")
        if only is not None:
            allowed = ", ".join(map(str, only)) or "none"
            for port in ports_in_state(entry, "open"):
                if port not in only:
                    violations.append(f"{endpoint(address, port)} expected not open "
                                      f"(only_open: {allowed}), got "
                                      f"{_actual(lookup(entry, port))}{why}")
    return violations


def _anomaly_note(entry: Mapping[str, Any]) -> str:
    """'; host ...' naming the address's anomaly, so whoever reads a failed check knows why
    port 23 "is open" (an all-open host does accept on it); '' for an ordinary host."""
    anomaly = entry.get("anomaly")
    if not anomaly:
        return ""
    counts = target_states(entry)  # folded ports too (ports.py)
    resets = reason_count(entry, RESET_AFTER_SYN_ACK)
    return f"; host is {describe(str(anomaly), counts.total(), counts['open'], resets)}"


# ---- baselines ---------------------------------------------------------------------------

def _normal_targets(raw: Mapping[str, Any]) -> RawTargets:
    """Targets with int port keys and a status, whatever JSON did to them."""
    out: RawTargets = {}
    for address, entry in raw.items():
        if not isinstance(entry, Mapping):
            continue
        ports: dict[int, dict[str, Any]] = {}
        for port, value in (entry.get("ports") or {}).items():
            try:
                number = int(port)
            except (TypeError, ValueError):
                continue
            ports[number] = dict(value) if isinstance(value, Mapping) else {"state": value}
        extra = folded(entry)
        status = entry.get("status") or host_status(ports, extra)
        out[str(address)] = {"status": status, "name": entry.get("name"), "ports": ports}
        if extra is not None:  # a compact document (ports.py); older ones list every port
            out[str(address)]["extraports"] = dict(extra)
            out[str(address)]["scanned"] = entry.get("scanned")
    return out


def baseline_targets(baseline: Mapping[str, Any], host_name: str) -> RawTargets:
    """This host's targets in a previous scan; empty when the baseline does not know it.

    Accepts a Result dict (``targets``), the saved run JSON (``hosts`` -> nornir host name
    -> ``result``) and the ``scan --format json`` document (``hosts`` -> address).
    """
    if "targets" in baseline:
        return _normal_targets(baseline.get("targets") or {})
    hosts = baseline.get("hosts") or {}
    entry = hosts.get(host_name)
    if isinstance(entry, Mapping) and "result" in entry:
        result = entry["result"]
        if isinstance(result, Mapping):
            return _normal_targets(result.get("targets") or {})
        return {}
    if hosts and all(isinstance(e, Mapping) and "ports" in e for e in hosts.values()):
        return _normal_targets(hosts)
    return {}


def diff(old: AnyTargets, new: AnyTargets) -> Diff:
    """What moved between two scans of the same targets; empty lists when nothing did.

    Only what was scanned both times is compared: a port or address left out of the new
    scan has not closed or vanished, it was simply not looked at.
    """
    opened: dict[str, list[int]] = {}
    closed: dict[str, list[int]] = {}
    appeared: list[str] = []
    vanished: list[str] = []
    for address, entry in new.items():
        before = old.get(address)
        was_open = set(ports_in_state(before, "open")) if before else set()
        now_open = set(ports_in_state(entry, "open"))
        if now_open - was_open:
            opened[address] = sorted(now_open - was_open)
        gone = {p for p in was_open - now_open if is_scanned(entry, p)}
        if gone:
            closed[address] = sorted(gone)
        was_up = before is not None and before.get("status") == "up"
        if entry["status"] == "up" and not was_up:
            appeared.append(address)
        elif was_up and entry["status"] != "up":
            vanished.append(address)
    return {"opened": opened, "closed": closed, "appeared": appeared, "vanished": vanished}


def changed(d: Mapping[str, Any]) -> bool:
    return any(bool(v) for v in d.values())


def diff_text(d: Mapping[str, Any], new: AnyTargets) -> str:
    """The diff as lines a person reads in ``print_result``: + for new, - for gone."""
    lines: list[str] = []
    lines += [f"+ host {a} appeared" for a in d["appeared"]]
    lines += [f"- host {a} vanished (now {new[a]['status']})" for a in d["vanished"]]
    for address, ports in d["opened"].items():
        lines += [f"+ {endpoint(address, p)} opened" for p in ports]
    for address, ports in d["closed"].items():
        lines += [f"- {endpoint(address, p)} closed "
                  f"(now {_actual(lookup(new[address], p))})" for p in ports]
    return "\n".join(lines)
