"""The one split of a scan into shards (core/split.py), for forked processes and for a
Dask cluster alike: every (host, port) in exactly one shard, the same shard on every
computation. Pure: no socket, no process, no Dask."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import replace

import pytest

from nornir_portscan.engine.core.plan import plan_scan
from nornir_portscan.engine.core.split import HostSlice, ShardLayout
from nornir_portscan.inputs.targets import TargetSpec

# ---- the partition: every (host, port) in exactly one shard -----------------------------------

@pytest.mark.parametrize(("targets", "exclude", "ports", "threads"), [
    ("127.0.0.1-100", (), "1-10", 2),         # whole hosts per shard
    ("127.0.0.1-3", (), "1-50", 4),           # fewer hosts than shards: ports split too
    ("127.0.0.1", (), "22", 8),               # one probe
    ("127.0.1.0/24", ("127.0.1.7-20",), "80,443", 3),  # excludes leave gaps in the slices
    ("127.0.0.1-5 127.0.0.3-9", (), "1-7", 2),  # overlapping entries: each address once
    ("127.0-1.2,5.1-3,9", ("127.1.5.9",), "1-3", 2),  # nmap octet ranges
    ("localhost LOCALHOST ::1 ::/124 127.0.0.0/29", ("::5", "127.0.0.3"), "7", 2),
])
def test_shards_partition_the_address_x_port_space(targets: str, exclude: tuple[str, ...],
                                                   ports: str, threads: int) -> None:
    plan = plan_scan(targets, ports, exclude=exclude)
    want = {(t.address, p) for t in plan.spec for p in plan.ports}
    layouts = []
    for key in (0, 1, 0xDEADBEEF1234):
        for processes in (2, 3, 8):  # forked shards: by hosts, or by ports when hosts are few
            layouts.append(ShardLayout.for_processes(plan, processes, key))
        layout = ShardLayout.for_plan(plan, threads, key, min_probes=1)
        assert layout.count >= min(threads, len(want))
        asked = ShardLayout.for_plan(replace(plan, shards=4 * threads), threads, key,
                                     min_probes=1)
        assert asked.count >= min(4 * threads, len(want))
        layouts.append(asked)
        layouts.append(layout)
    for layout in layouts:
        seen: Counter[tuple[str | None, int]] = Counter()
        for i in range(layout.count):
            share = layout.share(plan, i)
            hosts = [t.address for t in share.spec]
            assert len(hosts) <= share.spec.count()
            seen.update((h, p) for h in hosts for p in share.ports)
        assert set(seen) == want and max(seen.values()) == 1


def test_shard_count_follows_the_scan_size() -> None:
    small = plan_scan("127.0.0.0/20", "1-10")  # 40,940 probes: one shard per thread
    assert ShardLayout.for_plan(small, 2, 7).count == 2
    big = plan_scan("127.0.0.0/16", "1-100")  # 6.5 million: 4 per thread, or 1M at most each
    assert ShardLayout.for_plan(big, 2, 7).count == 8
    assert ShardLayout.for_plan(big, 64, 7).count == 100
    one = plan_scan("127.0.0.1", "top100")  # one host's scan of a nornir run: one task
    assert ShardLayout.for_plan(one, 8, 7).count == 1


def test_a_shard_is_the_same_on_every_computation() -> None:
    plan = plan_scan("127.0.0.0/24", "1-4", shards=8)
    layout = ShardLayout.for_plan(plan, 2, 12345)
    assert layout.count == 8
    first = [list(layout.share(plan, i).spec) for i in range(layout.count)]
    again = [list(ShardLayout.for_plan(plan, 2, 12345).share(plan, i).spec)
             for i in range(layout.count)]
    assert first == again
    # keyed: another key spreads the hosts differently
    other = ShardLayout.for_plan(plan, 2, 99999)
    assert [list(other.share(plan, i).spec) for i in range(other.count)] != first


def test_process_shards_split_hosts_only_when_each_gets_four() -> None:
    many = plan_scan("127.0.0.0/24", "1-1024", rate=1000)
    layout = ShardLayout.for_processes(many, 2, 7)
    assert (layout.host_slices, layout.port_classes, layout.rate) == (2, 1, 500)
    few = plan_scan("127.0.0.1-7", "1-100")
    assert (ShardLayout.for_processes(few, 2, 7).host_slices,
            ShardLayout.for_processes(few, 2, 7).port_classes) == (1, 2)


# ---- the order a process shard hands its hosts out in -----------------------------------------

def test_process_shards_hand_out_their_hosts_in_address_order() -> None:
    """As an unsharded scan does: in the keyed order, consecutive probes went to addresses
    far apart, and a /16 x 10 cost the shards' kernel 6 % more CPU in the benchmark lab
    (its firewall's address-set lookups missed the caches). The split is still keyed."""
    plan = plan_scan("127.0.0.0/22", "1-10", exclude=("127.0.1.7-20",))
    for key in (7, 0xDEADBEEF1234, (1 << 40) + 12345):  # (keys 0 and 1 map i to i)
        for processes in (2, 3, 8):
            layout = ShardLayout.for_processes(plan, processes, key)
            for i in range(layout.count):
                hosts = [int(ipaddress.ip_address(str(t.address)))
                         for t in layout.share(plan, i).spec]
                assert len(hosts) > 900 // processes
                assert hosts == sorted(hosts)
                assert hosts[-1] - hosts[0] > 1.5 * len(hosts)  # still spread, not a block


@pytest.mark.parametrize("slices", [1, 2, 7, 8, 9, 40])
def test_a_target_keeps_its_place_however_its_slice_is_walked(slices: int) -> None:
    """A target's place in its slice (what the cluster ledger and a resumed shard's skip
    bitmap count) follows from its position alone, whether the slice is walked in address
    order (few slices) or reached through the inverted map (many)."""
    spec = plan_scan("127.0.0.0/23", "22", exclude=("127.0.0.9-30",)).spec
    assert isinstance(spec, TargetSpec)
    layout = ShardLayout(0xBEEF1234567, spec.count(), slices, 1, None)
    seen = []
    for s in range(slices):
        hosts = HostSlice(spec, layout, s, ())
        for place, target in hosts.placed():
            position = spec.position_of(str(target.address))
            assert position is not None and hosts.holds(position)
            assert place == (hosts.offset + position * hosts.stride) % hosts.n - hosts.first
            seen.append(str(target.address))
    assert sorted(seen) == sorted(str(t.address) for t in spec)  # each target once
