"""When a cluster scan runs a shard again, and when it gives up: decisions on times only.

Dask's own remedy for a worker that stops answering is its time-to-live, minutes by
default; a scan waiting on such a worker would wait as long. Three rules here instead,
on what the client has seen:

- a **hung** worker: a run on it sent nothing, not even its tick, for ``hung_after``
  seconds, or Dask heard no heartbeat from it for as long. Every shard whose only hope
  is on a hung worker (running there, or queued there) gets another run elsewhere;
- a **straggler**: a run going on for ``factor`` times the median time of the shards
  finished so far (and at least ``floor`` seconds) gets a speculative copy elsewhere;
- **no progress**: nothing at all arrived (no outcome, no tick, no shard finished) for
  ``stall_after`` seconds: the scan ends with an error and keeps what was decided.

The copy runs under a fresh key and leaves out the hosts that arrived; whichever run
ends first wins (``Ledger``) and the other is cancelled. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .ledger import Ledger

#: Seconds without a message from a run (it ticks every second) before its worker is hung.
HUNG_AFTER = 10.0
#: A run this many times the median shard time is a straggler...
STRAGGLER_FACTOR = 3.0
#: ...but never before this many seconds.
STRAGGLER_FLOOR = 10.0
#: Seconds with nothing arriving from any run before the scan gives up.
STALL_AFTER = 60.0


@dataclass(frozen=True)
class Rules:
    hung_after: float = HUNG_AFTER
    factor: float = STRAGGLER_FACTOR
    floor: float = STRAGGLER_FLOOR
    stall_after: float = STALL_AFTER


@dataclass(frozen=True)
class Again:
    """Run shard ``shard`` once more, elsewhere than ``avoid`` (workers' addresses)."""

    shard: int
    avoid: frozenset[str]
    why: str  # "hung" or "straggler"


def hung_workers(ledger: Ledger, now: float, rules: Rules,
                 silent: Iterable[str] = ()) -> set[str]:
    """Workers whose runs of this scan went quiet, and ``silent`` ones (no heartbeat)."""
    hung = set(silent)
    for attempt in ledger.attempts.values():
        run = ledger.run_of(attempt) if attempt.live else None
        if run is not None and now - run.heard > rules.hung_after:
            hung.add(run.worker)
    return hung


def to_run_again(ledger: Ledger, now: float, rules: Rules, hung: set[str],
                 queued_on: Mapping[str, str]) -> list[Again]:
    """Shards that should get another run now. ``queued_on`` maps the keys Dask gave a
    worker but that did not start yet to that worker's address."""
    median = ledger.median_took()
    late = None if median is None else max(rules.floor, rules.factor * median)
    out: list[Again] = []
    for shard in ledger.shards:
        if shard.finished is not None:
            continue
        live = ledger.live(shard.index)
        if not live or not ledger.may_submit(shard.index):
            continue
        avoid: set[str] = set()
        why = ""
        for attempt in live:
            run = ledger.run_of(attempt)
            if run is None:
                worker = queued_on.get(attempt.key)
                if worker is None or worker not in hung:
                    break  # waiting its turn on a worker that is alive: hope
                avoid.add(worker)
                why = why or "hung"
            elif run.worker in hung:
                avoid.add(run.worker)
                why = why or "hung"
            elif late is not None and now - run.started > late:
                avoid.add(run.worker)
                why = why or "straggler"
            else:
                break  # running, and not late: hope
        else:
            out.append(Again(shard.index, frozenset(avoid), why))
    return out


def stalled(ledger: Ledger, now: float, rules: Rules) -> bool:
    return ledger.unfinished > 0 and now - ledger.progress > rules.stall_after
