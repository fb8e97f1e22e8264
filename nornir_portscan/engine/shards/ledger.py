"""The client's account of a cluster scan: which hosts of which shard arrived, from which
run, and whether a shard is finished. Plain bookkeeping, no Dask, no sockets.

A shard may run more than once: Dask runs a lost worker's task again, the client runs a
shard again after a lost or hung worker (leaving out what arrived: ``skip_for``), and a
straggler gets a speculative copy. Each run streams finished hosts, each with its place
in the shard's host slice; a place is taken once, from whichever run sent it first, and
any later copy is dropped. That is the exactly-once rule: per shard a bitmap of finished
places, so memory stays at one bit per host of the running shards.

A shard is finished when one run's end arrives with all its messages, and the places
taken add up: the run's own hosts plus the ones it was told to skip. The first run to
end wins; the others are cancelled (``finish`` names them).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import EngineError
from ..core.outcome import PortRun
from ..core.split import ShardLayout
from .remote import Group, RunEnd

#: Submissions of one shard (first included) before the scan gives up on it.
MAX_SUBMISSIONS = 6


@dataclass
class Run:
    """One execution of an attempt, as its start message named it."""

    run: str
    key: str
    worker: str  # the worker's address
    name: str  # the worker's name
    started: float
    heard: float  # when its last message came
    received: int = 1  # messages, the start included
    outcomes: int = 0  # outcomes in its messages, port runs expanded, copies included
    end: RunEnd | None = None


@dataclass
class Attempt:
    """One submission of a shard: one Dask key."""

    key: str
    shard: int
    skip: bytes | None
    submitted: float
    runs: list[str] = field(default_factory=list)
    live: bool = True

    @property
    def current(self) -> str | None:
        return self.runs[-1] if self.runs else None


@dataclass
class Shard:
    index: int
    ports: int
    places: int
    done: bytearray
    hosts: int = 0
    submissions: int = 0
    finished: float | None = None
    took: float | None = None  # a full run's time (from its start to its end), if one won
    keys: list[str] = field(default_factory=list)  # attempts, in submission order


class Ledger:
    """Shards, attempts and runs of one cluster scan, and the time anything last moved."""

    def __init__(self, layout: ShardLayout, ports: tuple[int, ...], now: float) -> None:
        self.layout = layout
        self.shards: list[Shard] = []
        for i in range(layout.count):
            s = i // layout.port_classes
            places = (-(-(s + 1) * layout.hosts // layout.host_slices)
                      - -(-s * layout.hosts // layout.host_slices))
            self.shards.append(Shard(i, len(layout.ports_of(ports, i)), places,
                                     bytearray((places + 7) // 8)))
        self.attempts: dict[str, Attempt] = {}
        self.runs: dict[str, Run] = {}
        self.progress = now  # the last time a message came or a shard finished
        self.unfinished = layout.count

    def taken_before(self, index: int, skip: bytes, count: int, now: float) -> bool:
        """A resumed scan's journal holds ``count`` hosts of shard ``index`` (the places
        ``skip`` marks): they count as arrived, and every run of the shard leaves them out.
        True when that is all of its places: the shard is finished without a run."""
        shard = self.shards[index]
        if shard.hosts or shard.submissions:
            raise EngineError(f"accounting error: shard {index} was under way before its "
                              "decided places were known")
        shard.done[:] = skip
        shard.hosts = count
        if count < shard.places:
            return False
        shard.finished = now
        self.unfinished -= 1
        return True

    # ---- submissions -----------------------------------------------------------------------

    def skip_for(self, index: int) -> bytes | None:
        """The places a new run of shard ``index`` may leave out: those that arrived."""
        shard = self.shards[index]
        return bytes(shard.done) if shard.hosts else None

    def submitted(self, key: str, index: int, skip: bytes | None, now: float) -> None:
        shard = self.shards[index]
        shard.submissions += 1
        shard.keys.append(key)
        self.attempts[key] = Attempt(key, index, skip, now)

    def may_submit(self, index: int) -> bool:
        return self.shards[index].submissions < MAX_SUBMISSIONS

    def live(self, index: int) -> list[Attempt]:
        return [a for k in self.shards[index].keys if (a := self.attempts[k]).live]

    def dropped(self, key: str) -> Attempt:
        """An attempt that will send nothing more (lost, cancelled)."""
        attempt = self.attempts[key]
        attempt.live = False
        return attempt

    # ---- messages --------------------------------------------------------------------------

    def started(self, run: str, key: str, worker: str, name: str, now: float) -> bool:
        """A run began; True when its attempt had run before (Dask ran a lost worker's task
        again: from the old ``skip``, so the caller may rather run it anew)."""
        self.progress = now
        attempt = self.attempts.get(key)
        again = attempt is not None and bool(attempt.runs)
        self.runs[run] = Run(run, key, worker, name, now, now)
        if attempt is not None:
            attempt.runs.append(run)
        return again

    def heard(self, run: str, now: float) -> Run | None:
        self.progress = now
        found = self.runs.get(run)
        if found is not None:
            found.heard = now
            found.received += 1
        return found

    def hosts(self, run: str, groups: list[Group], now: float
              ) -> tuple[list[tuple[Any, ...]], list[PortRun]]:
        """A run's finished hosts: the outcomes and port runs of the places not taken yet."""
        found = self.heard(run, now)
        if found is None:
            raise EngineError(f"accounting error: hosts from run {run}, which never started")
        shard = self.shards[self.attempts[found.key].shard]
        outcomes: list[tuple[Any, ...]] = []
        runs: list[PortRun] = []
        done, ports = shard.done, shard.ports
        for place, host_outcomes, host_runs in groups:
            count = len(host_outcomes) + sum(len(r.ports) for r in host_runs)
            found.outcomes += count
            if not 0 <= place < shard.places or not count or count % ports:
                raise EngineError(f"accounting error: shard {shard.index}'s host at place "
                                  f"{place} came with {count} outcomes for {ports} ports")
            byte, bit = place >> 3, 1 << (place & 7)
            if done[byte] & bit or shard.finished is not None:
                continue  # sent before by another run of the shard
            done[byte] |= bit
            shard.hosts += 1
            outcomes.extend(host_outcomes)
            runs.extend(host_runs)
        return outcomes, runs

    # ---- ends ------------------------------------------------------------------------------

    def ended(self, end: RunEnd, now: float) -> str:
        """A run's result: "wait" (its messages are not all in), "loser" (its shard was
        finished by another run, or it was stopped), or "won" (the shard is finished now:
        cancel ``others``)."""
        found = self.runs.get(end.run)
        if found is None or found.received < end.messages:
            return "wait"
        found.end = end
        attempt = self.attempts[end.key]
        attempt.live = False
        shard = self.shards[end.shard]
        if shard.finished is not None or end.stopped:
            return "loser"
        if found.received != end.messages:
            raise EngineError(f"accounting error: run {end.run} of shard {end.shard} sent "
                              f"{end.messages} messages, {found.received} arrived")
        if shard.hosts != end.hosts + end.skipped or found.outcomes != end.outcomes:
            raise EngineError(f"accounting error: shard {end.shard} has {shard.hosts} hosts "
                              f"in; its run sent {end.hosts} ({end.outcomes} outcomes, "
                              f"{found.outcomes} arrived) and skipped {end.skipped}")
        shard.finished = now
        self.progress = now
        self.unfinished -= 1
        if attempt.skip is None:
            shard.took = now - found.started
        return "won"

    def others(self, index: int) -> list[str]:
        """Keys of shard ``index``'s attempts still live: to cancel once it is finished."""
        return [a.key for a in self.live(index)]

    # ---- what the watch reads --------------------------------------------------------------

    def median_took(self) -> float | None:
        took = [s.took for s in self.shards if s.took is not None]
        return statistics.median(took) if took else None

    def run_of(self, attempt: Attempt) -> Run | None:
        current = attempt.current
        return None if current is None else self.runs[current]
