"""Cluster scans: the shards of one plan run on the workers of a Dask distributed cluster.

A shard is "index i of n" of the keyed partition of ``core/split.py`` (the one process
shards use too): whole hosts when there are enough of them (a dead host's discovery is
then paid once), ports split only when there are fewer hosts than shards. A scan gets
one shard per worker thread, and up to four when it is big enough to amortise each
shard's tail of timeouts. The partition follows from the plan and one random key, drawn
here, so a worker computes its own share from (plan, layout, index) alone.

A shard's outcomes travel back only when the shard is done, as one result: a worker lost
half-way leaves nothing behind, its shard runs again (Dask reschedules it, and a shard
that killed too many workers is resubmitted here under a fresh key, a bounded number of
times), and a shard's result is taken once by its index. The client checks every shard's
count and the total (H x P outcomes, each once) as the local engine does.

This is the only module that imports Dask (``distributed``), and only inside functions:
Dask is an optional extra.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, NamedTuple

from ...errors import PortscanError
from ...inputs.scope import Scope
from ...inputs.targets import TargetSpec
from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, PortRun, ProbeOutcome, outcome_from_fields
from ..core.plan import ScanPlan
from ..core.split import ShardLayout
from ..core.stats import ScanStats
from ..io.limits import concurrency_budget
from ..io.local import scan_here

#: Seconds to wait for a scheduler to answer (and for it to have a worker).
CONNECT_TIMEOUT = 5.0
#: Submissions of one shard (first included) before the scan fails.
MAX_TRIES = 3
#: Outcomes per batch handed to the consumer, so a big shard does not arrive as one list.
_BATCH = 8192


class DaskMissing(PortscanError):
    """``distributed`` cannot be imported."""


def require_dask() -> Any:
    """The ``distributed`` module, or ``DaskMissing`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise DaskMissing("cluster scans need Dask: pip install 'nornir-portscan[dask]'"
                          ) from None
    return distributed


def check_scope(plan: ScanPlan) -> None:
    """The plan's guards (allow-list, size limit), again: on the client before anything is
    submitted, and on each worker before its shard sends a packet."""
    if isinstance(plan.spec, TargetSpec):
        Scope(list(plan.options.allowed), plan.max_addresses).check(plan.spec)


# ---- on a worker -----------------------------------------------------------------------------

class ShardResult(NamedTuple):
    shard: int
    outcomes: list[tuple[Any, ...]]  # ProbeOutcome fields, as plain tuples (cheap to pickle)
    runs: list[PortRun]
    total: int  # outcomes, runs expanded
    hosts: int  # distinct hosts, each with every port of the shard
    connects: int


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def run_shard(plan: ScanPlan, layout: ShardLayout, index: int) -> ShardResult:
    """One shard, on whichever worker Dask chose: scope re-checked, then ``scan_here``."""
    check_scope(plan)
    share = layout.share(plan, index)
    budget = concurrency_budget(plan.concurrency)  # this worker's descriptors, per thread
    # shards on one machine draw on its one ICMP limiter: each takes its turn for re-probes
    # (core/recheck.py); on other machines the turns cost time, never a verdict
    share = replace(share, concurrency=max(1, budget // _worker_threads()),
                    options=replace(share.options, limiter_slot=(index, layout.count)))
    stats = ScanStats()
    outcomes: list[tuple[Any, ...]] = []
    runs: list[PortRun] = []
    for batch in scan_here(share, stats, runs=True):
        outcomes.extend(map(tuple, batch.outcomes))
        runs.extend(batch.runs)
    per_host: Counter[str] = Counter(o[0] for o in outcomes)
    for run in runs:
        per_host[run.host] += len(run.ports)
    wrong = [h for h, n in per_host.items() if n != len(share.ports)]
    if wrong:
        raise EngineError(f"accounting error in shard {index}: host {wrong[0]} has "
                          f"{per_host[wrong[0]]} outcomes for {len(share.ports)} ports")
    count = len(outcomes) + sum(len(run.ports) for run in runs)
    return ShardResult(index, outcomes, runs, count, len(per_host), stats.connects)


# ---- the client ------------------------------------------------------------------------------

_clients: dict[str, Any] = {}
_clusters: list[Any] = []
_lock = threading.Lock()


def close_all() -> None:
    """Close the clients and local clusters this process opened."""
    with _lock:
        for client in _clients.values():
            try:
                client.close(timeout=5)
            except Exception:  # shutting down: nothing useful to do with it
                pass
        for cluster in _clusters:
            try:
                cluster.close(timeout=5)
            except Exception:
                pass
        _clients.clear()
        _clusters.clear()


def connect(address: str) -> Any:
    """The process's one ``Client`` for ``address`` (``tcp://HOST:PORT`` or ``local:N``).

    ``local:N`` starts a LocalCluster of N single-threaded worker processes bound to
    127.0.0.1, without a dashboard. A scheduler that does not answer within
    ``CONNECT_TIMEOUT``, or has no worker, is an ``EngineError`` of one line."""
    distributed = require_dask()
    with _lock:
        client = _clients.get(address)
        if client is not None and client.status == "running":
            return client
        try:
            if address.startswith("local:"):
                cluster = distributed.LocalCluster(
                    n_workers=int(address.partition(":")[2]), threads_per_worker=1,
                    processes=True, host="127.0.0.1", scheduler_port=0,
                    dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
                _clusters.append(cluster)
                client = distributed.Client(cluster, set_as_default=False)
            else:
                client = distributed.Client(address, timeout=CONNECT_TIMEOUT,
                                            set_as_default=False)
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"cannot use the Dask cluster at {address}: {first}") from None
        if not _clients:
            atexit.register(close_all)
        _clients[address] = client
        return client


def _total_threads(client: Any) -> int:
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _lost_worker(exc: BaseException) -> bool:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return isinstance(exc, (KilledWorker, CommClosedError))


def run_on_cluster(plan: ScanPlan, stats: ScanStats,
                   runs: bool = False) -> Iterator[OutcomeBatch]:
    """Submit the plan's shards to ``plan.cluster``; yield outcomes as shards finish."""
    assert plan.cluster is not None
    check_scope(plan)
    try:
        pickle.dumps(plan)
    except Exception as exc:
        raise EngineError(f"this scan's targets cannot be sent to cluster workers: {exc}"
                          ) from None
    client = connect(plan.cluster)
    from distributed import as_completed

    layout = ShardLayout.for_plan(plan, _total_threads(client),
                                  int.from_bytes(os.urandom(6), "big"))
    token = os.urandom(4).hex()
    tries: dict[int, int] = {}
    index_of: dict[str, int] = {}  # key of each future not yet taken -> its shard
    live: dict[str, Any] = {}

    def submit(index: int) -> Any:
        tries[index] = tries.get(index, 0) + 1
        future = client.submit(run_shard, plan, layout, index, pure=False,
                               key=f"portscan-{token}-{index}-{tries[index]}")
        index_of[future.key] = index
        live[future.key] = future
        return future

    futures = [submit(i) for i in range(layout.count)]
    # while the workers scan: how many hosts the whole scan has, counted independently of
    # the shards (names may resolve to several addresses: only an address-only scan has a
    # total known in advance). A thread: a /8's list takes the client a minute or two.
    counted: list[int] = []
    counter: threading.Thread | None = None
    if isinstance(plan.spec, TargetSpec) and all(i.kind != "name" for i in plan.spec.items):
        spec = plan.spec
        counter = threading.Thread(target=lambda: counted.append(sum(1 for _ in spec)),
                                   name="portscan-count", daemon=True)
        counter.start()
    done: dict[int, ShardResult] = {}
    pending = as_completed(futures, loop=client.loop)  # type: ignore[no-untyped-call]
    try:
        for future in pending:
            index = index_of.pop(future.key)
            live.pop(future.key, None)
            try:
                result: ShardResult = future.result()
            except Exception as exc:
                if _lost_worker(exc) and tries[index] < MAX_TRIES and index not in done:
                    pending.add(submit(index))  # type: ignore[no-untyped-call]
                    continue
                if isinstance(exc, EngineError):
                    raise
                if isinstance(exc, PortscanError):  # the worker's own scope check refused
                    raise EngineError(f"shard {index} of {layout.count} refused on its "
                                      f"worker: {exc}") from None
                raise EngineError(f"shard {index} of {layout.count} failed on the cluster: "
                                  f"{exc!r}") from None
            finally:
                future.release()
            if index in done:
                continue  # a resubmitted shard's second result: taken once
            received = len(result.outcomes) + sum(len(r.ports) for r in result.runs)
            ports = len(layout.ports_of(plan.ports, index))
            if (result.shard != index or received != result.total
                    or result.total != result.hosts * ports):
                raise EngineError(f"accounting error: shard {index} sent {received} outcomes "
                                  f"for {result.hosts} hosts x {ports} ports")
            done[index] = result
            stats.connects += result.connects
            port_runs = result.runs
            for start in range(0, max(1, len(result.outcomes)), _BATCH):
                outcomes = list(map(outcome_from_fields, result.outcomes[start:start + _BATCH]))
                batch = OutcomeBatch(outcomes, port_runs)
                port_runs = []
                if not runs:
                    batch = OutcomeBatch(batch.expanded(), [])
                if batch.outcomes or batch.runs:
                    yield batch
    finally:
        if live:
            client.cancel(list(live.values()))
    if counter is not None:
        counter.join()
    _check_total(plan, layout, done, counted[0] if counted else None)


def _check_total(plan: ScanPlan, layout: ShardLayout, done: dict[int, ShardResult],
                 expected: int | None) -> None:
    if len(done) != layout.count:
        raise EngineError(f"accounting error: {len(done)} of {layout.count} shards finished")
    hosts = 0
    for s in range(layout.host_slices):
        counts = {done[s * layout.port_classes + c].hosts for c in range(layout.port_classes)}
        if len(counts) != 1:
            raise EngineError(f"accounting error: host slice {s}'s port shards disagree on "
                              f"its hosts ({sorted(counts)})")
        hosts += counts.pop()
    total = sum(r.total for r in done.values())
    if total != hosts * len(plan.ports) or (expected is not None and hosts != expected):
        raise EngineError(f"accounting error: {total} outcomes for {hosts} hosts "
                          f"(expected {expected}) x {len(plan.ports)} ports")


# ---- one nornir host's scan on the cluster ---------------------------------------------------

_pool: Any = None


class ClusterJob:
    """A plan running on the cluster from a client thread (a nornir host's scan):
    ``result()`` waits for its outcomes, ``on_outcome`` hears each one as shards finish.

    The threads come from one bounded pool per process; Dask queues the shards."""

    THREADS = 32

    def __init__(self, plan: ScanPlan,
                 on_outcome: Callable[[ProbeOutcome], None] | None = None) -> None:
        global _pool
        self.plan, self.on_outcome, self.stats = plan, on_outcome, ScanStats()
        with _lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="portscan-cluster")
            self._future = _pool.submit(self._run)

    def _run(self) -> list[ProbeOutcome]:
        out: list[ProbeOutcome] = []
        for batch in run_on_cluster(self.plan, self.stats):
            if self.on_outcome is not None:
                for outcome in batch.outcomes:
                    self.on_outcome(outcome)
            out.extend(batch.outcomes)
        return out

    def result(self) -> list[ProbeOutcome]:
        result: list[ProbeOutcome] = self._future.result()
        return result
