"""One address's ports in a Result or a document, listed or folded: the one way to read them.

A full-range audit of one address is 65,535 probes, nearly all of them ``closed``;
listing each made a 7-host ``--save`` 23.7 MB and ``print_result`` half a million lines.
So an address's most common port state (never ``open``), when more than ``FOLD_ABOVE``
ports share it, is given once, as nmap does, in ``extraports``::

    {"status": "up", "name": None,
     "ports": {2222: {...}},                                   # only the other ports
     "extraports": {"state": "closed", "reason": "conn-refused", "count": 65534},
     "scanned": "1-65535"}                                     # which ports were probed

A state is folded with its reason: ports of the same state with another reason stay
listed, so no reason is lost. A folded port has no ``rtt_ms`` or ``attempts`` of its
own. Documents from before (every port listed, no ``extraports``) read the same way.
Port keys are ints in memory and strings after JSON: every reader here takes both.

Expectations, diffs, baselines, the reports and ``ScanResult.state`` read ports only
through ``lookup``, ``each_port`` and ``ports_in_state``: code that indexes
``target["ports"]`` itself misses the folded ports.
"""

from __future__ import annotations

import bisect
import functools
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .shapes import Extraports, PortEntry, PortKey, TargetEntry

#: A state shared by more ports than this is folded into ``extraports`` (nmap's number).
FOLD_ABOVE = 25
#: Never folded: an open port is what a reader looks for, and ``open`` lists them anyway.
_NEVER_FOLDED = frozenset({"open"})


def port_ranges(ports: Iterable[int]) -> str:
    """``1-3,5,7-8``: the compact list nmap writes in ``scaninfo services``."""
    out: list[str] = []
    numbers = sorted(set(ports))
    if numbers and numbers[-1] - numbers[0] + 1 == len(numbers) > 1:  # one run: 1-65535
        return f"{numbers[0]}-{numbers[-1]}"
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(out)


