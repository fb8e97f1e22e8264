"""wait_for_ports in real nornir runs against loopback listeners that appear late or never."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest
from _nornir_support import (
    closed_port,
    init_nornir,
    listening,
    listening_later,
    stalled_port,
    write_yaml_files,
)
from nornir.core import Nornir

from nornir_portscan.plugins.tasks import wait_for_ports
from nornir_portscan.plugins.tasks.portscan import ScanResult


@pytest.fixture
def nr(tmp_path: Path) -> Nornir:
    hosts = {"r1": {"hostname": "127.0.0.1"},
             "r2": {"hostname": "127.0.0.2", "data": {"portscan": {"targets": ["127.0.0.1"],
                                                                    "ports": [1]}}}}
    return init_nornir(write_yaml_files(tmp_path, hosts=json.dumps(hosts)))


def run_on(nr: Nornir, host: str, **kwargs: Any) -> tuple[ScanResult, float]:
    started = time.monotonic()
    result = nr.filter(name=host).run(task=wait_for_ports, **kwargs)
    r = cast(ScanResult, result[host][0])  # what the task returns (nornir types it Result)
    return r, time.monotonic() - started


def test_waits_until_a_late_listener_answers(nr: Nornir) -> None:
    with listening_later(0.5) as port:
        r, elapsed = run_on(nr, "r1", ports=[port], deadline=30, interval=0.1)
    assert not r.failed, r.result
    # it returned when the port opened, not at the deadline
    assert 0.4 <= elapsed and r.result["waited_s"] < 30
    assert r.result["open"] == {"127.0.0.1": [port]}
    assert r.result["rounds"] >= 2 and r.result["waited_s"] >= 0.4
    assert "never_open" not in r.result
    assert r.open_ports == {"127.0.0.1": [port]}


def test_only_ports_still_closed_are_probed_again(nr: Nornir) -> None:
    with listening() as early, listening_later(0.4) as late:
        r, _ = run_on(nr, "r1", ports=[early, late], deadline=10, interval=0.1)
    assert not r.failed
    assert r.result["open"] == {"127.0.0.1": sorted([early, late])}


def test_fails_at_the_deadline_naming_what_never_opened(nr: Nornir) -> None:
    port = closed_port()
    with listening() as up:
        r, elapsed = run_on(nr, "r1", ports=[up, port], deadline=0.6, interval=0.2)
    assert r.failed
    assert 0.55 <= elapsed
    assert r.result["never_open"] == {"127.0.0.1": [port]}
    assert r.result["open"] == {"127.0.0.1": [up]}
    assert r.result["violations"] == [
        f"127.0.0.1:{port} never opened within 0.6 s, last closed (conn-refused)"]
    # at 0, 0.2, 0.4 and the deadline; none after it (rounds start an interval apart or
    # later, so a loaded machine runs fewer, never more)
    assert 3 <= r.result["rounds"] <= 4


def test_a_silent_port_is_bounded_by_the_deadline(nr: Nornir) -> None:
    with stalled_port() as dark:
        if dark is None:
            pytest.skip("this kernel answers SYNs to a full accept queue")
        # a try may take 30 s, the deadline is 1 s: the deadline cuts the try short
        r, elapsed = run_on(nr, "r1", ports=[dark], deadline=1.0, interval=0.2, timeout=30)
    assert r.failed and elapsed < 30
    assert r.result["never_open"] == {"127.0.0.1": [dark]}
    assert "last filtered (no-response)" in r.result["violations"][0]


def test_targets_come_from_inventory_but_ports_do_not(nr: Nornir) -> None:
    # r2's inventory scans 127.0.0.1 on port 1; waiting is for the argument's port only
    with listening() as port:
        r, _ = run_on(nr, "r2", ports=port, deadline=5, interval=0.1)
    assert not r.failed
    assert r.result["open"] == {"127.0.0.1": [port]}


def test_all_hosts_of_a_run_wait_together(nr: Nornir) -> None:
    with listening_later(0.5) as port:
        result = nr.run(task=wait_for_ports, ports=[port], targets="127.0.0.1", deadline=30,
                        interval=0.1)
    assert not result.failed
    for name, multi in result.items():
        # both were waiting before the port opened (one after the other, the second
        # would have found it open at once), and both returned when it opened
        assert multi[0].result["rounds"] >= 2, (name, multi[0].result)
        assert multi[0].result["waited_s"] < 30, (name, multi[0].result)


def test_the_rounds_keep_to_the_runs_allow_list(tmp_path: Path) -> None:
    """A name that resolves outside the nornir config's allowed_networks is never probed,
    in any round (the rounds were once planned without the run's scope guards, and waited
    on the listener here)."""
    nr = init_nornir(write_yaml_files(tmp_path, hosts=json.dumps(
        {"r1": {"hostname": "localhost"}})),
        user_defined={"portscan": {"allowed_networks": ["127.0.0.2/32"]}})
    with listening() as port:
        r, _ = run_on(nr, "r1", ports=[port], deadline=0.3, interval=0.1)
    assert r.failed
    assert r.result["never_open"] == {"127.0.0.1": [port]}
    assert r.result["violations"] == [
        f"127.0.0.1:{port} never opened within 0.3 s, last error (out-of-scope)"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ports": "22-"}, "host 'r1': argument ports='22-': port range '22-'"),
    ({"ports": [22], "deadline": -1}, "host 'r1': argument deadline=-1: must be a number"),
    ({"ports": [22], "interval": "2s"}, "host 'r1': argument interval='2s'"),
    ({"ports": [22], "targets": ["127.0.0.300"]}, "host 'r1': argument targets="),
])
def test_invalid_arguments_fail_with_a_message(nr: Nornir, kwargs: dict[str, object],
                                               message: str) -> None:
    r, _ = run_on(nr, "r1", **kwargs)
    assert r.failed
    assert isinstance(r.result, str) and r.result.startswith(message), r.result
