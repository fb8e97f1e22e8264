"""One scan for many nornir hosts: the hosts of a run that each scan their own address with
the same settings share one engine plan, and each gets its own outcomes back.

A job per host costs the engine a job's bookkeeping per host and keeps such a run on the
engine's one thread, where it competes for the interpreter with every host's task; one
plan for them all runs as ``scan`` runs the same addresses (on worker processes when it
is big enough). Each host's scan is the same as on its own: its one address, its ports,
its settings, no host discovery (a plan of one address never has it), so its Result is.

Only hosts whose scan is exactly one literal address join (not names, networks or
excludes, not cluster scans, not a resumed run's, whose journal keeps a section per host),
and only once per address in a plan: outcomes are sorted back to hosts by address.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ...engine.core.errors import Abandoned, EngineError
from ...engine.core.outcome import ProbeOutcome
from ...engine.core.plan import ScanPlan, rate_for
from ...engine.io.service import WAIT_POLL_S, shared_engine, waiting_stopped
from ...engine.shards.shared import submit_sharded
from ...inputs.targets import AddressList, Target, TargetSpec
from .run_options import Addressed

if TYPE_CHECKING:
    from .options import ScanKey, ScanOptions


class HostShare:
    """One host's part of a merged scan: its outcomes, complete when every port has one.

    A lock held until then is the cheapest thing a worker thread can sleep on (an Event
    is a Condition and two locks), and a run holds one per host."""

    __slots__ = ("_done", "_submitted", "elapsed_s", "error", "left", "outcomes", "ready")

    def __init__(self, ports: int) -> None:
        self.outcomes: list[ProbeOutcome] = []
        self.left = ports
        self.error: BaseException | None = None
        #: Told once the share is complete (a runner that takes hosts as they finish).
        self.ready: Callable[[], None] | None = None
        #: From submission to the host's last outcome (junit's testcase time), as a
        #: JobHandle's; None until every port has one.
        self.elapsed_s: float | None = None
        self._submitted = time.monotonic()
        self._done = threading.Lock()
        self._done.acquire()

    def add(self, outcome: ProbeOutcome) -> None:
        self.outcomes.append(outcome)
        self.left -= 1
        if self.left == 0:
            self.elapsed_s = time.monotonic() - self._submitted
            self._done.release()
            if self.ready is not None:
                self.ready()

    def end(self, error: BaseException | None) -> None:
        """The plan ended: a host still short of outcomes failed (or was short-changed)."""
        if self.left <= 0:
            return
        self.error = error or EngineError(
            f"accounting error: {len(self.outcomes)} outcomes for 1 host x "
            f"{len(self.outcomes) + self.left} ports")
        self.left = 0
        self._done.release()
        if self.ready is not None:
            self.ready()

    def result(self) -> list[ProbeOutcome]:
        """The outcomes, handed over: the plan keeps every share until its end, and a
        run's outcomes should not stay twice in memory until then."""
        done = self._done.acquire(blocking=False)
        while not done:  # asked before each wait: a run let go ends its hosts at once
            if waiting_stopped():
                raise Abandoned("the run stopped waiting for this scan")
            done = self._done.acquire(timeout=WAIT_POLL_S)
        self._done.release()
        if self.error is not None:
            raise self.error
        outcomes, self.outcomes = self.outcomes, []
        return outcomes


def single_address(options: ScanOptions) -> Target | None:
    """The one literal address a host's plan scans, or None when it scans anything else."""
    plan = options.plan
    if plan is None or plan.cluster is not None or plan.shards is not None:
        return None
    spec = plan.spec
    if (not isinstance(spec, TargetSpec) or len(spec.items) != 1 or spec.excludes
            or spec.items[0].kind != "address"):
        return None
    targets = list(spec)
    return targets[0] if len(targets) == 1 and targets[0].address is not None else None


#: A merged plan's members: address -> (nornir host name, its options).
Members = dict[str, tuple[str, "ScanOptions"]]


def group(resolved: dict[str, ScanOptions | Addressed]
          ) -> tuple[list[tuple[ScanPlan, Members]], list[str]]:
    """Merged plans (only where two hosts or more share one) and the hosts left alone."""
    groups: dict[tuple[object, ...], tuple[ScanPlan, list[Target], Members]] = {}
    keys: dict[int, ScanKey] = {}  # options shared by many hosts: their key made once
    alone: list[str] = []
    for name, item in resolved.items():
        if isinstance(item, Addressed):
            options, target = item.options, item.target
            assert options.plan is not None
            if options.plan.cluster is not None or options.plan.shards is not None:
                alone.append(name)  # runs where its settings say, as single_address leaves
                continue
            rate = rate_for(options.plan, item.loopback)
        else:
            options, found = item, single_address(item)
            if found is None:
                alone.append(name)
                continue
            assert options.plan is not None
            target, rate = found, options.plan.rate
        plan = options.plan
        assert target.address is not None
        scan = keys.get(id(options))
        if scan is None:
            scan = keys[id(options)] = options.key[1:]
        key = (scan, rate, plan.options, plan.concurrency)
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = (replace(plan, rate=rate), [], {})
        if target.address in entry[2]:  # the same address twice: outcomes would be shared
            alone.append(name)
            continue
        entry[1].append(target)
        entry[2][target.address] = (name, options)
    merged: list[tuple[ScanPlan, Members]] = []
    for plan, targets, members in groups.values():
        if len(targets) < 2:
            alone.extend(name for name, _ in members.values())
            continue
        merged.append((replace(plan, spec=AddressList(targets)), members))
    return merged, alone


def submit(plan: ScanPlan, members: Members,
           probe_done: Callable[[ProbeOutcome], None] | None,
           ready: Callable[[str], None] | None = None) -> dict[str, HostShare]:
    """Start a merged plan on the shared engine; each member's share, by host name.
    ``ready`` hears each member's name once its share is complete.

    Outcomes are sorted on the thread that decides them, into lists the hosts' tasks take:
    the engine keeps no other copy of them."""
    ports = len(plan.ports)
    by_address = {address: HostShare(ports) for address in members}
    if ready is not None:
        for address, share in by_address.items():
            share.ready = functools.partial(ready, members[address][0])

    def route(outcome: ProbeOutcome) -> None:
        by_address[outcome.host].add(outcome)
        if probe_done is not None:
            probe_done(outcome)

    def end(error: BaseException | None) -> None:
        for share in by_address.values():
            share.end(error)

    submit_sharded(shared_engine(), plan, route, keep=False, on_end=end)
    return {members[address][0]: share for address, share in by_address.items()}
