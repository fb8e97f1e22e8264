"""The cluster scan's decisions without Dask or sockets: a shard's places taken once across
runs (the ledger), when a shard runs again (the watch), how a run groups finished hosts,
and a host slice that leaves out what an earlier run finished."""

from __future__ import annotations

import pytest

from nornir_portscan.engine.core.errors import EngineError
from nornir_portscan.engine.core.outcome import OutcomeBatch, PortRun, PortState, ProbeOutcome
from nornir_portscan.engine.core.plan import plan_scan
from nornir_portscan.engine.core.split import HostSlice, ShardLayout
from nornir_portscan.engine.shards.ledger import MAX_SUBMISSIONS, Ledger
from nornir_portscan.engine.shards.remote import FinishedHosts, RunEnd
from nornir_portscan.engine.shards.watch import Rules, hung_workers, stalled, to_run_again
from nornir_portscan.inputs.targets import Target

CLOSED = PortState.CLOSED


def outcome(host: str, port: int, name: str | None = None) -> tuple[object, ...]:
    return tuple(ProbeOutcome(host, port, CLOSED, "conn-refused", 0.1, 1, name, None, "w"))


def two_shards() -> tuple[Ledger, ShardLayout]:
    plan = plan_scan("127.0.0.1-8", "1,2")
    layout = ShardLayout.for_plan(plan, 2, 99, min_probes=1)
    assert (layout.host_slices, layout.port_classes) == (2, 1)
    return Ledger(layout, plan.ports, 0.0), layout


def group(place: int, host: str) -> tuple[int, list[tuple[object, ...]], list[PortRun]]:
    return place, [outcome(host, 1), outcome(host, 2)], []


# ---- the ledger ------------------------------------------------------------------------------

def test_a_place_is_taken_once_whichever_run_sends_it() -> None:
    ledger, _ = two_shards()
    ledger.submitted("k1", 0, None, 0.0)
    ledger.started("r1", "k1", "tcp://a:1", "a", 1.0)
    got, _ = ledger.hosts("r1", [group(0, "127.0.0.1"), group(1, "127.0.0.2")], 2.0)
    assert len(got) == 4
    # the worker is lost; the shard runs again leaving out places 0 and 1
    assert ledger.skip_for(0) == bytes([0b11])
    ledger.dropped("k1")
    ledger.submitted("k2", 0, ledger.skip_for(0), 3.0)
    assert not ledger.started("r2", "k2", "tcp://b:1", "b", 3.5)
    got, _ = ledger.hosts("r2", [group(2, "127.0.0.3")], 4.0)
    assert [o[0] for o in got] == ["127.0.0.3", "127.0.0.3"]
    # a late message of the lost run: place 1 again (dropped) and place 3 (new)
    got, _ = ledger.hosts("r1", [group(1, "127.0.0.2"), group(3, "127.0.0.4")], 4.2)
    assert [o[0] for o in got] == ["127.0.0.4", "127.0.0.4"]
    got, _ = ledger.hosts("r2", [group(3, "127.0.0.4")], 4.5)  # a copy: dropped
    assert got == []
    assert ledger.ended(RunEnd(0, "r2", "k2", 3, 2, 2, 4, 8, False), 5.0) == "won"
    assert ledger.shards[0].hosts == 4 and ledger.unfinished == 1


def test_a_run_ends_the_shard_only_when_its_places_add_up() -> None:
    ledger, _ = two_shards()
    ledger.submitted("k1", 0, None, 0.0)
    ledger.started("r1", "k1", "tcp://a:1", "a", 1.0)
    ledger.hosts("r1", [group(0, "127.0.0.1"), group(1, "127.0.0.2")], 2.0)
    # its last message has not come: wait
    assert ledger.ended(RunEnd(0, "r1", "k1", 3, 3, 0, 6, 6, False), 2.5) == "wait"
    ledger.hosts("r1", [group(2, "127.0.0.3")], 3.0)
    with pytest.raises(EngineError, match="shard 0 has 3 hosts in; its run sent 4"):
        ledger.ended(RunEnd(0, "r1", "k1", 3, 4, 0, 8, 6, False), 3.5)


