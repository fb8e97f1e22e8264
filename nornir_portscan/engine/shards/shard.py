"""Process sharding: one engine per core, each with its share of the address x port space
(the keyed split of ``core/split.py``, as cluster shards have).

The kernel's connect path is the floor of a scan's cost, and a single Python
process keeps only one core busy with it. Large scans fork workers (one
scheduler and readiness loop each) and merge their outcome streams in order
of completion; small scans stay in one process, where a fork would dominate.
"""

from __future__ import annotations

import functools
import gc
import mmap
import os
import pickle
import selectors
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple

from ...inputs.targets import TargetSource
from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, PortRun, outcome_from_fields
from ..core.plan import ScanPlan
from ..core.seed import layout_key
from ..core.split import ShardLayout
from ..core.stats import ScanStats
from ..core.work import IcmpEvidence
from ..io.limits import concurrency_budget
from ..io.local import scan_here, seed_of, seeded

if TYPE_CHECKING:
    from ..core.resume import ResumePoint

#: Below this many probes a single process wins: forking costs more than it saves. (A
#: cluster shard's own minimum is core/split.SHARD_MIN_PROBES.)
FORK_MIN_PROBES = 8192
_HEADER = struct.Struct("!I")


class _Done(NamedTuple):
    """A worker's last message: it finished, how many outcomes it sent, what it cost."""

    outcomes: int
    connects: int
    resolver_timeouts: tuple[tuple[str, int], ...] = ()  # names each silent resolver cost


class SharedIcmpEvidence(IcmpEvidence):
    """The shards' common board of ICMP evidence, in memory mapped before the fork.

    A network is a byte in each of two tables, picked by a CRC of its name: a byte is
    written whole (no read-modify-write to race on), and a collision only makes a
    network look as if it had rejects, which costs re-probes, never a verdict."""

    SLOTS = 1 << 16

    def __init__(self) -> None:
        super().__init__()
        self._board = mmap.mmap(-1, 2 * self.SLOTS)

    def _slot(self, table: int, network: str) -> int:
        return table * self.SLOTS + zlib.crc32(network.encode()) % self.SLOTS

    def saw_reject(self, network: str) -> None:
        self._board[self._slot(0, network)] = 1

    def has_rejects(self, network: str) -> bool:
        return self._board[self._slot(0, network)] != 0

    def saw_limit(self, network: str) -> None:
        self._board[self._slot(1, network)] = 1

    def is_limited(self, network: str) -> bool:
        return self._board[self._slot(1, network)] != 0


def shard_count(spec: TargetSource, ports: int, requested: int | None = None) -> int:
    if requested is not None:
        return max(1, requested)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not cpus or cpus < 2 or spec.count() * ports < FORK_MIN_PROBES:
        return 1
    return min(cpus, 8)


