"""Cluster scans: the shards of one plan run on the workers of a Dask distributed cluster.

A shard is "index i of n" of the keyed partition of ``core/split.py`` (the one process
shards use too): whole hosts when there are enough of them (a dead host's discovery is
then paid once), ports split only when there are fewer hosts than shards. A scan gets
one shard per worker thread, and up to four when it is big enough to amortise each
shard's tail of timeouts. The partition follows from the plan and one key, from the scan's
seed (``core/seed.py``), so a worker computes its own share from (plan, layout, index)
alone, and the same seed on a cluster of as many threads lays the scan out the same.

A shard's finished hosts stream home while it runs (``remote.py``, through one Dask
queue per scan), each with its place in the shard; the ``Ledger`` takes each place once.
So a lost worker costs only its hosts in flight: its shard runs again, leaving out what
arrived. A worker that stops answering, or a shard far slower than its peers, gets its
shard run again elsewhere, and a cluster on which nothing moves for a minute ends the
scan with an error (the ``watch`` rules). The client checks every shard's count and the
total (H x P outcomes, each once) as the local engine does. A resumed scan's client counts
the hosts its journal holds as arrived, and every shard's first run leaves them out
(``core/shard_skips.py``).

This is the only module that talks to Dask (``distributed``), and only inside functions:
Dask is an optional extra.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any

from ...errors import PortscanError
from ...inputs.targets import TargetSpec
from ..core.decided import DecidedPairs
from ..core.errors import Abandoned, EngineError
from ..core.outcome import OutcomeBatch, PortRun, ProbeOutcome, outcome_from_fields
from ..core.plan import ScanPlan
from ..core.seed import layout_key
from ..core.shard_skips import Repeats, decided_places
from ..core.split import ShardLayout
from ..core.stats import ScanStats
from ..io.local import seed_of, seeded
from . import watch
from .ledger import Ledger
from .remote import HOSTS, START, RunEnd, check_scope, run_shard
from .watch import Rules, hung_workers, stalled, to_run_again

if TYPE_CHECKING:
    from ..io.service import Resumed

_log = logging.getLogger(__name__)
#: What a call to the scheduler raises when it did not answer in time (asyncio's is its own
#: class before Python 3.11)
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)

__all__ = ["ClusterJob", "ClusterScan", "DaskMissing", "check_scope", "close_all", "connect",
           "require_dask", "run_on_cluster", "run_shard"]

#: Seconds to wait for a scheduler to answer (and for it to have a worker).
CONNECT_TIMEOUT = 5.0
#: Outcomes per batch handed to the consumer, so a big shard does not arrive as one list.
_BATCH = 8192
#: Seconds the client waits for a message at a time; the rules are looked at in between.
POLL = 0.2
#: Seconds between looks at the cluster's workers (lost ones, silent ones).
LOOK = 1.0
#: Seconds one call to the scheduler may take before it counts as no answer.
RPC_TIMEOUT = 10.0
#: Seconds a run's end waits for its last messages before the run counts as lost.
END_WAIT = 10.0
#: Messages the scan's queue holds (each up to ``remote.FLUSH_OUTCOMES`` outcomes): a
#: client that falls behind holds the workers back instead of filling the scheduler.
QUEUE_ITEMS = 256


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


def _rules() -> Rules:
    """The watch's rules as its module says now (a test may shorten them)."""
    return Rules(watch.HUNG_AFTER, watch.STRAGGLER_FACTOR, watch.STRAGGLER_FLOOR,
                 watch.STALL_AFTER)


