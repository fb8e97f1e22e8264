"""The engine's public entry points: ``scan`` (an iterator) and ``ascan`` (awaitable).

Inputs are validated here, before any socket exists, so a bad port or
target raises ``SpecError`` at call time rather than half-way through a scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

from .core.outcome import OutcomeBatch, ProbeOutcome
from .core.plan import (
    DEFAULT_REMOTE_RATE,
    PortsArg,
    ScanPlan,
    TargetsArg,
    plan_scan,
)
from .core.stats import ScanStats
from .dist.shard import run_sharded, shard_count
from .io.local import scan_here

__all__ = ["DEFAULT_REMOTE_RATE", "ScanPlan", "ScanStats", "ascan", "astream", "plan_scan",
           "run_plan", "run_plan_batches", "scan", "scan_here", "stream_plan"]


def run_plan(plan: ScanPlan, stats: ScanStats | None = None) -> Iterator[ProbeOutcome]:
    """Run one plan; outcomes stream out as they are decided."""
    for batch in run_plan_batches(plan, stats):
        yield from batch


def run_plan_batches(plan: ScanPlan,
                     stats: ScanStats | None = None) -> Iterator[list[ProbeOutcome]]:
    """Run one plan; outcomes stream out in batches, as the engine decides them."""
    for batch in stream_plan(plan, stats):
        yield batch.outcomes


def stream_plan(plan: ScanPlan, stats: ScanStats | None = None,
                runs: bool = False) -> Iterator[OutcomeBatch]:
    """Run one plan, in batches; with ``runs``, a down host's ports stay one ``PortRun``
    (for consumers that can count or write them whole), else every outcome is single.

    Large scans are sharded over worker processes, one per core; with ``plan.cluster``,
    over the workers of a Dask cluster.
    """
    stats = stats if stats is not None else ScanStats()
    if plan.cluster is not None:
        from .dist.cluster import run_on_cluster  # only here: Dask is an optional extra

        yield from run_on_cluster(plan, stats, runs)
        return
    worker_rate = plan.settings.get("worker_rate")
    if worker_rate:  # here, this process is the one vantage point
        plan = replace(plan, rate=min(worker_rate, plan.rate or worker_rate))
    count = shard_count(plan.spec, len(plan.ports), plan.shards)
    if count > 1:
        yield from run_sharded(plan, count, stats, runs)
    else:
        yield from scan_here(plan, stats, runs)


def scan(targets: TargetsArg, ports: PortsArg, **options: object) -> Iterator[ProbeOutcome]:
    """Scan ``targets`` x ``ports``; yields one ``ProbeOutcome`` per (address, port).

    Options: ``exclude``, and every setting of ``inputs/settings.py`` by its name
    (``timeout``, ``retries``, ``recheck``, ``cluster`` ...: ``SETTINGS`` lists them).
    Raises ``SpecError`` immediately for bad targets, ports or settings.
    """
    plan = plan_scan(targets, ports, **options)  # type: ignore[arg-type]
    return run_plan(plan)


async def astream(targets: TargetsArg, ports: PortsArg,
                  **options: object) -> AsyncIterator[ProbeOutcome]:
    """Async twin of ``scan``: the engine runs on its own thread, so it works inside a
    running event loop without blocking it."""
    import asyncio  # here, not at the top: the command line's start-up does without it
    import threading

    plan = plan_scan(targets, ports, **options)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[ProbeOutcome] | BaseException | None] = asyncio.Queue()
    stop = threading.Event()

    def worker() -> None:
        batch: list[ProbeOutcome] = []
        try:
            for outcome in run_plan(plan):
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
