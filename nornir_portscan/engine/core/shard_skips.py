"""A resumed cluster scan: which places of each shard its journal decided already.

A cluster shard is told what to leave out by a bitmap over the places of its host slice
(``split.HostSlice.skip``), the same bitmap a shard run again after a lost worker gets. A
resumed scan draws a new layout (a new key, maybe another cluster's size), so the journal's
decided pairs, keyed by target position (``decided.py``), are mapped to places through the
layout's keyed permutation: position j sits at p = (offset + j * stride) mod H, in slice
p * slices div H, at place p minus the slice's first position. A place is left out of a
shard when every port of that shard's port class is decided for it.

Only what is decided is walked (the set bits of the complete bitmap, and the few rows of
hosts decided in part), never the whole target list: a /8 resumed costs its decided hosts.

A host decided only in part (a name, whose addresses are known only after a lookup, or an
address a local run left half done) is probed again whole by its shard; ``Repeats`` then
drops the pairs the journal holds, so each pair is reported once. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .decided import DecidedPairs, PortRow
from .outcome import PortRun, ProbeOutcome
from .split import ShardLayout
from .work import affine_map


@dataclass
class ShardSkip:
    """What a shard may leave out from its first run: ``skip`` over its places, and how
    many places that is (each one a target whose outcomes the journal holds)."""

    skip: bytearray
    places: int  # the shard's places, an upper bound of its targets
    count: int = 0

    def add(self, place: int) -> None:
        byte, bit = place >> 3, 1 << (place & 7)
        if not self.skip[byte] & bit:
            self.skip[byte] |= bit
            self.count += 1

    @property
    def everything(self) -> bool:
        """Every place is decided: the shard need not run at all."""
        return self.count >= self.places


def slice_places(layout: ShardLayout, s: int) -> tuple[int, int]:
    """(first position, places) of host slice ``s``."""
    n, slices = layout.hosts, layout.host_slices
    first = -(-s * n // slices)
    return first, -(-(s + 1) * n // slices) - first


def decided_places(layout: ShardLayout, decided: DecidedPairs) -> list[ShardSkip]:
    """For each shard of ``layout`` (by index), the places the journal decided for its
    port class. ``decided`` must be the same plan's (its targets and ports)."""
    n, slices, classes = layout.hosts, layout.host_slices, layout.port_classes
    skips: list[ShardSkip] = []
    for s in range(slices):
        _, places = slice_places(layout, s)
        skips.extend(ShardSkip(bytearray((places + 7) // 8), places) for _ in range(classes))
    if decided.positions != n:  # no target at all (or another plan's pairs): nothing to skip
        return skips
    stride, offset = affine_map(layout.key, n)
    firsts = [slice_places(layout, s)[0] for s in range(slices)]

    def where(j: int) -> tuple[int, int]:
        p = (offset + j * stride) % n
        s = p * slices // n
        return s, p - firsts[s]

    # every class of a slice leaves out its complete hosts: marked once in the slice's
    # first class's bitmap (the loop runs once per decided host: kept plain), then copied
    maps = [skips[s * classes].skip for s in range(slices)]
    for byte_index, byte in enumerate(decided.complete):
        if not byte:
            continue
        base = byte_index * 8
        for bit in range(8):
            if byte >> bit & 1:
                p = (offset + (base + bit) * stride) % n
                s = p * slices // n
                place = p - firsts[s]
                maps[s][place >> 3] |= 1 << (place & 7)
    for s in range(slices):
        first = skips[s * classes]
        first.count = int.from_bytes(first.skip, "little").bit_count()
        for c in range(1, classes):
            skips[s * classes + c].skip[:] = first.skip
            skips[s * classes + c].count = first.count
    if classes > 1:  # a host decided in part may be decided for some classes' ports
        for j, row in decided.partial_positions():
            s, place = where(j)
            for c in range(classes):
                if _all_of_class(row, decided.width, c, classes):
                    skips[s * classes + c].add(place)
    return skips


def _all_of_class(row: PortRow, width: int, c: int, classes: int) -> bool:
    return all(row.has(i) for i in range(c, width, classes))


class Repeats:
    """Drops, from what a resumed cluster scan receives, the pairs its journal holds: only
    hosts decided in part can bring any (the others were left out or never touched), so
    only their outcomes are looked up."""

    def __init__(self, decided: DecidedPairs) -> None:
        self.decided = decided
        spec = decided.spec
        self.hosts: set[str] = set()
        self.names: set[str] = set()
        for pos, _ in decided.partial_positions():
            target = spec.at(pos)
            if target is not None and target.address is not None:
                self.hosts.add(target.address)
        for pos in decided.names:
            target = spec.at(pos)
            if target is not None and target.name is not None:
                self.names.add(target.name)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.names)

    def _suspect(self, host: str, name: str | None) -> bool:
        return host in self.hosts or (name is not None and name in self.names)

    def new(self, outcomes: Sequence[ProbeOutcome],
            runs: Sequence[PortRun]) -> tuple[list[ProbeOutcome], list[PortRun]]:
        """The outcomes and runs of a batch that the journal does not hold."""
        if not self:
            return list(outcomes), list(runs)
        decided, suspect = self.decided, self._suspect
        kept = [o for o in outcomes if not suspect(o.host, o.name)
                or decided.add([o])]
        kept_runs: list[PortRun] = []
        for run in runs:
            if not suspect(run.host, run.name):
                kept_runs.append(run)
                continue
            part = decided.add_run(run)
            if part is not None:
                kept_runs.append(part)
        return kept, kept_runs