def run_on_cluster(plan: ScanPlan, stats: ScanStats, runs: bool = False,
                   decided: DecidedPairs | None = None,
                   shared_rate: float | None = None) -> Iterator[OutcomeBatch]:
    """Submit the plan's shards to ``plan.cluster``; yield outcomes as hosts finish.

    ``shared_rate`` is a cap this scan shares with others on the same cluster (a nornir
    run's ``--rate``, over all its hosts' scans): each shard then runs at most at
    ``shared_rate`` / the cluster's threads, and a thread runs one shard at a time, so all
    the scans together stay under it, however many there are.

    With ``decided`` (a resumed scan's journal), every shard leaves out from its first run
    the hosts whose ports of its class are decided (a shard with nothing left is not run),
    and pairs decided before that a host probed again whole brings are dropped."""
    assert plan.cluster is not None
    check_scope(plan)
    try:
        pickle.dumps(plan)
    except Exception as exc:
        raise EngineError(f"this scan's targets cannot be sent to cluster workers: {exc}"
                          ) from None
    client = connect(plan.cluster)
    threads = _total_threads(client)
    plan = seeded(plan)  # the workers get the seed with the plan: one port order key
    layout = ShardLayout.for_plan(plan, threads, layout_key(seed_of(plan)))
    if shared_rate:
        cap = shared_rate / max(1, threads)
        layout = replace(layout, rate=cap if layout.rate is None else min(layout.rate, cap))
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
    scan = ClusterScan(client, plan, layout, _rules())
    repeats = None
    if decided is not None and decided.count:
        now = monotonic()
        for index, before in enumerate(decided_places(layout, decided)):
            if before.count:
                scan.ledger.taken_before(index, bytes(before.skip), before.count, now)
        repeats = Repeats(decided) or None
    for outcomes, port_runs in scan.run(stats):
        for start in range(0, max(1, len(outcomes)), _BATCH):
            batch = OutcomeBatch(list(map(outcome_from_fields, outcomes[start:start + _BATCH])),
                                 port_runs)
            port_runs = []
            if repeats is not None:
                batch = OutcomeBatch(*repeats.new(batch.outcomes, batch.runs))
            if not runs:
                batch = OutcomeBatch(batch.expanded(), [])
            if batch.outcomes or batch.runs:
                yield batch
    if counter is not None:
        counter.join()
    _check_total(plan, scan.ledger, counted[0] if counted else None)


