"""The engine's public entry points: ``scan`` (an iterator) and ``ascan`` (awaitable).

Inputs are validated here, before any socket exists, so a bad port or
target raises ``SpecError`` at call time rather than half-way through a scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from ..spec.ports import parse_ports
from ..spec.scope import DEFAULT_MAX_ADDRESSES, Scope, parse_networks
from ..spec.targets import TargetSource, TargetSpec, parse_targets
from .limits import concurrency_budget
from .loop import ReadinessLoop
from .outcome import OutcomeBatch, PortRun, ProbeOutcome
from .resolve import resolve
from .scheduler import EngineError, Job, JobOptions, Scheduler
from .timing import RttEstimator

#: Probes per second when targets lie beyond loopback and no rate was given: fast on a LAN,
#: yet far below what trips an IDS or fills a firewall's state table. ``rate=0`` lifts it.
DEFAULT_REMOTE_RATE = 10000.0

PortsArg = str | int | Iterable[str | int]
TargetsArg = str | Iterable[str] | TargetSpec


@dataclass(frozen=True)
class ScanPlan:
    """A validated scan: what and how, ready to run."""

    spec: TargetSource
    ports: tuple[int, ...]
    options: JobOptions
    concurrency: int
    rate: float | None
    shards: int | None = None  # worker processes; None decides from the scan's size


def plan_scan(targets: TargetsArg, ports: PortsArg, *, exclude: str | Iterable[str] = (),
              timeout: float | None = None, retries: int | None = None,
              concurrency: int | None = None, rate: float | None = None,
              discovery: bool = True, banners: bool = False,
              banner_wait: float = 1.0, shards: int | None = None,
              allowed: Iterable[str] = (), max_addresses: int = DEFAULT_MAX_ADDRESSES) -> ScanPlan:
    spec = targets if isinstance(targets, TargetSpec) else parse_targets(targets, exclude)
    scope = Scope(parse_networks(allowed), max_addresses)
    scope.check(spec)
    port_list = parse_ports(ports)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if retries is not None and retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries!r}")
    if rate is not None and rate < 0:
        raise ValueError(f"rate must be 0 (no cap) or positive, not {rate!r}")
    if rate is None and isinstance(spec, TargetSpec) and not spec.loopback_only():
        rate = DEFAULT_REMOTE_RATE
    if rate == 0:
        rate = None
    # discovery only pays when there is more than one host to tell apart
    discovery = discovery and spec.count() > 1
    options = JobOptions(timeout=timeout, retries=retries, discovery=discovery,
                         banners=banners, banner_wait=banner_wait,
                         allowed=tuple(scope.allowed))
    return ScanPlan(spec, port_list, options, concurrency_budget(concurrency), rate, shards)


@dataclass
class ScanStats:
    """What a scan cost, filled in as it runs: the traffic behind its outcomes."""

    connects: int = 0  # connect() attempts: first tries, retries and discovery probes


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

    Large scans are sharded over worker processes, one per core.
    """
    from .shard import run_sharded, shard_count

    stats = stats if stats is not None else ScanStats()
    count = shard_count(plan.spec, len(plan.ports), plan.shards)
    if count > 1:
        yield from run_sharded(plan, count, stats, runs)
    else:
        yield from scan_here(plan, stats, runs)


def scan_here(plan: ScanPlan, stats: ScanStats, runs: bool = False) -> Iterator[OutcomeBatch]:
    """One process's scan of a plan (the whole plan, or a shard worker's share)."""
    sched = Scheduler(concurrency=plan.concurrency, rate=plan.rate, resolver=resolve,
                      rtt=RttEstimator())
    job = sched.add_job(Job(plan.spec, plan.ports, plan.options))
    try:
        for batch in ReadinessLoop(sched).run_batches(runs):
            batch_runs = [item for _, item in batch if type(item) is PortRun]
            if batch_runs:
                outcomes = [item for _, item in batch if type(item) is ProbeOutcome]
            else:
                outcomes = [item for _, item in batch if item is not None]  # type: ignore[misc]
            if outcomes or batch_runs:
                yield OutcomeBatch(outcomes, batch_runs)
    finally:
        stats.connects += sched.probes_sent
    if job.emitted != job.addresses * len(plan.ports):
        raise EngineError(f"accounting error: {job.emitted} outcomes for "
                          f"{job.addresses} hosts x {len(plan.ports)} ports")


def scan(targets: TargetsArg, ports: PortsArg, **options: object) -> Iterator[ProbeOutcome]:
    """Scan ``targets`` x ``ports``; yields one ``ProbeOutcome`` per (address, port).

    Options: exclude, timeout, retries, concurrency, rate, discovery, banners, banner_wait.
    Raises ``SpecError`` immediately for bad targets or ports.
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
