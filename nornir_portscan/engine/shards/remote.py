"""A cluster shard's run on its Dask worker: finished hosts stream home as they go.

A run's outcomes do not wait for the end of the shard: a host's outcomes travel to the
client as soon as the host has every port of the shard, through one Dask ``Queue`` per
scan (held by the scheduler, drained by the client), with the host's place in its slice.
A worker lost half-way then costs only the hosts it had in flight: the client knows
which places are finished and runs the shard again with those left out
(``HostSlice.skip``). A name's addresses go home together at the end of the run (how
many addresses a name has is known only then).

Between messages a run sends a tick every ``TICK`` seconds (from a thread of its own,
which stops with the process): the client tells a hung worker (SIGSTOP, a frozen VM, a
network partition) from a slow one by them.

A run checks before each message that its task still stands on the worker: a run the
client cancelled (the losing copy of a shard run twice, or the runs left over when the
client ended) stops within a batch instead of probing on.

Dask is imported only inside functions: it is an optional extra.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
from collections.abc import Iterator
from dataclasses import replace
from time import monotonic
from typing import Any, NamedTuple

from ...inputs.scope import Scope
from ...inputs.targets import Target, TargetSpec
from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, PortRun
from ..core.plan import ScanPlan
from ..core.split import HostSlice, ShardLayout
from ..core.stats import ScanStats
from ..io.limits import concurrency_budget
from ..io.local import scan_here

#: Seconds between a run's ticks when it has nothing else to send.
TICK = 1.0
#: A message goes out when this many finished outcomes wait, or FLUSH seconds passed.
FLUSH_OUTCOMES = 4096
FLUSH = 0.5
#: Seconds of a rate-capped run's sending that its hosts under way add up to (active_hosts).
ACTIVE_SECONDS = 4.0
#: Seconds a message may wait for room in the scan's queue (the client reads it) before
#: the run gives up: a client that went away must not hold a worker thread for ever.
PUT_TIMEOUT = 120.0

# message kinds (the first item of each message's tuple)
START, HOSTS, TICKED = "start", "hosts", "tick"

#: One finished host as a message carries it: its place in the slice, its outcomes (as
#: ProbeOutcome field tuples: cheap to pickle) and its port runs.
Group = tuple[int, list[tuple[Any, ...]], list[PortRun]]


class RunEnd(NamedTuple):
    """What a run returns as its Dask result: its counts, checked by the client against
    what arrived; the outcomes themselves came as messages."""

    shard: int
    run: str
    key: str
    messages: int  # messages sent, the start included
    hosts: int  # finished hosts sent (places), each with every port of the shard
    skipped: int  # targets left out because an earlier run finished them
    outcomes: int  # outcomes sent, port runs expanded
    connects: int
    stopped: bool  # the client cancelled the run: what it sent is all there is
    #: names each silent resolver cost this run (``ScanStats.resolver_timeouts``)
    resolver_timeouts: tuple[tuple[str, int], ...] = ()


def check_scope(plan: ScanPlan) -> None:
    """The plan's guards (allow-list, size limit), again: on the client before anything is
    submitted, and on each worker before its shard sends a packet."""
    if isinstance(plan.spec, TargetSpec):
        Scope(list(plan.options.allowed), plan.max_addresses).check(plan.spec)


class FinishedHosts:
    """Outcomes grouped by target until the target has all of them: plain bookkeeping,
    no I/O. An address target is finished when it has one outcome per port; a name
    target's addresses are finished together at the end (``close``)."""

    def __init__(self, ports: int) -> None:
        self.ports = ports
        self.place_of: dict[str, int] = {}  # address (or name) of a target taken -> place
        self.partial: dict[str, list[Any]] = {}  # address -> its outcome tuples so far
        self.counts: dict[str, int] = {}
        self.runs: dict[str, list[PortRun]] = {}
        self.named: dict[str, list[Any]] = {}  # name -> every outcome of its addresses
        self.named_counts: dict[tuple[str, str], int] = {}
        self.groups: list[Group] = []  # finished hosts not yet sent
        self.waiting = 0  # outcomes in them, port runs expanded

    def taken(self, place: int, target: Target) -> None:
        """The engine took ``target`` (at ``place``) from the slice."""
        self.place_of[target.address if target.address is not None else target.name or ""] = place

    def add(self, batch: OutcomeBatch) -> None:
        for outcome in batch.outcomes:
            if outcome[6] is not None:  # name: a name target's
                self._named(outcome[6], outcome[0], outcome, 1)
                continue
            host = outcome[0]
            self.partial.setdefault(host, []).append(tuple(outcome))
            self._count(host, 1)
        for run in batch.runs:
            if run.name is not None:
                self._named(run.name, run.host, run, len(run.ports))
                continue
            self.runs.setdefault(run.host, []).append(run)
            self._count(run.host, len(run.ports))

    def _count(self, host: str, n: int) -> None:
        count = self.counts.get(host, 0) + n
        if count < self.ports:
            self.counts[host] = count
            return
        self.counts.pop(host, None)
        if count > self.ports or host not in self.place_of:
            raise EngineError(f"accounting error: host {host} has {count} outcomes for "
                              f"{self.ports} ports")
        outcomes, runs = self.partial.pop(host, []), self.runs.pop(host, [])
        self._finish(self.place_of.pop(host), outcomes, runs)

    def _named(self, name: str, address: str, item: Any, n: int) -> None:
        self.named.setdefault(name, []).append(item)
        key = (name, address)
        self.named_counts[key] = self.named_counts.get(key, 0) + n

    def _finish(self, place: int, outcomes: list[Any], runs: list[PortRun]) -> None:
        self.groups.append((place, outcomes, runs))
        self.waiting += len(outcomes) + sum(len(r.ports) for r in runs)

    def close(self) -> None:
        """The run is over: every name target is finished; anything else is an error."""
        for (name, address), count in self.named_counts.items():
            if count != self.ports:
                raise EngineError(f"accounting error: host {address} ({name}) has {count} "
                                  f"outcomes for {self.ports} ports")
        for name, items in self.named.items():
            place = self.place_of.pop(name, None)
            if place is None:
                raise EngineError(f"accounting error: outcomes for {name}, not a target "
                                  "of this shard")
            self._finish(place, [tuple(i) for i in items if not isinstance(i, PortRun)],
                         [i for i in items if isinstance(i, PortRun)])
        self.named.clear()
        if self.counts:
            host = next(iter(self.counts))
            raise EngineError(f"accounting error: host {host} has {self.counts[host]} "
                              f"outcomes for {self.ports} ports")

    def take(self) -> tuple[list[Group], int]:
        """The finished hosts not yet sent, and how many outcomes they hold."""
        out = self.groups, self.waiting
        self.groups, self.waiting = [], 0
        return out