class ClusterScan:
    """One plan's shards on the cluster: submissions, the scan's queue of messages, the
    look at the workers. The ledger keeps the account and the watch decides; this object
    does the talking to Dask."""

    def __init__(self, client: Any, plan: ScanPlan, layout: ShardLayout, rules: Rules) -> None:
        self.client, self.plan, self.layout, self.rules = client, plan, layout, rules
        self.token = os.urandom(4).hex()
        now = monotonic()
        self.ledger = Ledger(layout, plan.ports, now)
        self.futures: dict[str, Any] = {}  # key -> future, for attempts not reaped yet
        self.ending: dict[str, tuple[RunEnd, float]] = {}  # ends waiting for their messages
        self.seen: dict[str, tuple[float, float]] = {}  # worker -> (its last_seen, when it moved)
        self.silent: set[str] = set()
        self.looked = now
        self.pause = POLL / 8
        self.queue: Any = require_dask().Queue(f"portscan-{self.token}", client=client,
                                               maxsize=QUEUE_ITEMS)

    # ---- submissions -----------------------------------------------------------------------

    def submit(self, index: int, avoid: frozenset[str] = frozenset()) -> bool:
        """Run shard ``index`` (again), elsewhere than ``avoid``; False when there is
        nowhere else or it ran too often."""
        ledger = self.ledger
        if not ledger.may_submit(index):
            return False
        workers = None
        if avoid:
            workers = [w for w in self.seen if w not in avoid and w not in self.silent]
            if not workers:
                return False
        key = f"portscan-{self.token}-{index}-{ledger.shards[index].submissions + 1}"
        skip = ledger.skip_for(index)
        again = ledger.shards[index].submissions > 0
        future = self.client.submit(run_shard, self.plan, self.layout, index, key,
                                    self.queue.name, skip, key=key, pure=False,
                                    workers=workers, allow_other_workers=bool(workers),
                                    priority=10 if again else 0)
        ledger.submitted(key, index, skip, monotonic())
        _log.info("submitted %s (skip %d places, avoid %s)", key,
                  0 if skip is None else sum(bin(b).count("1") for b in skip), sorted(avoid))
        self.futures[key] = future
        return True

    def drop(self, key: str, cancel: bool = True) -> None:
        """An attempt the scan no longer waits for; its task is cancelled on the cluster."""
        self.ledger.dropped(key)
        future = self.futures.pop(key, None)
        if future is not None and cancel:
            self.client.cancel([future])

    def ensure(self, index: int) -> None:
        """A shard left without a live attempt runs again, or the scan fails."""
        if self.ledger.shards[index].finished is None and not self.ledger.live(index):
            if not self.submit(index):
                raise EngineError(f"shard {index} of {self.layout.count} was lost "
                                  f"{self.ledger.shards[index].submissions} times; giving up")

    # ---- the loop --------------------------------------------------------------------------

    def run(self, stats: ScanStats) -> Iterator[tuple[list[Any], list[PortRun]]]:
        """(outcome tuples, port runs) of hosts as they finish, each once, until every
        shard is finished."""
        for index in range(self.layout.count):
            if self.ledger.shards[index].finished is None:  # (a resume may finish some)
                self.submit(index)
        try:
            while self.ledger.unfinished:
                for message in self.receive():
                    got = self.take(message)
                    if got is not None and (got[0] or got[1]):
                        yield got
                self.reap(stats)
                now = monotonic()
                if now - self.looked >= LOOK:
                    self.looked = now
                    self.look(now)
        finally:
            if self.futures:
                try:
                    self.client.cancel(list(self.futures.values()))
                except Exception:  # the scheduler went away: nothing to cancel there
                    pass
            try:
                self.queue.close()
            except Exception:
                pass

    def receive(self) -> list[bytes]:
        """What runs sent since the last call; when nothing did, a pause first (growing to
        ``POLL`` seconds while nothing comes). Dask's blocking get would log a traceback
        on the scheduler at every timeout, so the queue is polled."""
        try:
            got: list[bytes] = self.queue.get(batch=True, callback_timeout=RPC_TIMEOUT)
        except _TIMEOUTS:
            return []
        except OSError as exc:
            raise EngineError(f"lost the Dask cluster at {self.plan.cluster}: {exc}") from None
        if got:
            self.pause = POLL / 8
        else:
            sleep(self.pause)
            self.pause = min(POLL, self.pause * 2)
        return got

    def take(self, data: bytes) -> tuple[list[Any], list[PortRun]] | None:
        message = pickle.loads(data)
        kind, run = message[0], message[1]
        now = monotonic()
        ledger = self.ledger
        if kind == HOSTS:
            return ledger.hosts(run, message[3], now)
        if kind == START:
            key, index, address, name = message[3:7]
            _log.info("started %s on %s (run %s)", key, address, run)
            if key not in ledger.attempts:
                return None
            if ledger.started(run, key, address, name, now) and ledger.attempts[key].live:
                # Dask ran the task of a lost worker again, from the start: rather a fresh
                # run that leaves out what arrived
                self.drop(key)
                self.ensure(index)
        else:
            ledger.heard(run, now)
        return None

    def reap(self, stats: ScanStats) -> None:
        """Attempts whose Dask task ended: a run's end, a lost worker, a failure."""
        ledger = self.ledger
        for key, future in list(self.futures.items()):
            if not future.done():
                continue
            del self.futures[key]
            index = ledger.attempts[key].shard
            if future.status == "finished":
                self.ending[key] = (future.result(), monotonic())
                future.release()
                continue
            if future.status == "cancelled":
                ledger.dropped(key)
                self.ensure(index)
                continue
            exc = future.exception()
            future.release()
            if _lost_worker(exc):
                ledger.dropped(key)
                self.ensure(index)
                continue
            if isinstance(exc, EngineError):
                raise exc
            if isinstance(exc, PortscanError):  # the worker's own scope check refused
                raise EngineError(f"shard {index} of {self.layout.count} refused on its "
                                  f"worker: {exc}") from None
            raise EngineError(f"shard {index} of {self.layout.count} failed on the cluster: "
                              f"{exc!r}") from None
        for key, (end, since) in list(self.ending.items()):
            verdict = ledger.ended(end, monotonic())
            if verdict == "wait":
                if monotonic() - since < END_WAIT:
                    continue
                ledger.dropped(key)  # its messages never came: a run lost on the way
                self.ensure(end.shard)
            del self.ending[key]
            _log.info("%s ended: %s (%d hosts, %d skipped)", key, verdict, end.hosts,
                      end.skipped)
            stats.connects += end.connects
            if verdict == "won":
                # the names the finishing run could not scan (a lost run's are counted
                # by the one that finished its shard)
                stats.resolver_timeouts.update(dict(end.resolver_timeouts))
                for other in ledger.others(end.shard):
                    self.drop(other)

    def look(self, now: float) -> None:
        """The workers as the scheduler sees them: gone ones' shards run anew at once,
        hung ones' elsewhere (the watch decides), and a stall ends the scan."""
        ledger, rules = self.ledger, self.rules
        try:
            info = self.client.sync(self.client.scheduler.identity, n_workers=-1,
                                    callback_timeout=RPC_TIMEOUT)
        except (*_TIMEOUTS, OSError):
            info = None
        if info is not None:
            workers: dict[str, Any] = info.get("workers", {})
            for address in [w for w in self.seen if w not in workers]:
                _log.info("worker %s is gone", address)
                del self.seen[address]  # gone: what ran there will send nothing more
                for attempt in list(ledger.attempts.values()):
                    run = ledger.run_of(attempt)
                    if attempt.live and run is not None and run.worker == address:
                        self.drop(attempt.key)
                        self.ensure(attempt.shard)
            for address, worker in workers.items():
                last = float(worker.get("last_seen", 0.0))
                before = self.seen.get(address)
                if before is None or before[0] != last:
                    self.seen[address] = (last, now)
            self.silent = {w for w, (_, moved) in self.seen.items()
                           if now - moved > rules.hung_after}
        hung = hung_workers(ledger, now, rules, self.silent)
        queued_on: dict[str, str] = {}
        if hung:
            try:
                processing = self.client.sync(self.client.scheduler.processing,
                                              callback_timeout=RPC_TIMEOUT)
            except (*_TIMEOUTS, OSError):
                processing = {}
            for address, keys in processing.items():
                for key in keys:
                    queued_on[str(key)] = str(address)
        for again in to_run_again(ledger, now, rules, hung, queued_on):
            _log.info("shard %d runs again: %s", again.shard, again.why)
            self.submit(again.shard, again.avoid)
        if stalled(ledger, now, rules):
            raise EngineError(
                f"no progress on the Dask cluster at {self.plan.cluster} for "
                f"{rules.stall_after:.0f} s: {ledger.unfinished} of {self.layout.count} "
                "shards unfinished (its workers hung, gone or busy)")


