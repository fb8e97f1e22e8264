"""A shard worker's side: the process that scans its share of a plan and sends its
outcomes up a pipe, and how a process forks a plan's workers (``fork_workers``), whether
that process is the scan's own or the fork server (``forkserver.py``).
"""

from __future__ import annotations

import functools
import gc
import mmap
import os
import pickle
import signal
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..core.errors import EngineError
from ..core.outcome import PortRun
from ..core.plan import ScanPlan
from ..core.split import ShardLayout
from ..core.stats import ScanStats
from ..core.work import IcmpEvidence
from ..io.limits import concurrency_budget
from ..io.local import scan_here

if TYPE_CHECKING:
    from ..core.resume import ResumePoint

#: Each message up a worker's pipe: its length, then a pickle.
HEADER = struct.Struct("!I")


class Done(NamedTuple):
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


def worker_main(plan: ScanPlan, layout: ShardLayout, index: int, budget: int, wfd: int,
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
        view = memoryview(HEADER.pack(len(data)) + data)
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
        flush(Done(sent + waiting, stats.connects, tuple(stats.resolver_timeouts.items())))
    except BaseException as exc:
        try:
            send(batch, runs)
            flush(EngineError(f"scan worker {index} failed: {exc!r}"))
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


class WorkRequest(NamedTuple):
    """What a plan's workers are forked with, whichever process forks them."""

    plan: ScanPlan
    layout: ShardLayout
    resume: ResumePoint | None  # what a resumed plan decided; each worker takes its share
    journal_section: int | None  # set: workers encode their outcomes as journal records


class Worker(Protocol):
    """A started worker, whoever forked it: the pipe its outcomes come through."""

    fd: int

    def stop(self) -> None: ...


class ForkedWorker:
    """A worker this process forked: the read end of its pipe, and the child to reap."""

    def __init__(self, fd: int, pid: int) -> None:
        self.fd, self.pid = fd, pid

    def stop(self) -> None:
        """End it if it still runs, and reap it; a child is never left a zombie."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def fork_workers(request: WorkRequest,
                 in_child: Callable[[], None] = lambda: None) -> list[ForkedWorker]:
    """Fork the request's workers from this process, each writing to a pipe of its own.

    The budget of descriptors is taken here, where the workers inherit the limit it
    raises. ``in_child`` runs first in each child (a fork server closes its socket)."""
    plan, layout = request.plan, request.layout
    budget = concurrency_budget(plan.concurrency)  # the workers' descriptors, shared out
    evidence = SharedIcmpEvidence()
    workers: list[ForkedWorker] = []
    # The workers inherit the parent's objects (a nornir run's inventory and Results)
    # copy-on-write; a collection in a worker would touch every one of them and copy
    # every page. Frozen objects are left alone by collections, in the workers too.
    gc.freeze()
    try:
        for i in range(layout.count):
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(rfd)
                for earlier in workers:
                    os.close(earlier.fd)
                in_child()
                worker_main(plan, layout, i, budget, wfd, evidence, request.resume,
                        request.journal_section)
            os.close(wfd)
            workers.append(ForkedWorker(rfd, pid))
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    finally:
        gc.unfreeze()  # this process collects its own garbage again
    return workers
