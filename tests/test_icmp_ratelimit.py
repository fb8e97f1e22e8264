"""A real kernel's ICMP rate limit, between two namespaces this test builds.

The scanner's namespace has only ``lo`` and one end of a veth pair; the other
namespace holds the hosts of 198.18.0.0/24 (the range set aside for network
benchmarks) on its own loopback, rejects some with host-unreachable, drops others,
and rate-limits its ICMP errors as Linux does by default (a burst of six, then one
a second). On loopback the kernel never rate-limits ICMP, which is why the two
namespaces: every packet still stays inside namespaces the test made.
"""

from __future__ import annotations

import errno
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import PYTHON, NetNS, jsonl

from nornir_portscan.engine.core.outcome import PortState, classify
from nornir_portscan.engine.core.recheck import RATE_LIMITED
from nornir_portscan.engine.core.verdicts import DOWN_REASON, NO_RESPONSE

pytestmark = pytest.mark.netns

UP = "198.18.0.1"
UNREACHABLE = [f"198.18.0.{i}" for i in range(10, 30)]
DEAD = [f"198.18.0.{i}" for i in range(40, 60)]
PORTS = "1000-1011"  # 12 ports: four of them discovery ports


@pytest.fixture(scope="module")
def limited() -> Iterator[NetNS]:
    made: list[NetNS] = []
    try:
        try:
            scanner, server = NetNS("icmp"), NetNS("icmpsrv")
        except Exception as exc:  # NetNSUnavailable, or no veth support
            pytest.skip(f"namespaces unavailable: {exc}")
        made += [scanner, server]
        a, b = f"v{scanner.name[-6:]}a", f"v{scanner.name[-6:]}b"
        scanner.check("ip", "link", "add", a, "type", "veth", "peer", "name", b,
                      "netns", server.name)
        scanner.check("ip", "addr", "add", "198.19.255.1/30", "dev", a)
        scanner.check("ip", "link", "set", a, "up")
        scanner.check("ip", "route", "add", "198.18.0.0/24", "via", "198.19.255.2")
        server.check("ip", "addr", "add", "198.19.255.2/30", "dev", b)
        server.check("ip", "link", "set", b, "up")
        server.check("ip", "route", "add", "local", "198.18.0.0/24", "dev", "lo")
        server.sysctl("net.ipv4.icmp_ratelimit", "1000")
        server.nft(f"""
table inet ratelimit {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {{ {", ".join(DEAD)} }} drop
    ip daddr {{ {", ".join(UNREACHABLE)} }} meta l4proto tcp reject with icmp type host-unreachable
  }}
}}
""")
        yield scanner
    finally:
        for ns in made:
            ns.destroy()