class _Placed:
    """A host slice as the engine sees it (a target source) that tells ``FinishedHosts``
    where each target it hands out sits, and counts what ``skip`` left out."""

    def __init__(self, hosts: HostSlice, finished: FinishedHosts) -> None:
        self.hosts, self.finished = hosts, finished

    def __iter__(self) -> Iterator[Target]:
        taken = self.finished.taken
        for place, target in self.hosts.placed():
            taken(place, target)
            yield target

    def count(self) -> int:
        return self.hosts.count()


def shard_rate(scan_share: float | None, worker_rate: float | None,
               threads: int) -> float | None:
    """A running shard's cap: its share of the whole scan's (``ShardLayout.rate``) and of
    its worker's, which the worker's threads (each running one shard) split."""
    if worker_rate is None:
        return scan_share
    mine = worker_rate / max(1, threads)
    return mine if scan_share is None else min(mine, scan_share)


def active_hosts(share: ScanPlan) -> int | None:
    """Hosts a rate-capped run keeps under way at once: what the rate sends in about
    ``ACTIVE_SECONDS`` (at least 64). The engine otherwise takes up to a quarter of its
    window of hosts at once and, under a rate cap, moves them all forward together, so
    they all finish near the end of the run, and a run lost half-way has sent home
    hardly any finished host. Unthrottled, hosts finish within their timeouts anyway."""
    if share.rate is None:
        return None
    return max(64, math.ceil(ACTIVE_SECONDS * share.rate / max(1, len(share.ports))))


