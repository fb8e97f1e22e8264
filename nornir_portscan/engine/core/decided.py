"""Which (address, port) pairs of a scan are decided already: what a resumed scan skips.

Pairs are keyed by the plan's own index, not by strings: a target's position in the target
list (``TargetSpec.at``) crossed with a port's index in the plan's port tuple. Memory stays
bounded on any scan: one bit per position for "every port decided", and a row of one bit
per port only for hosts that are decided in part. A scan admits a bounded number of hosts
at a time, so only those (a few thousand at most) can be partial when a run dies; a /8 x 10
(167 million pairs) costs two megabytes.

A name can resolve to several addresses (or to none, then its outcomes carry the name as
host): its pairs live in a small side table keyed by the name's position, then address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ...inputs.targets import Target, TargetSpec
from .outcome import PortRun, PortState, ProbeOutcome

_ANSWERED = frozenset({PortState.OPEN, PortState.CLOSED})
#: Addresses whose position is remembered; a journal's outcomes come host by host, so
#: a small cache saves nearly every address parse.
_CACHE = 4096


class PortRow:
    """One address's decided ports (a bit per port index), and whether any answered."""

    __slots__ = ("bits", "count", "up")

    def __init__(self, width: int) -> None:
        self.bits = bytearray((width + 7) // 8)
        self.count = 0
        self.up = False  # a decided port was open or closed: the host is known up

    def has(self, index: int) -> bool:
        return bool(self.bits[index >> 3] & (1 << (index & 7)))

    def add(self, index: int) -> bool:
        """Set the port's bit; False when it was set already (a repeat)."""
        byte, bit = index >> 3, 1 << (index & 7)
        if self.bits[byte] & bit:
            return False
        self.bits[byte] |= bit
        self.count += 1
        return True


class DecidedPairs:
    """The decided pairs of one plan (its target list and port tuple)."""

    def __init__(self, spec: TargetSpec, ports: Sequence[int]) -> None:
        self.spec = spec
        self.ports = tuple(ports)
        self.width = len(self.ports)
        self._port_index: dict[int, int] | None = None
        self.positions = spec.count()
        #: a bit per position: every port of that address decided
        self.complete = bytearray((self.positions + 7) // 8)
        #: position -> its row, for addresses decided in part
        self.partial: dict[int, PortRow] = {}
        #: a name's position -> address (the name itself if it did not resolve) -> row
        self.names: dict[int, dict[str, PortRow]] = {}
        self.count = 0  # pairs decided
        self._where: dict[str, int | None] = {}

    @property
    def port_index(self) -> dict[int, int]:
        """Port -> its index; built when first needed (a fresh scan never asks)."""
        if self._port_index is None:
            self._port_index = dict(zip(self.ports, range(self.width), strict=True))
        return self._port_index

    # ---- recording ----------------------------------------------------------------------

    def _row(self, host: str, name: str | None) -> tuple[int, PortRow | None] | None:
        """(position, row) of an outcome's host; row None when the address is complete;
        None when the host is not one of this plan's targets."""
        if name is not None:
            key = "\0" + name
            pos = self._where.get(key, -1)
            if pos == -1:
                pos = self._remember(key, self.spec.name_position(name))
            if pos is None:
                return None
            rows = self.names.setdefault(pos, {})
            row = rows.get(host)
            if row is None:
                row = rows[host] = PortRow(self.width)
            return pos, row
        pos = self._where.get(host, -1)
        if pos == -1:
            pos = self._remember(host, self.spec.position_of(host))
        if pos is None:
            return None
        if self.complete[pos >> 3] & (1 << (pos & 7)):
            return pos, None
        row = self.partial.get(pos)
        if row is None:
            row = self.partial[pos] = PortRow(self.width)
        return pos, row

    def _remember(self, key: str, pos: int | None) -> int | None:
        if len(self._where) >= _CACHE:
            self._where.clear()
        self._where[key] = pos
        return pos

    def _settle(self, pos: int, row: PortRow, name: str | None) -> None:
        if name is None and row.count == self.width:
            self.complete[pos >> 3] |= 1 << (pos & 7)
            del self.partial[pos]

    def add(self, outcomes: Iterable[ProbeOutcome]) -> list[ProbeOutcome]:
        """Record outcomes; returns those that were new (a repeat, or a pair that is not
        this plan's, is left out: each pair is reported once)."""
        new: list[ProbeOutcome] = []
        index = self.port_index
        answered = _ANSWERED
        for outcome in outcomes:
            j = index.get(outcome.port)
            if j is None:
                continue
            found = self._row(outcome.host, outcome.name)
            if found is None:
                continue
            pos, row = found
            if row is None or not row.add(j):
                continue
            self.count += 1
            if outcome.state in answered:
                row.up = True
            new.append(outcome)
            if row.count == self.width:
                self._settle(pos, row, outcome.name)
        return new

    def add_run(self, run: PortRun) -> PortRun | None:
        """Record a run of one address's ports; returns the part that was new, if any."""
        found = self._row(run.host, run.name)
        if found is None:
            return None
        pos, row = found
        if row is None:
            return None
        index = self.port_index
        ports = tuple(p for p in run.ports if p in index and row.add(index[p]))
        if not ports:
            return None
        self.count += len(ports)
        if run.state in _ANSWERED:
            row.up = True
        self._settle(pos, row, run.name)
        return run if len(ports) == len(run.ports) else run._replace(ports=ports)

    # ---- asking -------------------------------------------------------------------------

    def is_complete(self, pos: int) -> bool:
        return bool(self.complete[pos >> 3] & (1 << (pos & 7)))

    def untouched(self, target: Target) -> bool:
        """Whether nothing of this target is decided (a fresh scan takes it as it is)."""
        if target.address is None:
            pos = self.spec.name_position(target.name or "")
            return pos is None or pos not in self.names
        pos = self.spec.position_of(target.address)
        return pos is None or not (self.is_complete(pos) or pos in self.partial)

    def remaining(self, row: PortRow | None, ports: Iterable[int]) -> tuple[int, ...]:
        """Of ``ports`` (all of the plan's or a shard's share), those ``row`` lacks."""
        if row is None:
            return tuple(ports)
        index = self.port_index
        return tuple(p for p in ports if not row.has(index[p]))

    def partial_positions(self) -> Iterator[tuple[int, PortRow]]:
        yield from list(self.partial.items())

    def memory(self) -> int:
        """Bytes held by the bitmaps and rows (what the module docstring promises)."""
        rows = len(self.partial) + sum(len(r) for r in self.names.values())
        return len(self.complete) + rows * (len(PortRow(self.width).bits) + 64)