def _scan(ns: NetNS, *extra: str) -> dict[str, set[tuple[str, str]]]:
    targets = [UP, *UNREACHABLE, *DEAD]
    done = ns.scan(*targets, "-p", PORTS, "--format", "jsonl", *extra, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    assert len(rows) == len(targets) * 12
    assert len({(r["host"], r["port"]) for r in rows}) == len(rows)
    verdicts: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        verdicts.setdefault(r["host"], set()).add((r["state"], r["reason"]))
    return verdicts


def _wait_for_the_limiter() -> None:
    time.sleep(6.5)  # the limiter's burst of six refills at one error a second


def test_without_rechecks_the_limiter_hides_unreachable_hosts(limited: NetNS) -> None:
    _wait_for_the_limiter()
    verdicts = _scan(limited, "--recheck", "0")
    hidden = [h for h in UNREACHABLE if ("filtered", "host-down") in verdicts[h]]
    # the point of the fixture: the kernel really rate-limits, so some rejects never come
    assert hidden, json.dumps({h: sorted(v) for h, v in verdicts.items()})
    assert verdicts[UP] == {("closed", "conn-refused")}


def test_rechecks_recover_hidden_hosts_and_never_call_them_down(limited: NetNS) -> None:
    _wait_for_the_limiter()
    started = time.monotonic()
    verdicts = _scan(limited, "--recheck", "4")
    took = time.monotonic() - started
    found = [h for h in UNREACHABLE if verdicts[h] == {("unreachable", "host-unreach")}]
    for h in UNREACHABLE:
        assert verdicts[h] in ({("unreachable", "host-unreach")},
                               {("filtered", "rate-limited?")}), (h, verdicts[h])
    for h in DEAD:
        assert verdicts[h] <= {("filtered", "host-down"), ("filtered", "no-response"),
                               ("filtered", "rate-limited?")}, (h, verdicts[h])
    # the burst names six at most; the paced re-probes name more
    assert len(found) > 6, found
    assert verdicts[UP] == {("closed", "conn-refused")}
    assert took < 30


# ---- recheck from every source: 0 leaves the hosts the limiter hid down -------------------
#
# With re-probes, a host of UNREACHABLE is never called down (the test above); with
# recheck 0, the limiter's suppressed rejects leave some of them host-down. So a setting
# of 0 that did not reach the scheduler, from whichever source, fails these tests. Each
# waits for the limiter: a scan through an empty one sees no reject at all, and then
# takes every silent host for down whatever the recheck (measured: 20 of 20, in 0.3 s,
# with --recheck 60), which would make these tests pass without the setting.

TARGETS = [UP, *UNREACHABLE, *DEAD]
DOWN_SAID_PORT = 1011  # not a discovery port (1000-1003): a down host's is host-down


Row = tuple[str, int, str, str]  # address, port, state, reason


def _hidden(rows: list[Row]) -> list[str]:
    """The unreachable hosts the limiter hid: called down, each port once."""
    assert len(rows) == len(TARGETS) * 12 == len({(h, p) for h, p, *_ in rows}), rows
    return sorted({h for h, _, state, reason in rows
                   if h in UNREACHABLE and (state, reason) == ("filtered", "host-down")})


def _inventory(directory: Path, expect: dict[str, list[int]] | None = None,
               **portscan: Any) -> Path:
    data = {"targets": TARGETS, "ports": PORTS, **portscan}
    if expect:
        data["expect"] = expect
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yaml").write_text(json.dumps({"lab": {"hostname": UP, "data": {
        "portscan": data}}}), encoding="utf-8")
    return directory


def _run_rows(ns: NetNS, inventory: Path, *extra: str) -> list[Row]:
    _wait_for_the_limiter()
    done = ns.run(PYTHON, "-m", "nornir_portscan", "run", "-i", str(inventory), "--format",
                  "json", *extra, timeout=90)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["options"].get("recheck") == (0.0 if "--recheck" in extra else None)
    targets = doc["hosts"]["lab"]["result"]["targets"]
    return [(address, int(port), p["state"], p["reason"]) for address, entry in targets.items()
            for port, p in entry["ports"].items()]


def test_recheck_0_in_inventory_data_reaches_the_scan(limited: NetNS, tmp_path: Path) -> None:
    hidden = _hidden(_run_rows(limited, _inventory(tmp_path / "inv", recheck=0)))
    assert hidden


def test_runs_recheck_flag_overrides_inventory_data(limited: NetNS, tmp_path: Path) -> None:
    rows = _run_rows(limited, _inventory(tmp_path / "inv", recheck=60), "--recheck", "0")
    assert _hidden(rows)


def test_monitors_recheck_flag_reaches_the_scan(limited: NetNS, tmp_path: Path) -> None:
    inv = _inventory(tmp_path / "inv", recheck=60, expect={"not_open": [DOWN_SAID_PORT]})
    _wait_for_the_limiter()
    done = limited.run(PYTHON, "-m", "nornir_portscan", "monitor", "-i", str(inv), "--once",
                       "--recheck", "0", timeout=90)
    assert done.returncode == 0, done.stderr
    states = dict(re.findall(r'^portscan_port_state\{address="([\d.]+)",host="lab",'
                             r'port="1011",reason="([^"]+)",state="filtered"\} 1', done.stdout,
                             flags=re.M))
    assert {a for a, reason in states.items() if a in UNREACHABLE and reason == "host-down"}


