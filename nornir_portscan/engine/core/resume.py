"""A resumed scan's work: the jobs that probe only what the journal has not decided.

Given what is decided (``decided.py``) a plan (or one shard's share of it) becomes:

- one job over the targets nothing of which is decided: the scan as it would have been,
  its hosts streamed lazily as ever; a fully decided address is never admitted;
- one small job per address decided in part, over its remaining ports only, and without
  host discovery when a decided port answered (the host is known up);
- for a name decided in part: one job per address of a fresh lookup (done by the I/O
  side before the scan, ``ResumePoint.lookups``), over that address's remaining ports;
  what the engine would have decided without a probe (an address outside the allowed
  networks, a name that does not resolve) comes back as port runs, as the intake does.

The scheduler is untouched: a resumed scan is only more jobs. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from ...inputs.scope import in_networks
from ...inputs.targets import Target, TargetSource, TargetSpec
from .decided import DecidedPairs, PortRow
from .outcome import PortRun, PortState
from .plan import ScanPlan
from .work import Job

Lookup = list[tuple[int, str]]  # (ip version, address) pairs, as the resolver gives them


@dataclass
class ResumePoint:
    """What a resumed plan knows: its decided pairs, and fresh lookups of the names decided
    in part (one lookup shared by every shard, so all see the same addresses)."""

    decided: DecidedPairs
    lookups: dict[int, Lookup] = field(default_factory=dict)

    def names_to_look_up(self) -> list[tuple[int, str]]:
        """(position, name) of the names decided in part, except names that did not resolve
        last time (they stay unresolved: their outcomes carry the name as host)."""
        out: list[tuple[int, str]] = []
        for pos, rows in self.decided.names.items():
            target = self.decided.spec.at(pos)
            if target is None or target.name is None or target.name in rows:
                continue
            out.append((pos, target.name))
        return out


def _holds(spec: TargetSource) -> Callable[[int], bool]:
    holds = getattr(spec, "holds", None)
    return holds if holds is not None else (lambda pos: True)


def resume_work(share: ScanPlan, point: ResumePoint,
                key: int) -> tuple[list[Job], list[PortRun]]:
    """The jobs for ``share`` (the plan, or a shard's share of it) and the outcomes to
    hand out without a probe. ``key`` orders ports, as a fresh scan's job's does."""
    decided = point.decided
    spec = decided.spec
    options = share.options
    ports = share.ports
    holds = _holds(share.spec)
    jobs = [Job(_untouched(share.spec, decided), ports, options, key=key)]
    runs: list[PortRun] = []

    def add(target: Target, row: PortRow | None) -> None:
        left = decided.remaining(row, ports)
        if left:
            known_up = row is not None and row.up
            jobs.append(Job([target], left, replace(options, discovery=False) if known_up
                            else options, key=key))

    for pos, row in decided.partial_positions():
        target = spec.at(pos)
        if target is not None and holds(pos):
            add(target, row)
    for pos, rows in list(decided.names.items()):
        target = spec.at(pos)
        if target is None or target.name is None or not holds(pos):
            continue
        name = target.name
        unresolved = rows.get(name)
        lookup = point.lookups.get(pos, [])
        if unresolved is not None or not lookup:
            # it did not resolve last time (it stays so), or it does not now: the addresses
            # it had keep their remaining ports; a name that never had one is unresolved
            for addr, row in rows.items():
                if addr != name:
                    add(Target(addr, name, 6 if ":" in addr else 4), row)
            if unresolved is not None or not any(addr != name for addr in rows):
                left = decided.remaining(unresolved, ports)
                if left:
                    runs.append(PortRun(name, name, left, PortState.ERROR, "unresolved"))
            continue
        for version, addr in lookup:
            found = rows.get(addr)
            if options.allowed and not in_networks(addr, options.allowed):
                left = decided.remaining(found, ports)
                if left:
                    runs.append(PortRun(addr, name, left, PortState.ERROR, "out-of-scope"))
                continue
            add(Target(addr, name, version), found)
    return jobs, runs


def _untouched(targets: TargetSource, decided: DecidedPairs) -> Iterator[Target]:
    """The targets nothing of which is decided, lazily (a /8 is not listed up front)."""
    keep = decided.untouched
    for target in targets:
        if keep(target):
            yield target


def needs_spec(plan: ScanPlan) -> TargetSpec:
    """The plan's target list: only a list has positions to key decided pairs by."""
    if not isinstance(plan.spec, TargetSpec):
        raise TypeError("a resumed scan needs a target list")
    return plan.spec
