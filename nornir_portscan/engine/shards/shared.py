"""The shared engine's big plans on worker processes, as ``scan`` runs them.

The shared engine (io/service.py) runs every job on one loop, one thread: in a nornir
run that thread shares the interpreter with every host's task, and a run of tens of
thousands of hosts went at a fraction of ``scan``'s speed. A plan big enough to shard runs
on ``run_sharded``'s workers instead, its outcomes handed out through the same
``JobHandle``, unless a rate or concurrency cap must hold across the loop's jobs and the
workers' (the loop is where caps are shared).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..core.outcome import ProbeOutcome
from ..core.plan import ScanPlan
from ..core.stats import ScanStats
from ..io.service import Engine, JobHandle
from .shard import run_sharded, shard_count


def shards_for(engine: Engine, plan: ScanPlan) -> int:
    """Worker processes for a plan handed to the shared engine: as many as ``scan`` would
    use, or 1 (the engine's loop) when a rate or concurrency cap must hold across the
    loop's jobs and the workers'."""
    if (engine.rate or plan.rate or plan.settings.worker_rate
            or engine.concurrency_asked or plan.cluster is not None):
        return 1
    return shard_count(plan.spec, len(plan.ports), plan.shards)


def submit_sharded(engine: Engine, plan: ScanPlan,
                   on_outcome: Callable[[ProbeOutcome], None] | None = None, *,
                   keep: bool = True,
                   on_end: Callable[[BaseException | None], None] | None = None) -> JobHandle:
    """A plan for the shared engine, run as ``scan`` runs it: on worker processes when it is
    big enough and no cap is shared (``shards_for``), else on the engine's loop. The loop is
    one thread, and in a nornir run it shares the interpreter with every host's task."""
    count = shards_for(engine, plan)
    if count <= 1:
        return engine.submit(plan, on_outcome, keep=keep, on_end=on_end)
    handle = JobHandle(plan, on_outcome, keep=keep, on_end=on_end)

    def run() -> None:
        stats = ScanStats()
        try:
            for batch in run_sharded(plan, count, stats):
                for outcome in batch.outcomes:
                    handle.hand_out(outcome)
        except BaseException as exc:  # the handle's owner hears it
            handle.end(exc)
        else:
            handle.end(None)
        finally:  # the workers' silent resolvers: the engine's warning names them too
            engine.count_resolver_timeouts(stats.resolver_timeouts)

    threading.Thread(target=run, name="portscan-shards", daemon=True).start()
    return handle