NORNIR_CODE = """
import asyncio, json, sys
from nornir import InitNornir
from nornir.core.processor import Processors
from nornir.core.task import Task
from nornir_portscan import scan
from nornir_portscan.plugins.tasks import aportscan, portscan

way, inventory = sys.argv[1], sys.argv[2]
if way == "scan":
    outcomes = scan(json.loads(sys.argv[3]), sys.argv[4], recheck=0)
    rows = [(o.host, o.port, o.state.value, o.reason) for o in outcomes]
else:
    nr = InitNornir(inventory={"plugin": "PortscanInventory",
                               "options": {"host_file": inventory + "/hosts.yaml"}},
                    logging={"enabled": False})
    if way == "portscan":
        result = nr.run(task=portscan, recheck=0)["lab"][0]
    else:
        task = Task(aportscan, nr, global_dry_run=False, processors=Processors())
        task.host = nr.inventory.hosts["lab"]
        result = asyncio.run(aportscan(task, recheck=0))
    assert not result.failed, result.result
    rows = [(a, int(p), v["state"], v["reason"])
            for a, entry in result.result["targets"].items()
            for p, v in entry["ports"].items()]
print(json.dumps(rows))
"""


@pytest.mark.parametrize("way", ["portscan", "aportscan", "scan"])
def test_recheck_0_as_an_argument_reaches_the_scan(limited: NetNS, tmp_path: Path,
                                                    way: str) -> None:
    """The tasks' argument (over inventory data that asks for re-probes) and the Python
    API's keyword."""
    inv = _inventory(tmp_path / "inv", recheck=60)
    _wait_for_the_limiter()
    done = limited.python(NORNIR_CODE, way, str(inv), json.dumps(TARGETS), PORTS, timeout=90)
    assert done.returncode == 0, done.stderr
    assert _hidden([(a, p, state, reason) for a, p, state, reason in json.loads(done.stdout)])


def documented_reasons() -> dict[tuple[str, str], str]:
    """The reference table of states and reasons (docs/cli.md, "States and reasons"):
    (state, reason) -> what it says happened."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(
        encoding="utf-8")
    section = text.split("### States and reasons", 1)[1].split("\n#", 1)[0]
    table: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue  # not a row of the table (its header, its rule, the prose)
        state = cells[0].strip("`")
        for reason in re.findall(r"`([^`]+)`", cells[1]):
            table[(state, reason)] = cells[2]
    return table


def test_the_reason_is_documented() -> None:
    """``rate-limited?`` is a row of the reference table, as a reason of ``filtered``, saying
    what it means and where the engine explains it: a mention elsewhere is not enough. So
    is every other (state, reason) the engine gives."""
    table = documented_reasons()
    meaning = table.get(("filtered", RATE_LIMITED), "")
    assert "--recheck" in meaning and "(engine.md#icmp-rate-limits)" in meaning, meaning
    engine_md = (Path(__file__).resolve().parent.parent / "docs" / "engine.md").read_text(
        encoding="utf-8")
    assert "\n## ICMP rate limits\n" in engine_md and f"**`{RATE_LIMITED}`**" in engine_md
    given = {answer for err in (0, errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT,
                                errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPROTO)
             if (answer := classify(err)) is not None}
    given |= {(PortState.FILTERED, NO_RESPONSE), (PortState.FILTERED, DOWN_REASON),
              (PortState.FILTERED, RATE_LIMITED), (PortState.CLOSED, "self-connect"),
              (PortState.ERROR, "unresolved"), (PortState.ERROR, "out-of-scope")}
    missing = {(str(state), reason) for state, reason in given} - set(table)
    assert not missing, f"given by the engine, not in docs/cli.md's table: {sorted(missing)}"
