"""The human view of a nornir run: what needs reading first, the quiet hosts in one line each.

A nornir host with something to say (an open port, a violated expectation, a
port that could not be probed or was unreachable, a change since the baseline,
a failure) gets a block; the hosts whose expectations hold and where nothing is
open are listed together, as ranges (``lab/127.0.0.2-6``), since a line per host
saying "5 closed" reads like a problem and is not one. One summary line ends it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import IO, Any

from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ._common import started_at
from .document import STATES
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


def _address(address: str, target: Mapping[str, Any]) -> tuple[
        Counter[str], list[OpenPort], Trouble | None]:
    """An address's counts per state, open ports and trouble, from its Result entry
    (``counts["reset"]``: ports reset right after the handshake, for an anomaly's line)."""
    counts: Counter[str] = Counter()
    opened: list[OpenPort] = []
    trouble: Trouble | None = None
    for port, p in (target.get("ports") or {}).items():
        state = str(p.get("state"))
        counts[state] += 1
        if p.get("reason") == RESET_AFTER_SYN_ACK:
            counts["reset"] += 1
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


def _host_block(name: str, entry: Mapping[str, Any], result: Mapping[str, Any],
                paint: Paint) -> tuple[list[str], str | None]:
    """(lines, None) for a host with something to say, else ([], its quiet kind)."""
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
    if violations:
        mark = paint("VIOLATED", "1;31")
    elif errors or entry.get("failed"):
        mark = paint("ERROR", "1;31")
    else:
        mark = paint("ok", "32")
    lines = [f"{paint(name, '1')}  {mark}"]
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


def render(doc: dict[str, Any], stream: IO[str], color: bool = False) -> None:
    paint = Paint(color)
    out = stream
    quiet: dict[str, list[str]] = {"up": [], "silent": []}
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
        if kind is not None:
            quiet[kind].append(name)
        out.writelines(line + "\n" for line in lines)
    for kind, names in quiet.items():
        if names:
            head = paint(f"ok, {QUIET_HEADS[kind]}", "2")
            out.writelines(line + "\n" for line in host_list(head, names))
    out.write(summary_line(doc, paint) + "\n")
    out.flush()


def _since(doc: Mapping[str, Any]) -> str:
    """``audit.json, 2024-05-06 07:08:09 UTC``: the baseline and when it was taken."""
    baseline = doc.get("baseline") or {}
    text = str(baseline.get("file") or "the baseline")
    if baseline.get("started"):
        text += ", " + started_at(baseline).strftime("%Y-%m-%d %H:%M:%S %Z")
    return text


def summary_line(doc: Mapping[str, Any], paint: Paint | None = None) -> str:
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
