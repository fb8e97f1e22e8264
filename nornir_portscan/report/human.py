"""What the two tables a person reads (``scan``'s and ``run``'s) say the same way.

Open ports with their service names, ports that could not be probed or were
unreachable (never folded into "no open port"), and lists of hosts with nothing
to say, compacted into address ranges so a sweep of a /16 stays a few lines.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..engine.core.anomaly import ALL_OPEN, describe
from ..engine.core.names import NAME_REASONS
from ..engine.core.outcome import STATE_ORDER
from ._common import one_line, port_ranges, service_name

#: Line width the host lists wrap at.
WIDTH = 100
#: Ports kept per (address, state, reason) of a problem, to name them when they are few.
SAMPLE = 32


class Paint:
    """ANSI colours when the report goes to a terminal, plain text otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text


class OpenPort(NamedTuple):
    port: int
    reason: str
    rtt_ms: float | None
    banner: str | None


@dataclass
class Trouble:
    """One address's ports that could not be probed or were unreachable, by (state, reason):
    a count and the first ports, enough to name them when they are few."""

    name: str | None = None
    groups: dict[tuple[str, str], tuple[int, list[int]]] = field(default_factory=dict)

    def add(self, state: str, reason: str, ports: Sequence[int]) -> None:
        count, sample = self.groups.get((state, reason), (0, []))
        if len(sample) < SAMPLE:
            sample.extend(ports[: SAMPLE - len(sample)])
        self.groups[(state, reason)] = (count + len(ports), sample)

    def worst(self) -> tuple[str, str]:
        """The (state, reason) that hit the most ports: what the address is listed under."""
        return max(self.groups, key=lambda k: (self.groups[k][0], k))


def open_port_lines(ports: Iterable[OpenPort], indent: str, paint: Paint) -> list[str]:
    """A header and one line per open port: number, state, service, reason, RTT, banner."""
    rows = sorted(ports)
    services = [service_name(p.port) or "-" for p in rows]
    width = max([7, *map(len, services)])
    lines = [f"{indent}{'PORT':<6}  {'STATE':<5}  {'SERVICE':<{width}}  {'REASON':<8}"
             f"{'RTT':>9}  BANNER"]
    for p, service in zip(rows, services, strict=True):
        rtt = "-" if p.rtt_ms is None else f"{p.rtt_ms:.2f}ms"
        banner = one_line(p.banner, 60) if p.banner else ""
        lines.append(f"{indent}{p.port:<6}  {paint('open ', '32')}  {service:<{width}}  "
                     f"{p.reason:<8}{rtt:>9}  {banner}".rstrip())
    return lines


def trouble_text(state: str, reason: str) -> str:
    """Why an (address, port) has no state a network gave, in words, the reason kept."""
    if state == "error":
        if reason in NAME_REASONS:
            return NAME_REASONS[reason]
        if reason == "out-of-scope":
            return "outside the allowed networks"
        return f"could not be probed: {reason}"
    return f"{state}: {reason}"


def ports_text(count: int, sample: Sequence[int], total: int) -> str:
    """``all 100 ports``, ``22,443`` or ``40 ports, e.g. 1-8``: the ports a problem hit."""
    if total and count >= total:
        return "its port" if count == 1 else f"all {count} ports"
    if len(sample) >= count:
        return port_ranges(sample)
    return f"{count} ports, e.g. {port_ranges(sample[:8])}"


def counted(n: int, noun: str) -> str:
    """``1 host``, ``2 hosts``: a summary line read by people (a parser takes ``hosts?``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def host_label(address: str, name: str | None) -> str:
    """``name (address)`` when the target was a name; an unresolved name is its own label."""
    return f"{name} ({address})" if name and name != address else address


def ip_key(text: str) -> tuple[int, int] | None:
    """(version, value) of an address, None for anything else: inet_pton in C, since a
    /16's table sorts and compacts 65,536 of them (ipaddress took seconds)."""
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            return version, int.from_bytes(socket.inet_pton(family, text), "big")
        except (OSError, ValueError):
            continue
    return None


def address_key(address: str) -> tuple[int, int, str]:
    """The order of every report (IPv4, IPv6, then names), as ``address_order`` sorts."""
    key = ip_key(address)
    return (9, 0, address) if key is None else (*key, address)


def _split(label: str) -> tuple[str, int, int] | None:
    """(prefix, ip version, ip as int) for ``127.0.0.2`` or ``lab/127.0.0.2``, else None."""
    prefix, sep, tail = label.rpartition("/")
    key = ip_key(tail)
    return None if key is None else (prefix + sep, *key)