@functools.lru_cache(maxsize=256)
def _ranges(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(starts, ends) of a ``port_ranges`` string; ValueError when it is not one."""
    starts: list[int] = []
    ends: list[int] = []
    for part in text.split(",") if text else ():
        lo, sep, hi = part.partition("-")
        first, last = int(lo), int(hi) if sep else int(lo)
        if not 0 <= first <= last <= 65535 or (ends and first <= ends[-1]):
            raise ValueError(f"bad port range {part!r}")
        starts.append(first)
        ends.append(last)
    return tuple(starts), tuple(ends)


def _scanned(target: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ranges of ``scanned``; none when it is missing or unreadable (a document that
    was not checked: a baseline is, ``scanned_error``), so only listed ports count then."""
    try:
        return _ranges(str(target.get("scanned") or ""))
    except ValueError:
        return (), ()


def _in_ranges(target: Mapping[str, Any], port: int) -> bool:
    starts, ends = _scanned(target)
    i = bisect.bisect_right(starts, port) - 1
    return i >= 0 and port <= ends[i]


def _listed(target: Mapping[str, Any]) -> Mapping[PortKey, PortEntry]:
    """The listed ports: what a target read back from JSON holds there is taken on trust
    (a baseline's shape is checked where it is loaded, plugins/tasks/baseline.py)."""
    ports = target.get("ports")
    # a dict is the common case, and an ABC's isinstance costs a run per port read
    return ports if type(ports) is dict or isinstance(ports, Mapping) else {}


def _get(ports: Mapping[PortKey, PortEntry], port: int) -> PortEntry | None:
    entry = ports.get(port)
    return ports.get(str(port)) if entry is None else entry


def folded(target: Mapping[str, Any]) -> Extraports | None:
    extra: Extraports | None = target.get("extraports")
    if extra is None:
        return None
    return extra if isinstance(extra, Mapping) else None


def _folded_entry(extra: Extraports) -> PortEntry:
    return {"state": extra.get("state"), "reason": extra.get("reason")}


def lookup(target: Mapping[str, Any], port: int) -> PortEntry | None:
    """A port's entry (state, reason, ...), listed or folded; None when it was not probed."""
    entry = _get(_listed(target), port)
    if entry is not None:
        return {**entry} if isinstance(entry, Mapping) else {"state": entry}
    extra = folded(target)
    if extra is not None and _in_ranges(target, port):
        return _folded_entry(extra)
    return None


def is_scanned(target: Mapping[str, Any], port: int) -> bool:
    return lookup(target, port) is not None


def each_port(target: Mapping[str, Any]) -> Iterator[tuple[int, PortEntry]]:
    """Every probed port of an address and its entry, in port order, folded ones included."""
    listed = {int(p): v for p, v in _listed(target).items()}
    extra = folded(target)
    if extra is None:
        for port in sorted(listed):
            entry = listed[port]
            yield port, {**entry} if isinstance(entry, Mapping) else {"state": entry}
        return
    starts, ends = _scanned(target)
    probed = (p for first, last in zip(starts, ends, strict=True)
              for p in range(first, last + 1))
    previous = None
    for port in heapq.merge(probed, sorted(listed)):  # a listed port outside: still a probe
        if port == previous:
            continue
        previous = port
        got = listed.get(port)
        yield port, {**got} if isinstance(got, Mapping) else _folded_entry(extra)


def ports_in_state(target: Mapping[str, Any], state: str) -> list[int]:
    """The ports of an address in ``state``, sorted; cheap unless that state is folded."""
    extra = folded(target)
    if extra is not None and extra.get("state") == state:
        return [p for p, v in each_port(target) if v.get("state") == state]
    return sorted(int(p) for p, v in _listed(target).items()
                  if (type(v) is dict or isinstance(v, Mapping)) and v.get("state") == state)


def target_states(target: Mapping[str, Any]) -> Counter[str]:
    """How many ports of the address are in each state, folded ones included."""
    counts: Counter[str] = Counter(
        str(v.get("state")) for v in _listed(target).values() if isinstance(v, Mapping))
    extra = folded(target)
    if extra is not None:
        counts[str(extra.get("state"))] += int(extra.get("count") or 0)
    return counts


def reason_count(target: Mapping[str, Any], reason: str) -> int:
    """How many ports of the address carry ``reason``, folded ones included."""
    listed = sum(1 for v in _listed(target).values()
                 if isinstance(v, Mapping) and v.get("reason") == reason)
    extra = folded(target)
    if extra is not None and extra.get("reason") == reason:
        listed += int(extra.get("count") or 0)
    return listed


def fold_of(pairs: Iterable[tuple[Any, Any]]) -> tuple[tuple[Any, Any], int] | None:
    """The (state, reason) to fold and how many ports share it: the most common of the
    address's non-open pairs (the first seen, in port order, of equally common ones),
    when more than ``FOLD_ABOVE`` share it; None to list every port."""
    shared = Counter(pair for pair in pairs if pair[0] not in _NEVER_FOLDED)
    if not shared:
        return None
    pair, count = shared.most_common(1)[0]
    return (pair, count) if count > FOLD_ABOVE else None


def compact_target(target: TargetEntry) -> TargetEntry:
    """The address's entry with its most common non-open (state, reason) folded, when more
    than ``FOLD_ABOVE`` ports share it; as it is otherwise (and when already folded)."""
    if folded(target) is not None:
        return {**target}
    ports = _listed(target)
    if len(ports) <= FOLD_ABOVE:  # no state can be shared by more: a run's usual host
        return {**target}
    fold = fold_of((v.get("state"), v.get("reason")) for v in ports.values())
    if fold is None:
        return {**target}
    (state, reason), count = fold
    out: TargetEntry = {**target}
    del out["ports"]  # put back last, with only the ports that are not folded
    out["ports"] = {p: v for p, v in ports.items()
                    if v.get("state") != state or v.get("reason") != reason}
    out["extraports"] = {"state": state, "reason": reason, "count": count}
    out["scanned"] = port_ranges(int(p) for p in ports)
    return out


def compact_targets(targets: Mapping[str, TargetEntry]) -> dict[str, TargetEntry]:
    return {address: compact_target(entry) for address, entry in targets.items()}


def scanned_error(target: Mapping[str, Any]) -> str | None:
    """Why a target's ``extraports``/``scanned`` cannot be read, or None when they can."""
    if "extraports" not in target:
        return None
    extra = target["extraports"]
    if not isinstance(extra, Mapping) or not isinstance(extra.get("state"), str) or (
            not isinstance(extra.get("count"), int)):
        return "extraports must be a mapping with a 'state' and a 'count'"
    scanned = target.get("scanned")
    if not isinstance(scanned, str):
        return "scanned must be a port range list (1-1024,8080) beside extraports"
    try:
        _ranges(scanned)
    except ValueError as exc:
        return f"scanned {scanned!r:.60}: {exc}"
    return None
