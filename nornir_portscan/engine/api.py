"""The engine's public entry points: ``scan`` (an iterator) and ``ascan`` (awaitable).

Inputs are validated here, before any socket exists, so a bad port or
target raises ``SpecError`` at call time rather than half-way through a scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from .core.outcome import OutcomeBatch, ProbeOutcome
from .core.plan import (
    DEFAULT_REMOTE_RATE,
    PortsArg,
    ScanPlan,
    TargetsArg,
    plan_scan,
)
from .core.stats import ScanStats
from .io.local import resume_point, scan_here, seeded
from .shards.shard import run_sharded, shard_count

if TYPE_CHECKING:  # the journal's modules load only when a scan keeps one
    from .io.journal import Journal

__all__ = ["DEFAULT_REMOTE_RATE", "ScanPlan", "ScanStats", "ascan", "astream", "open_journal",
           "plan_scan", "replay", "run_plan", "run_plan_batches", "scan", "scan_here",
           "stream_plan"]

#: The section key of a scan's journal (a nornir run's are its hosts' names).
SCAN = ""


def run_plan(plan: ScanPlan, stats: ScanStats | None = None) -> Iterator[ProbeOutcome]:
    """Run one plan; outcomes stream out as they are decided."""
    for batch in run_plan_batches(plan, stats):
        yield from batch


def run_plan_batches(plan: ScanPlan,
                     stats: ScanStats | None = None) -> Iterator[list[ProbeOutcome]]:
    """Run one plan; outcomes stream out in batches, as the engine decides them."""
    for batch in stream_plan(plan, stats):
        yield batch.outcomes


def stream_plan(plan: ScanPlan, stats: ScanStats | None = None, runs: bool = False,
                journal: Journal | None = None) -> Iterator[OutcomeBatch]:
    """Run one plan, in batches; with ``runs``, a down host's ports stay one ``PortRun``
    (for consumers that can count or write them whole), else every outcome is single.

    Large scans are sharded over worker processes, one per core; with ``plan.cluster``,
    over the workers of a Dask cluster. With a loaded ``journal`` (``open_journal``), only
    the pairs it has not decided are probed, and each batch is recorded in it before it is
    handed out (its earlier outcomes come from ``replay``).
    """
    stats = stats if stats is not None else ScanStats()
    plan = seeded(plan)
    if plan.cluster is not None:
        from .shards.cluster import run_on_cluster  # only here: Dask is an optional extra

        if journal is None:
            yield from run_on_cluster(plan, stats, runs)
            return
        # the client records what it hands out; the shards leave out what was decided
        for batch in run_on_cluster(plan, stats, runs, journal.section(SCAN).decided):
            journal.record(SCAN, batch.outcomes, batch.runs)
            yield batch
        return
    worker_rate = plan.settings.worker_rate
    if worker_rate:  # here, this process is the one vantage point
        plan = replace(plan, rate=min(worker_rate, plan.rate or worker_rate))
    point = None if journal is None else resume_point(journal.section(SCAN).decided)
    count = shard_count(plan.spec, len(plan.ports), plan.shards)
    if count > 1:  # the workers encode the journal's records, the parent only queues them
        record = None if journal is None else (journal.section(SCAN).id,
                                               journal.record_encoded)
        yield from run_sharded(plan, count, stats, runs, point, record)
        return
    batches = scan_here(plan, stats, runs, resume=point)
    if journal is None:
        yield from batches
        return
    for batch in batches:
        journal.record(SCAN, batch.outcomes, batch.runs)
        yield batch


def open_journal(path: str, plan: ScanPlan) -> Journal:
    """A scan's journal at ``path``: created, or opened to resume (``JournalMismatch`` when
    it was written for another scan). ``replay`` it next."""
    from .io.journal import Journal

    return Journal.open(path, "scan", {SCAN: plan})


def replay(journal: Journal, runs: bool = False) -> Iterator[OutcomeBatch]:
    """The outcomes an opened journal holds, each pair once, in the order recorded; after
    this the journal knows what is decided (``stream_plan`` then skips it)."""
    for _, outcomes, port_runs in journal.replay():
        if runs:
            yield OutcomeBatch(outcomes, port_runs)
        else:
            yield OutcomeBatch(OutcomeBatch(outcomes, port_runs).expanded(), [])


def _resumable(plan: ScanPlan, resume: str | None) -> Iterator[ProbeOutcome]:
    if resume is None:
        yield from run_plan(plan)
        return
    journal = open_journal(str(resume), plan)
    try:
        for batch in replay(journal):
            yield from batch.outcomes
        for batch in stream_plan(plan, journal=journal):
            yield from batch.outcomes
    finally:
        journal.close()


def scan(targets: TargetsArg, ports: PortsArg, **options: object) -> Iterator[ProbeOutcome]:
    """Scan ``targets`` x ``ports``; yields one ``ProbeOutcome`` per (address, port).

    Options: ``exclude``, and every setting of ``inputs/settings.py`` by its name
    (``timeout``, ``retries``, ``recheck``, ``cluster`` ...: ``SETTINGS`` lists them).
    ``resume`` (a path) keeps a journal there: a scan killed at any moment and started
    again with the same arguments yields the outcomes decided before (from the journal),
    then probes only the rest; the journal stays until the caller removes it.
    Raises ``SpecError`` immediately for bad targets, ports or settings,
    ``JournalMismatch`` when the journal belongs to another scan.
    """
    resume = options.pop("resume", None)
    plan = plan_scan(targets, ports, **options)  # type: ignore[arg-type]
    if resume is None:
        return run_plan(plan)
    open_journal(str(resume), plan).close()  # a mismatch is raised here, at call time
    return _resumable(plan, str(resume))


async def astream(targets: TargetsArg, ports: PortsArg,
                  **options: object) -> AsyncIterator[ProbeOutcome]:
    """Async twin of ``scan``: the engine runs on its own thread, so it works inside a
    running event loop without blocking it."""
    import asyncio  # here, not at the top: the command line's start-up does without it
    import threading

    resume = options.pop("resume", None)
    plan = plan_scan(targets, ports, **options)  # type: ignore[arg-type]
    if resume is not None:
        open_journal(str(resume), plan).close()  # a mismatch is raised here, at call time
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[ProbeOutcome] | BaseException | None] = asyncio.Queue()
    stop = threading.Event()

    def worker() -> None:
        batch: list[ProbeOutcome] = []
        try:
            for outcome in _resumable(plan, None if resume is None else str(resume)):
                batch.append(outcome)
                if len(batch) >= 256:
                    loop.call_soon_threadsafe(queue.put_nowait, batch)
                    batch = []
                if stop.is_set():
                    return
            if batch:
                loop.call_soon_threadsafe(queue.put_nowait, batch)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    thread = threading.Thread(target=worker, name="portscan-engine", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            for outcome in item:
                yield outcome
    finally:
        stop.set()


async def ascan(targets: TargetsArg, ports: PortsArg, **options: object) -> list[ProbeOutcome]:
    """Await a whole scan's outcomes."""
    return [o async for o in astream(targets, ports, **options)]