def test_the_first_run_to_end_wins_and_the_others_are_named_for_cancelling() -> None:
    ledger, _ = two_shards()
    ledger.submitted("k1", 1, None, 0.0)
    ledger.submitted("k2", 1, None, 0.0)
    ledger.started("r1", "k1", "tcp://a:1", "a", 1.0)
    ledger.started("r2", "k2", "tcp://b:1", "b", 1.0)
    places = [group(p, f"127.0.0.{p + 5}") for p in range(4)]
    ledger.hosts("r2", places[:2], 2.0)
    ledger.hosts("r1", places, 2.5)  # two of them new
    ledger.hosts("r2", places[2:], 3.0)  # both copies: dropped
    assert ledger.ended(RunEnd(1, "r2", "k2", 3, 4, 0, 8, 5, False), 3.5) == "won"
    assert ledger.others(1) == ["k1"]
    assert ledger.shards[1].hosts == 4 and ledger.unfinished == 1
    assert ledger.ended(RunEnd(1, "r1", "k1", 2, 4, 0, 8, 5, False), 4.0) == "loser"


def test_a_host_with_the_wrong_count_is_an_accounting_error() -> None:
    ledger, _ = two_shards()
    ledger.submitted("k1", 0, None, 0.0)
    ledger.started("r1", "k1", "tcp://a:1", "a", 1.0)
    with pytest.raises(EngineError, match="place 0 came with 1 outcomes for 2 ports"):
        ledger.hosts("r1", [(0, [outcome("127.0.0.1", 1)], [])], 2.0)
    with pytest.raises(EngineError, match="place 9"):
        ledger.hosts("r1", [group(9, "127.0.0.1")], 2.0)


def test_submissions_are_bounded() -> None:
    ledger, _ = two_shards()
    for n in range(MAX_SUBMISSIONS):
        assert ledger.may_submit(0)
        ledger.submitted(f"k{n}", 0, None, 0.0)
    assert not ledger.may_submit(0)


# ---- the watch -------------------------------------------------------------------------------

RULES = Rules(hung_after=10.0, factor=3.0, floor=10.0, stall_after=60.0)


def running(ledger: Ledger, shard: int, key: str, run: str, worker: str, at: float) -> None:
    ledger.submitted(key, shard, None, 0.0)
    ledger.started(run, key, worker, worker, at)


def test_a_silent_run_makes_its_worker_hung_and_its_shard_runs_elsewhere() -> None:
    ledger, _ = two_shards()
    running(ledger, 0, "k0", "r0", "tcp://a:1", 0.0)
    running(ledger, 1, "k1", "r1", "tcp://b:1", 0.0)
    ledger.heard("r1", 15.0)
    assert hung_workers(ledger, 9.0, RULES) == set()
    hung = hung_workers(ledger, 15.0, RULES)
    assert hung == {"tcp://a:1"}
    again = to_run_again(ledger, 15.0, RULES, hung, {})
    assert [(a.shard, a.avoid, a.why) for a in again] == [(0, frozenset({"tcp://a:1"}),
                                                            "hung")]
    # the copy is live and not suspect: no third run
    ledger.submitted("k0b", 0, None, 15.0)
    assert to_run_again(ledger, 16.0, RULES, hung, {}) == []


def test_a_task_queued_on_a_hung_worker_runs_elsewhere() -> None:
    ledger, _ = two_shards()
    ledger.submitted("k0", 0, None, 0.0)
    running(ledger, 1, "k1", "r1", "tcp://b:1", 0.0)
    ledger.heard("r1", 20.0)
    assert to_run_again(ledger, 20.0, RULES, set(), {"k0": "tcp://a:1"}) == []
    again = to_run_again(ledger, 20.0, RULES, {"tcp://a:1"}, {"k0": "tcp://a:1"})
    assert [(a.shard, a.why) for a in again] == [(0, "hung")]


