"""Process sharding: one engine per core, each with its share of the address x port space
(the keyed split of ``core/split.py``, as cluster shards have).

The kernel's connect path is the floor of a scan's cost, and a single Python
process keeps only one core busy with it. Large scans fork workers (one
scheduler and readiness loop each) and merge their outcome streams in order
of completion; small scans stay in one process, where a fork would dominate.
"""

from __future__ import annotations

import os
import pickle
import selectors
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ...inputs.targets import TargetSource
from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, outcome_from_fields
from ..core.plan import ScanPlan
from ..core.seed import layout_key
from ..core.split import ShardLayout
from ..core.stats import ScanStats
from ..io.limits import usable_cores
from ..io.local import seed_of, seeded
from .forkserver import current_fork_server
from .workers import HEADER, Done, Worker, WorkRequest, fork_workers

if TYPE_CHECKING:
    from ..core.resume import ResumePoint

#: Below this many probes a single process wins: forking costs more than it saves. (A
#: cluster shard's own minimum is core/split.SHARD_MIN_PROBES.)
FORK_MIN_PROBES = 8192


def shard_count(spec: TargetSource, ports: int, requested: int | None = None) -> int:
    if requested is not None:
        return max(1, requested)
    cpus = usable_cores()
    if cpus < 2 or spec.count() * ports < FORK_MIN_PROBES:
        return 1
    return min(cpus, 8)


def run_sharded(plan: ScanPlan, count: int, stats: ScanStats, runs: bool = False,
                resume: ResumePoint | None = None,
                record: tuple[int, Callable[[bytes], None]] | None = None,
                ) -> Iterator[OutcomeBatch]:
    """Start ``count`` workers and yield their outcomes, a batch at a time, as they arrive.

    The workers are forked by the fork server when one serves this process
    (``forkserver.py``), else from here. ``stats`` gets the workers' counts as each one
    finishes. Down hosts' port runs are passed on whole with ``runs``, else expanded here.
    A resumed plan's workers get ``resume`` (what is decided), and each takes its own
    share of it. With ``record`` (a journal section's id, and where its records go)
    each worker encodes its outcomes as journal records itself, in parallel, and each is
    handed to ``record`` before its outcomes are yielded."""
    plan = seeded(plan)  # one seed for the layout and every worker's port order
    layout = ShardLayout.for_processes(plan, count, layout_key(seed_of(plan)))
    request = WorkRequest(plan, layout, resume, None if record is None else record[0])
    server = current_fork_server()
    workers: Sequence[Worker] | None = server.start(request) if server is not None else None
    if workers is None:  # no fork server (scan, a runbook), or it is gone
        workers = fork_workers(request)
    children = {w.fd: w for w in workers}  # pipe read end -> its worker
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytearray] = {}
    received: dict[int, int] = {}  # outcomes from each worker, to check against its count
    finished: set[int] = set()
    try:
        for fd in children:
            buffers[fd] = bytearray()
            received[fd] = 0
            sel.register(fd, selectors.EVENT_READ)
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
                    (size,) = HEADER.unpack_from(buf)
                    if len(buf) < 4 + size:
                        break
                    obj = pickle.loads(bytes(buf[4:4 + size]))
                    del buf[:4 + size]
                    if isinstance(obj, Done):
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
        for worker in children.values():
            worker.stop()
        sel.close()

