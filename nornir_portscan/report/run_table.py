"""The human view of a nornir run: what needs reading first, the quiet hosts in one line each.

A nornir host with something to say (an open port, a violated expectation, a
port that could not be probed or was unreachable, a change since the baseline,
a failure) gets a block; the hosts whose expectations hold and where nothing is
open are listed together, as ranges (``lab/127.0.0.2-6``), since a line per host
saying "5 closed" reads like a problem and is not one. One summary line ends it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import IO, Any

from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..engine.core.names import NAME_REASONS
from ..plugins.common.ports import (
    each_port,
    lookup,
    ports_in_state,
    reason_count,
    target_states,
)
from ..plugins.common.shapes import HostResult, TargetEntry
from ._common import port_ranges, started_at
from .document import STATES, HostEntry, RunDocument
from .human import (
    OpenPort,
    Paint,
    Trouble,
    address_key,
    address_lines,
    anomaly_lines,
    counted,
    host_label,
    host_list,
    label_order,
)

_TROUBLE = ("error", "unreachable")


def _address(address: str, target: TargetEntry) -> tuple[
        Counter[str], list[OpenPort], Trouble | None]:
    """An address's counts per state, open ports and trouble, from its Result entry
    (``counts["reset"]``: ports reset right after the handshake, for an anomaly's line)."""
    counts = target_states(target)
    resets = reason_count(target, RESET_AFTER_SYN_ACK)
    if resets:
        counts["reset"] = resets
    opened: list[OpenPort] = []
    trouble: Trouble | None = None
    # every port only where one could not be probed; else the open ones (never folded)
    looked: Iterable[tuple[int, Mapping[str, Any]]] = (
        each_port(target) if any(counts[s] for s in _TROUBLE)
        else ((p, lookup(target, p) or {}) for p in ports_in_state(target, "open")))
    for port, p in looked:
        state = str(p.get("state"))
        if state == "open":
            opened.append(OpenPort(int(port), str(p.get("reason")), p.get("rtt_ms"),
                                   p.get("banner")))
        elif state in _TROUBLE:
            trouble = trouble or Trouble(target.get("name"))
            trouble.add(state, str(p.get("reason")), (int(port),))
    return counts, opened, trouble


def _quiet_kind(counts: Counter[str], opened: list[OpenPort],
                trouble: Trouble | None) -> str | None:
    """``up`` or ``silent`` for an address with nothing to say, else None."""
    if opened or trouble is not None:
        return None
    return "up" if counts["closed"] else "silent"


QUIET_HEADS = {"up": "up, no open port", "silent": "no answer"}

#: How the table says each expectation a host was checked for, in this order.
_CHECKED = (("open", "{} open"), ("closed", "{} closed"), ("not_open", "{} not open"),
            ("filtered", "{} filtered"), ("only_open", "only {} open"))


def checked(result: HostResult) -> str:
    """``22 open, 23 not open``: what the host's expectations asked for, so a host that
    passed says what it passed; empty for a host with no expectations."""
    expect = result.get("expect")
    if not isinstance(expect, Mapping):
        return ""
    parts = []
    for key, form in _CHECKED:
        ports = expect.get(key)
        if ports:
            parts.append(form.format(port_ranges(int(p) for p in ports)))
    return ", ".join(parts)


def _name_failure(opened: list[OpenPort], trouble: Trouble | None) -> str | None:
    """The reason when the address is a name that gave no address (every port's), else None."""
    if opened or trouble is None or len(trouble.groups) != 1:
        return None
    state, reason = next(iter(trouble.groups))
    return reason if state == "error" and reason in NAME_REASONS else None


def _host_block(name: str, entry: HostEntry, result: HostResult,
                paint: Paint) -> tuple[list[str], str | None]:
    """(lines, None) for a host with something to say, else ([], its quiet kind). The
    block's first line ends with what its expectations checked."""
    violations = [str(v) for v in result.get("violations") or []]
    errors = result.get("errors") or []
    diff = str(entry.get("diff") or "")
    addresses = []
    for address, target in sorted((result.get("targets") or {}).items(),
                                  key=lambda kv: address_key(str(kv[0]))):
        counts, opened, trouble = _address(str(address), target)
        addresses.append((str(address), target, counts, opened, trouble,
                          None if target.get("anomaly") else _quiet_kind(counts, opened, trouble)))
    kinds = {a[5] for a in addresses}
    if not violations and not errors and not diff and None not in kinds and len(kinds) == 1:
        return [], kinds.pop()
    failures = {_name_failure(a[3], a[4]) for a in addresses}
    if not violations and not diff and len(failures) == 1 and None not in failures:
        return [], failures.pop()  # a host by a name that gave no address: listed by why
    if violations:
        mark = paint("VIOLATED", "1;31")
    elif errors or entry.get("failed"):
        mark = paint("ERROR", "1;31")
    else:
        mark = paint("ok", "32")
    asked = checked(result)
    lines = [f"{paint(name, '1')}  {mark}" + (f"  checked: {asked}" if asked else "")]
    quiet: dict[str, list[str]] = {"up": [], "silent": []}
    for address, target, counts, opened, trouble, kind in addresses:
        label = host_label(address, target.get("name"))
        anomaly = target.get("anomaly")
        if anomaly:
            resets = counts.pop("reset", 0)
            lines += anomaly_lines(label, str(anomaly), counts, opened, resets, trouble, paint,
                                   "  ")
        elif kind is not None:
            quiet[kind].append(label)
        else:
            counts.pop("reset", None)  # not a state: address_lines lists states only
            lines += address_lines(label, counts, opened, trouble, paint, "  ")
    for kind, labels in quiet.items():
        if labels:
            lines += host_list(paint(QUIET_HEADS[kind], "2"), labels, "  ")
    lines += ["  " + paint(f"! {v}", "31") for v in violations]
    lines += [f"  ~ {line}" for line in diff.splitlines()]
    return lines, None


def render(doc: RunDocument, stream: IO[str], color: bool = False) -> None:
    paint = Paint(color)
    out = stream
    # quiet hosts by kind, then by what they were checked for: one line each
    quiet: dict[tuple[str, str], list[str]] = {}
    unnamed: dict[str, list[str]] = {reason: [] for reason in NAME_REASONS}
    for name in sorted(doc["hosts"], key=label_order):
        entry = doc["hosts"][name]
        result = entry.get("result") if isinstance(entry.get("result"), dict) else None
        if entry.get("failed") and result is None:
            out.write(paint(f"{name}: FAILED", "1;31") + f"  {entry.get('error') or ''}\n")
            continue
        if result is None:
            # the run stopped before this host: say so rather than drop it
            out.write(f"{paint(name, '1')}  {paint('not scanned', '33')}\n")
            continue
        lines, kind = _host_block(name, entry, result, paint)
        if kind in unnamed:
            unnamed[kind].append(name)
        elif kind is not None:
            quiet.setdefault((kind, checked(result)), []).append(name)
        out.writelines(line + "\n" for line in lines)
    for reason, names in unnamed.items():
        if names:
            head = paint(f"ERROR, {NAME_REASONS[reason]}", "1;31")
            out.writelines(line + "\n" for line in host_list(head, names))
    for (kind, asked), names in sorted(quiet.items(), key=lambda kv: (
            list(QUIET_HEADS).index(kv[0][0]), kv[0][1])):
        head = paint(f"ok, {QUIET_HEADS[kind]}", "2") + (f", checked {asked}" if asked else "")
        out.writelines(line + "\n" for line in host_list(head, names))
    out.write(summary_line(doc, paint) + "\n")
    out.flush()


def _since(doc: RunDocument) -> str:
    """``audit.json, 2024-05-06 07:08:09 UTC``: the baseline and when it was taken."""
    baseline = doc.get("baseline") or {}
    text = str(baseline.get("file") or "the baseline")
    if baseline.get("started"):
        text += ", " + started_at(baseline).strftime("%Y-%m-%d %H:%M:%S %Z")
    return text


def summary_line(doc: RunDocument, paint: Paint | None = None) -> str:
    """The run in one line: the table's last line, and stderr's when the report is a file."""
    paint = paint or Paint(False)
    s = doc.get("summary", {})
    counts = s.get("counts", {})
    parts = ", ".join(f"{counts[k]} {k}" for k in STATES if counts.get(k))
    status = " (interrupted: partial results)" if doc.get("interrupted") else ""
    viol = s.get("violations", 0)
    changed = sum(1 for e in doc["hosts"].values() if e.get("changed"))
    if changed:
        change = f", {changed} host(s) changed since {_since(doc)}"
    elif doc.get("baseline") and not doc.get("interrupted"):
        change = f", no change since {_since(doc)}"
    else:
        change = ""
    return (f"{counted(s.get('hosts', 0), 'host')}, {counted(s.get('probes', 0), 'probe')} in "
            f"{doc.get('elapsed_s', 0):.2f} s: {parts or 'nothing scanned'}; "
            + (paint(f"{viol} violation(s)", "1;31") if viol else "no violations")
            + (f", {s.get('failed')} host(s) failed" if s.get("failed") else "")
            + change + status)