def test_a_straggler_gets_a_copy_at_factor_times_the_median_with_a_floor() -> None:
    ledger, _ = two_shards()
    running(ledger, 0, "k0", "r0", "tcp://a:1", 0.0)
    running(ledger, 1, "k1", "r1", "tcp://b:1", 0.0)
    ledger.hosts("r1", [group(p, f"127.0.0.{p + 1}") for p in range(4)], 2.0)
    assert ledger.ended(RunEnd(1, "r1", "k1", 2, 4, 0, 8, 8, False), 2.0) == "won"
    assert ledger.median_took() == 2.0
    for t in (5.0, 9.9):  # 3 x 2 s is under the floor of 10 s
        ledger.heard("r0", t)
        assert to_run_again(ledger, t, RULES, set(), {}) == []
    ledger.heard("r0", 10.5)
    again = to_run_again(ledger, 10.5, RULES, set(), {})
    assert [(a.shard, a.avoid, a.why) for a in again] == [(0, frozenset({"tcp://a:1"}),
                                                            "straggler")]
    low_floor = Rules(factor=3.0, floor=1.0)  # now 3 x the median (2 s) binds
    assert to_run_again(ledger, 5.9, low_floor, set(), {}) == []
    assert [a.why for a in to_run_again(ledger, 6.1, low_floor, set(), {})] == ["straggler"]


def test_nothing_arriving_for_stall_after_is_a_stall() -> None:
    ledger, _ = two_shards()
    running(ledger, 0, "k0", "r0", "tcp://a:1", 1.0)
    assert not stalled(ledger, 60.0, RULES)
    assert stalled(ledger, 61.5, RULES)
    ledger.heard("r0", 61.0)
    assert not stalled(ledger, 61.5, RULES)


# ---- a run's finished hosts -------------------------------------------------------------------

def test_a_host_goes_home_when_it_has_every_port_and_names_at_the_end() -> None:
    hosts = FinishedHosts(2)
    hosts.taken(4, Target("127.0.0.5", None, 4))
    hosts.taken(7, Target(None, "db.example", 0))
    hosts.add(OutcomeBatch([ProbeOutcome("127.0.0.5", 1, CLOSED, "conn-refused"),
                            ProbeOutcome("10.0.0.1", 1, CLOSED, "x", name="db.example")], []))
    assert hosts.take() == ([], 0)
    hosts.add(OutcomeBatch([ProbeOutcome("127.0.0.5", 2, CLOSED, "conn-refused")],
                           [PortRun("10.0.0.1", "db.example", (2,), CLOSED, "x"),
                            PortRun("10.0.0.2", "db.example", (1, 2), CLOSED, "x")]))
    groups, count = hosts.take()
    assert [(p, [o[:2] for o in outs], runs) for p, outs, runs in groups] == [
        (4, [("127.0.0.5", 1), ("127.0.0.5", 2)], [])]
    assert count == 2
    hosts.close()  # the name's two addresses, as one place
    groups, count = hosts.take()
    assert [p for p, _, _ in groups] == [7] and count == 4


def test_a_host_with_a_port_missing_at_the_end_is_an_accounting_error() -> None:
    hosts = FinishedHosts(2)
    hosts.taken(0, Target("127.0.0.1", None, 4))
    hosts.add(OutcomeBatch([ProbeOutcome("127.0.0.1", 1, CLOSED, "conn-refused")], []))
    with pytest.raises(EngineError, match=r"127\.0\.0\.1 has 1 outcomes for 2 ports"):
        hosts.close()


# ---- a host slice run again -----------------------------------------------------------------

def test_skip_leaves_out_finished_places_and_counts_them() -> None:
    plan = plan_scan("127.0.0.0/28", "1")
    layout = ShardLayout.for_plan(plan, 2, 7)
    full = list(HostSlice(plan.spec, layout, 1, ()).placed())
    skip = bytearray((full[-1][0] + 8) // 8)
    for place, _ in full[::2]:
        skip[place >> 3] |= 1 << (place & 7)
    part = HostSlice(plan.spec, layout, 1, (), bytes(skip))
    assert list(part.placed()) == full[1::2]
    assert part.skipped == len(full[::2])