def _worker(plan: ScanPlan, layout: ShardLayout, index: int, budget: int, wfd: int,
            evidence: SharedIcmpEvidence, resume: ResumePoint | None,
            journal_section: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    share = layout.share(plan, index)
    share = replace(share, concurrency=max(1, budget // layout.count),
                    options=replace(share.options, limiter_slot=(index, layout.count)))
    batch: list[tuple[Any, ...]] = []
    runs: list[PortRun] = []  # a down host's ports: one record each, expanded by the parent
    sent = waiting = 0  # outcomes (runs expanded) sent and not yet sent: the parent checks
    last = monotonic()

    encode = None
    if journal_section is not None:  # the journal's records are made here, in parallel
        from ..core.records import encode_batch

        encode = functools.partial(encode_batch, journal_section)

    def send(tuples: list[tuple[Any, ...]], port_runs: list[PortRun]) -> None:
        if encode is None:
            flush((tuples, port_runs))
        else:
            flush((tuples, port_runs, encode(tuples, port_runs)))

    def flush(obj: object) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            n = os.write(wfd, view)
            view = view[n:]

    stats = ScanStats()
    try:
        for decided in scan_here(share, stats, runs=True, icmp_evidence=evidence,
                                 resume=resume):
            # plain tuples pickle in C; their PortState is pickled once per batch (memo)
            batch.extend(map(tuple, decided.outcomes))
            waiting += len(decided.outcomes)
            if decided.runs:
                runs.extend(decided.runs)
                waiting += sum(len(run.ports) for run in decided.runs)
            now = monotonic()
            # a message holds about as many outcomes as the parent should expand at once
            if waiting >= 2048 or now - last > 0.05:
                send(batch, runs)
                sent += waiting
                batch, runs, waiting = [], [], 0
                last = now
        send(batch, runs)
        flush(_Done(sent + waiting, stats.connects, tuple(stats.resolver_timeouts.items())))
    except BaseException as exc:
        try:
            send(batch, runs)
            flush(EngineError(f"scan worker {index} failed: {exc!r}"))
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


def run_sharded(plan: ScanPlan, count: int, stats: ScanStats, runs: bool = False,
                resume: ResumePoint | None = None,
                record: tuple[int, Callable[[bytes], None]] | None = None,
                ) -> Iterator[OutcomeBatch]:
    """Fork ``count`` workers and yield their outcomes, a batch at a time, as they arrive.

    ``stats`` gets the workers' counts as each one finishes.
    Down hosts' port runs are passed on whole with ``runs``, else expanded here. A resumed
    plan's workers inherit ``resume`` (what is decided) with the fork, and each takes its
    own share of it. With ``record`` (a journal section's id, and where its records go)
    each worker encodes its outcomes as journal records itself, in parallel, and each is
    handed to ``record`` before its outcomes are yielded."""
    plan = seeded(plan)  # one seed for the layout and every worker's port order
    layout = ShardLayout.for_processes(plan, count, layout_key(seed_of(plan)))
    budget = concurrency_budget(plan.concurrency)  # the workers' descriptors, shared out
    evidence = SharedIcmpEvidence()
    children: dict[int, int] = {}  # pipe read end -> worker pid
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytearray] = {}
    received: dict[int, int] = {}  # outcomes from each worker, to check against its count
    # The workers inherit the parent's objects (a nornir run's inventory and Results)
    # copy-on-write; a collection in a worker would touch every one of them and copy
    # every page. Frozen objects are left alone by collections, in the workers too.
    gc.freeze()
    try:
        for i in range(count):
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(rfd)
                _worker(plan, layout, i, budget, wfd, evidence, resume,
                        None if record is None else record[0])
            os.close(wfd)
            children[rfd] = pid
            buffers[rfd] = bytearray()
            received[rfd] = 0
            sel.register(rfd, selectors.EVENT_READ)
            finished: set[int] = set()
        gc.unfreeze()  # the parent collects its own garbage again
        error: BaseException | None = None
        while len(finished) < len(children) or sel.get_map():
            for key, _ in sel.select():
                fd = int(key.fd)
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    sel.unregister(fd)
                    if fd not in finished and error is None:
                        error = EngineError("a scan worker exited before it finished")
                    finished.add(fd)
                    continue
                buf = buffers[fd]
                buf += chunk
                while len(buf) >= 4:
                    (size,) = _HEADER.unpack_from(buf)
                    if len(buf) < 4 + size:
                        break
                    obj = pickle.loads(bytes(buf[4:4 + size]))
                    del buf[:4 + size]
                    if isinstance(obj, _Done):
                        finished.add(fd)
                        stats.connects += obj.connects
                        stats.resolver_timeouts.update(dict(obj.resolver_timeouts))
                        if obj.outcomes != received[fd] and error is None:
                            error = EngineError(
                                f"accounting error: a scan worker sent {obj.outcomes} outcomes, "
                                f"{received[fd]} arrived")
                    elif isinstance(obj, BaseException):
                        error = obj
                    else:
                        tuples, port_runs = obj[0], obj[1]
                        if record is not None:
                            record[1](obj[2])
                        decided = OutcomeBatch(list(map(outcome_from_fields, tuples)), port_runs)
                        if not runs:
                            decided = OutcomeBatch(decided.expanded(), [])
                        received[fd] += len(tuples) + sum(len(r.ports) for r in port_runs)
                        if decided.outcomes or decided.runs:
                            yield decided
        if error is not None:
            raise error
    finally:
        gc.unfreeze()
        for fd, pid in children.items():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        sel.close()

