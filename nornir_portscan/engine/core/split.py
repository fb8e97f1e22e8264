"""How a plan is cut into shards: one scheme for process shards and cluster shards.

A shard is "index i of n" of a keyed partition of the address x port space:

- the targets, laid end to end as positions 0..H-1 (H is the target count before
  excludes), are permuted by p(j) = (offset + j * stride) mod H, with the stride prime
  to H and both taken from one key per scan (``core/seed.layout_key`` of its seed); host
  slice s of n_h takes the positions p with p * n_h div H = s, so a slice is spread over
  the whole target list rather than one subnet's routers;
- ports are split (port class c of n_p takes the ports whose index is c mod n_p) only
  when there are too few hosts: whole hosts per shard mean a dead host's discovery is
  paid once;
- shard i is host slice i div n_p crossed with port class i mod n_p.

A shard follows from the plan, the layout and its index alone, so a worker (a forked
process, a Dask worker on another machine) computes its own share. The key is given by
the caller (``shards/``, from the scan's seed): nothing here draws randomness. How many
shards, and which cut, differs: forked processes run all at once, one per core
(``ShardLayout.for_processes``); a cluster's shards queue on its worker threads
(``ShardLayout.for_plan``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ...errors import ScopeError
from ...inputs.scope import in_networks
from ...inputs.targets import Target, TargetSource, TargetSpec
from .errors import EngineError
from .plan import ScanPlan
from .work import affine_map

#: Process shards split by hosts when each gets at least this many; else by ports.
HOSTS_PER_PROCESS = 4
#: Shards per cluster worker thread at most: a lost worker then costs a quarter of its share.
SHARDS_PER_THREAD = 4
#: Probes a shard should have before the scan is cut finer than one shard per thread. Each
#: shard pays the engine's tail (the last silent ports' timeouts, about 1.3 s in the
#: benchmark lab) and a thread runs its shards one after another: measured on a /20 x 10
#: (40,940 probes, 2 workers), 8 shards took 5.0 s where 2 took 2.0 s.
SHARD_TARGET_PROBES = 1 << 16
#: A straggler's copy repeats what its shard has not sent home, and the client keeps a bit
#: per host of each running shard: bound a shard's size.
SHARD_MAX_PROBES = 1 << 20
#: Below this many probes a shard costs Dask more than it saves (one host's top100: one).
SHARD_MIN_PROBES = 64
MAX_SHARDS = 4096
#: A slice of at most this many (process shards: one per core, at most 8) is handed out in
#: address order, found by a walk over the whole target list: each of its targets costs at
#: most this many steps of arithmetic (a /12 cut in 8: 6.8 us a host where the inverted
#: map takes 6.0, most of it ``TargetSpec.at``; cut in 16: 10.0).
ADDRESS_ORDER_MAX_SLICES = 8


@dataclass(frozen=True)
class ShardLayout:
    """How a plan is cut: ``host_slices`` x ``port_classes`` shards under one key."""

    key: int
    hosts: int  # the host permutation's size: the spec's count, an upper bound
    host_slices: int
    port_classes: int
    rate: float | None  # each shard's share of the plan's rate cap

    @property
    def count(self) -> int:
        return self.host_slices * self.port_classes

    @classmethod
    def for_processes(cls, plan: ScanPlan, count: int, key: int) -> ShardLayout:
        """``count`` shards that run at once, one per process: by hosts when there are
        ``HOSTS_PER_PROCESS`` per shard, else by ports (one host x all ports)."""
        hosts = max(1, plan.spec.count())
        count = max(1, count)
        rate = None if plan.rate is None else plan.rate / count
        if hosts >= count * HOSTS_PER_PROCESS:
            return cls(key, hosts, count, 1, rate)
        return cls(key, hosts, 1, count, rate)

    @classmethod
    def for_plan(cls, plan: ScanPlan, threads: int, key: int,
                 min_probes: int = SHARD_MIN_PROBES) -> ShardLayout:
        """Shards for a cluster of ``threads`` worker threads: one per thread, up to four
        when the scan is big enough to amortise each shard's tail of timeouts."""
        hosts, ports = max(1, plan.spec.count()), len(plan.ports)
        probes = hosts * ports
        threads = max(1, threads)
        if plan.shards is not None:  # asked for: exactly that many (as far as probes go)
            wanted = plan.shards
        else:
            wanted = min(max(threads, math.ceil(probes / SHARD_TARGET_PROBES)),
                         SHARDS_PER_THREAD * threads)
            wanted = max(wanted, math.ceil(probes / SHARD_MAX_PROBES))
        wanted = max(1, min(wanted, MAX_SHARDS, probes // max(1, min_probes)))
        if hosts >= wanted:
            slices, classes = wanted, 1
        else:
            slices, classes = hosts, min(ports, math.ceil(wanted / hosts))
        running = max(1, min(threads, slices * classes))
        rate = None if plan.rate is None else plan.rate / running
        return cls(key, hosts, slices, classes, rate)

    def ports_of(self, ports: tuple[int, ...], index: int) -> tuple[int, ...]:
        """Shard ``index``'s port class."""
        return ports[index % self.port_classes::self.port_classes]

    def share(self, plan: ScanPlan, index: int, skip: bytes | None = None) -> ScanPlan:
        """Shard ``index``'s plan: its host slice (less the places ``skip`` marks) and its
        port class, run in one process."""
        hosts = HostSlice(plan.spec, self, index // self.port_classes, plan.options.allowed,
                          skip)
        return replace(plan, spec=hosts, ports=self.ports_of(plan.ports, index),
                       rate=self.rate, shards=1, cluster=None)


class HostSlice:
    """The targets whose keyed-permuted index falls in one of ``host_slices`` equal slices.

    The permutation p(j) = (offset + j * stride) mod H, gcd(stride, H) = 1, spreads a
    slice over the whole target list, so no shard takes one subnet's routers alone; a
    slice of a few is handed out in address order, as an unsharded scan goes
    (``_targets``). Each target is checked against the allow-list again (a cluster worker
    gets the plan over the network), and a target source longer than its count is an
    accounting error.

    A target's place in its slice (p minus the slice's first position) names it across
    runs of the same shard: ``skip``, a bitmap over places, leaves out the targets an
    earlier run of the shard already finished (a cluster shard run again after a lost or
    hung worker does only what is left)."""

    def __init__(self, spec: TargetSource, layout: ShardLayout, slice_: int,
                 allowed: tuple[Any, ...], skip: bytes | None = None) -> None:
        self.spec, self.slice, self.allowed, self.skip = spec, slice_, allowed, skip
        self.n, self.slices = layout.hosts, layout.host_slices
        self.stride, self.offset = affine_map(layout.key, self.n)
        self.first = -(-slice_ * self.n // self.slices)  # the slice's first position
        self.skipped = 0  # targets ``skip`` left out, counted as iteration passes them

    def __iter__(self) -> Iterator[Target]:
        for _, target in self.placed():
            yield target

    def placed(self) -> Iterator[tuple[int, Target]]:
        """(place, target) for every target of the slice not in ``skip``."""
        skip = self.skip
        for place, target in self._targets():
            if skip is not None and skip[place >> 3] >> (place & 7) & 1:
                self.skipped += 1
                continue
            if (self.allowed and target.address is not None
                    and not in_networks(target.address, self.allowed)):
                raise ScopeError(f"target {target.address} is outside the allowed networks")
            yield place, target

    def _targets(self) -> Iterator[tuple[int, Target]]:
        n, slices, want, stride, offset = self.n, self.slices, self.slice, self.stride, self.offset
        first, spec = self.first, self.spec
        last = -(-(want + 1) * n // slices)
        if isinstance(spec, TargetSpec) and spec.count() == n:
            if slices <= ADDRESS_ORDER_MAX_SLICES and last <= n:  # (n: a slice of the layout)
                # in address order: the keyed position, stepped along the target list, is
                # checked against the slice. Probes to neighbouring addresses one after
                # another keep per-address state on the probing machine in its caches (a
                # firewall's address sets, routes): in keyed order a /16 x 10 in the
                # benchmark lab cost the shards 6 % more system CPU, their nftables set
                # lookups twice the samples
                p, step = offset, stride % n
                for j in range(n):
                    if first <= p < last:
                        target = spec.at(j)
                        if target is not None:
                            yield p - first, target
                    p += step
                    if p >= n:
                        p -= n
                return
            # straight to this slice's positions: p = (offset + j * stride) mod n inverted,
            # so a shard of a /8 cut in many costs its own hosts, not a walk over 16 million
            inverse = pow(stride, -1, n) if n > 1 else 0
            for p in range(first, last):
                target = spec.at((p - offset) * inverse % n)
                if target is not None:
                    yield p - first, target
            return
        for j, target in enumerate(spec):  # any other target source: walk it
            if j >= n:
                raise EngineError(f"accounting error: the targets hold more than {n} hosts")
            p = (offset + j * stride) % n
            if p * slices // n == want:
                yield p - first, target

    def count(self) -> int:
        """Places in the slice (an upper bound of its targets; ``skip`` not subtracted)."""
        n, slices, s = self.n, self.slices, self.slice
        return -(-(s + 1) * n // slices) - self.first

    def holds(self, position: int) -> bool:
        """Whether the target at ``position`` of the whole list is this slice's (a resumed
        shard takes its own hosts decided in part, and no other shard's)."""
        n = self.n
        return (self.offset + position * self.stride) % n * self.slices // n == self.slice