def _still_wanted(worker: Any, key: str) -> bool:
    """The run's task still stands on this worker (the client did not cancel it)."""
    task = worker.state.tasks.get(key)
    return task is not None and task.state in ("executing", "long-running")


class _Outbox:
    """A run's messages into the scan's queue, numbered; one lock for the run's thread
    and its ticker."""

    def __init__(self, queue: Any, run: str) -> None:
        self.queue, self.run = queue, run
        self.sent = 0
        self.last = monotonic()
        self.lock = threading.Lock()

    def send(self, kind: str, *body: Any) -> None:
        with self.lock:
            self.sent += 1
            data = pickle.dumps((kind, self.run, self.sent, *body),
                                protocol=pickle.HIGHEST_PROTOCOL)
            self.queue.put(data, timeout=PUT_TIMEOUT)
            self.last = monotonic()

    def tick_until(self, stop: threading.Event) -> None:
        while not stop.wait(TICK / 2):
            if monotonic() - self.last >= TICK:
                try:
                    self.send(TICKED)
                except Exception:  # the run itself will meet the same error and end
                    return


def run_shard(plan: ScanPlan, layout: ShardLayout, index: int, key: str, queue_name: str,
              skip: bytes | None = None) -> RunEnd:
    """One run of shard ``index`` on whichever worker Dask chose (``key`` is its task's):
    scope checked again, then the local engine on the shard's share, less ``skip``."""
    check_scope(plan)
    import distributed

    dask: Any = distributed  # untyped: its calls are not checked here
    worker = dask.get_worker()
    run = os.urandom(6).hex()
    threads = max(1, int(worker.state.nthreads))
    name = str(worker.name)
    hosts = HostSlice(plan.spec, layout, index // layout.port_classes, plan.options.allowed,
                      skip)
    ports = layout.ports_of(plan.ports, index)
    finished = FinishedHosts(len(ports))
    placed = _Placed(hosts, finished)
    budget = concurrency_budget(plan.concurrency)  # this worker's descriptors, per thread
    # shards on one machine draw on its one ICMP limiter: each takes its turn for re-probes
    # (core/recheck.py); on other machines the turns cost time, never a verdict
    share = replace(layout.share(plan, index), spec=placed,
                    rate=shard_rate(layout.rate, plan.settings.worker_rate or None,
                                    threads),
                    concurrency=max(1, budget // threads),
                    options=replace(plan.options, limiter_slot=(index, layout.count),
                                    worker=name))
    queue = dask.Queue(queue_name, client=dask.get_client())
    outbox = _Outbox(queue, run)
    stats = ScanStats()
    sent = hosts_sent = 0
    stopped = False
    stop_ticks = threading.Event()
    ticker = threading.Thread(target=outbox.tick_until, args=(stop_ticks,),
                              name=f"portscan-tick-{index}", daemon=True)
    try:
        outbox.send(START, key, index, str(worker.address), name)
        ticker.start()
        scan = scan_here(share, stats, runs=True, max_active_hosts=active_hosts(share))
        try:
            for batch in scan:
                finished.add(batch)
                if finished.waiting >= FLUSH_OUTCOMES or (
                        finished.waiting and monotonic() - outbox.last >= FLUSH):
                    if not _still_wanted(worker, key):
                        stopped = True
                        break
                    groups, count = finished.take()
                    outbox.send(HOSTS, groups)
                    sent, hosts_sent = sent + count, hosts_sent + len(groups)
        finally:
            scan.close()  # type: ignore[attr-defined]  # a generator: its sockets close
        if not stopped:
            finished.close()
            groups, count = finished.take()
            if groups:
                outbox.send(HOSTS, groups)
                sent, hosts_sent = sent + count, hosts_sent + len(groups)
    finally:
        stop_ticks.set()
        if ticker.is_alive():
            ticker.join()
        try:
            queue.close()
        except Exception:  # the scheduler went away: the run's end says what it can
            pass
    return RunEnd(index, run, key, outbox.sent, hosts_sent, hosts.skipped, sent,
                  stats.connects, stopped, tuple(stats.resolver_timeouts.items()))