def label_order(label: str) -> tuple[str, int, int, str]:
    """Sort key that puts ``lab/127.0.0.10`` after ``lab/127.0.0.9``."""
    parts = _split(label)
    if parts is None:
        return (label, 9, 0, label)
    return (*parts, label)


def compact_labels(labels: Iterable[str]) -> list[str]:
    """Runs of consecutive addresses (under the same ``prefix/``) as ranges, in the order
    given: ``127.0.0.2, 127.0.0.3, 127.0.0.4`` is ``127.0.0.2-4``, a run across the last octet
    ``127.0.0.250-127.0.1.3``; both forms are also targets ``scan`` accepts."""
    out: list[str] = []
    run: tuple[str, int, int, int, str, str] | None = None  # prefix, version, first, last, labels

    def close() -> None:
        if run is not None:
            prefix, version, first, last, first_label, last_label = run
            if first == last:
                out.append(first_label)
            elif version == 4 and first >> 8 == last >> 8:
                out.append(f"{first_label}-{last & 0xFF}")  # nmap's 127.0.0.2-9, a target too
            else:
                out.append(f"{first_label}-{last_label[len(prefix):]}")

    for label in labels:
        parts = _split(label)
        if parts is not None and run is not None and parts[:2] == run[:2] \
                and parts[2] == run[3] + 1:
            run = (run[0], run[1], run[2], parts[2], run[4], label)
            continue
        close()
        run = None
        if parts is None:
            out.append(label)
        else:
            run = (parts[0], parts[1], parts[2], parts[2], label, label)
    close()
    return out


def host_list(head: str, labels: Sequence[str], indent: str = "") -> list[str]:
    """``head (N): a, b-c, d`` over as many lines as it takes, continuation lines indented."""
    items = compact_labels(labels)
    tokens = [f"{item}," for item in items[:-1]] + items[-1:]
    lines = [f"{indent}{head} ({len(labels)}):"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) > WIDTH and lines[-1].strip():
            lines.append(f"{indent}   ")
        lines[-1] += f" {token}"
    return lines


def shortlist(items: Sequence[str], at_most: int = 8) -> str:
    """``a, b, c and 4 more``: a list for one line of a warning."""
    shown = ", ".join(items[:at_most])
    return shown if len(items) <= at_most else f"{shown} and {len(items) - at_most} more"


def address_lines(label: str, counts: Counter[str], opened: Sequence[OpenPort],
                  trouble: Trouble | None, paint: Paint, indent: str = "") -> list[str]:
    """An address with something to say: its counts, its open ports, then each group of
    ports that could not be probed or were unreachable; one line when a single such group
    is the whole address (a name that did not resolve, a host that is unreachable)."""
    total = sum(counts.values())
    groups = trouble.groups if trouble is not None else {}
    if not opened and len(groups) == 1:
        (state, reason), (count, sample) = next(iter(groups.items()))
        if count == total:
            why = paint(trouble_text(state, reason), "31" if state == "error" else "33")
            what = (f"{count} port{'s' if count != 1 else ''} not probed" if state == "error"
                    else ports_text(count, sample, total))
            return [f"{indent}{paint(label, '1')}  {why}, {what}"]
    status = "up" if counts["open"] or counts["closed"] else (
        "unreachable" if counts["unreachable"] else "no answer")
    rest = ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts[s])
    lines = [f"{indent}{paint(label, '1')}  {status}: {rest}"]
    if opened:
        lines += open_port_lines(opened, indent + "  ", paint)
    for (state, reason), (count, sample) in sorted(groups.items()):
        why = paint(trouble_text(state, reason), "31" if state == "error" else "33")
        lines.append(f"{indent}  {ports_text(count, sample, total)}: {why}")
    return lines


def anomaly_lines(label: str, anomaly: str, counts: Counter[str], opened: Sequence[OpenPort],
                  resets: int, trouble: Trouble | None, paint: Paint,
                  indent: str = "") -> list[str]:
    """An anomalous host (engine/core/anomaly.py): an all-open host in one line instead of
    every port; a SYN proxy's block with its real open ports and a line saying why the
    rest are closed."""
    total = sum(counts.values())
    note = paint(describe(anomaly, total, counts["open"], resets), "35")
    if anomaly == ALL_OPEN:
        return [f"{indent}{paint(label, '1')}  {note}"]
    return [*address_lines(label, counts, opened, trouble, paint, indent), f"{indent}  {note}"]