def _check_total(plan: ScanPlan, ledger: Ledger, expected: int | None) -> None:
    layout = ledger.layout
    hosts = 0
    for s in range(layout.host_slices):
        counts = {ledger.shards[s * layout.port_classes + c].hosts
                  for c in range(layout.port_classes)}
        if len(counts) != 1:
            raise EngineError(f"accounting error: host slice {s}'s port shards disagree on "
                              f"its hosts ({sorted(counts)})")
        hosts += counts.pop()
    total = sum(shard.hosts * shard.ports for shard in ledger.shards)
    if total != hosts * len(plan.ports) or (expected is not None and hosts != expected):
        raise EngineError(f"accounting error: {total} outcomes for {hosts} hosts "
                          f"(expected {expected}) x {len(plan.ports)} ports")

# ---- one nornir host's scan on the cluster ---------------------------------------------------

_pool: Any = None


class ClusterJob:
    """A plan running on the cluster from a client thread (a nornir host's scan):
    ``result()`` waits for its outcomes, ``on_outcome`` hears each one as shards finish.
    With ``resumed`` (a run's journal, ``io/service.Resumed``), what the journal holds comes
    first, the shards leave it out, and each new outcome is recorded.

    The threads come from one bounded pool per process; Dask queues the shards."""

    THREADS = 32

    def __init__(self, plan: ScanPlan,
                 on_outcome: Callable[[ProbeOutcome], None] | None = None,
                 resumed: Resumed | None = None, shared_rate: float | None = None) -> None:
        global _pool
        self.plan, self.on_outcome, self.stats = plan, on_outcome, ScanStats()
        self.resumed, self.shared_rate = resumed, shared_rate
        #: From submission to the last outcome, once the scan ended (as JobHandle's).
        self.elapsed_s: float | None = None
        self._submitted = monotonic()
        with _lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="portscan-cluster")
            self._future = _pool.submit(self._run)

    def when_done(self, callback: Callable[[], None]) -> None:
        """``callback`` once the scan ended, however (on a pool thread, or now)."""
        self._future.add_done_callback(lambda _future: callback())

    def _run(self) -> list[ProbeOutcome]:
        try:
            return self._scan()
        finally:
            self.elapsed_s = monotonic() - self._submitted
            # a run's one warning line names the resolvers its cluster scans found silent
            from ..io.service import shared_engine

            shared_engine().count_resolver_timeouts(self.stats.resolver_timeouts)

    def _scan(self) -> list[ProbeOutcome]:
        resumed = self.resumed
        out: list[ProbeOutcome] = []
        if resumed is not None:
            self._hand_out(resumed.replayed, out)
            if resumed.point is None:  # the journal holds every outcome of this scan
                return out
        decided = None if resumed is None or resumed.point is None else resumed.point.decided
        for batch in run_on_cluster(self.plan, self.stats, decided=decided,
                                    shared_rate=self.shared_rate):
            if resumed is not None:
                for outcome in batch.outcomes:
                    resumed.record(outcome)
            self._hand_out(batch.outcomes, out)
        if resumed is not None:
            resumed.finished()
        return out

    def _hand_out(self, outcomes: list[ProbeOutcome], out: list[ProbeOutcome]) -> None:
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(outcome)
        out.extend(outcomes)

    def result(self) -> list[ProbeOutcome]:
        from concurrent.futures import TimeoutError as Waited

        from ..io.service import WAIT_POLL_S, waiting_stopped

        while True:
            if not self._future.done() and waiting_stopped():
                raise Abandoned("the run stopped waiting for this scan")
            try:
                result: list[ProbeOutcome] = self._future.result(timeout=WAIT_POLL_S)
            except Waited:
                continue
            return result
