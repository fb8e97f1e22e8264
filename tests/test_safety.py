"""The scope and safety guards (issue 6): nothing implicit, nothing outside the allow-list,
nothing huge by accident, never a network/broadcast/multicast/unspecified address from an
expansion, and a polite rate beyond loopback. See docs/safety.md.

Network rule: loopback, or addresses inside a namespace the test builds. 198.18.0.1
appears only in plan-level tests, which send nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from _nornir_support import write_yaml_files
from netns import PYTHON, NetNS, by_key, jsonl

from nornir_portscan import scan
from nornir_portscan.engine.api import DEFAULT_REMOTE_RATE, plan_scan
from nornir_portscan.errors import ScopeError, SpecError
from nornir_portscan.inputs import parse_targets
from nornir_portscan.inputs.scope import DEFAULT_MAX_ADDRESSES

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^(\d+) probes? on (\d+) hosts? in ([\d.]+) s")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args],
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """A refused scan: exit 2, nothing on stdout, one line on stderr, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("nornir-portscan: error: "), done.stderr
    return lines[-1]


def elapsed(done: subprocess.CompletedProcess[str]) -> float:
    """Scan time from the summary line (interpreter start-up excluded)."""
    match = SUMMARY.match(done.stderr.strip().splitlines()[-1])
    assert match, done.stderr
    return float(match.group(3))


# ---- no implicit targets ----------------------------------------------------------------------


@pytest.mark.parametrize("targets", [[], (), "", " ", ",", " , ", [""], ["  "]])
def test_empty_target_list_is_an_error(targets: object) -> None:
    with pytest.raises(SpecError, match=r"no targets given|empty target"):
        plan_scan(targets, 22)  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        scan(targets, 22)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [[], [""], [" "], [","]], ids=["none", "empty", "blank", "comma"])
def test_empty_target_list_on_the_command_line(args: list[str]) -> None:
    done = cli("scan", *args, "-p", "22")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    if args:
        assert re.search(r"no targets given|empty target", done.stderr)


# ---- allow-list -------------------------------------------------------------------------------


def test_allow_list_refuses_a_target_outside_it_naming_it() -> None:
    with pytest.raises(ScopeError, match=r"target '127\.0\.1\.0/30' is outside the allowed "
                                         r"networks \(127\.0\.0\.0/24\)"):
        plan_scan(["127.0.0.1", "127.0.1.0/30"], 22, allowed=["127.0.0.0/24"])
    # partly inside is outside
    with pytest.raises(ScopeError, match=r"'127\.0\.0\.250-127\.0\.1\.5'"):
        plan_scan("127.0.0.250-127.0.1.5", 22, allowed=["127.0.0.0/24"])
    with pytest.raises(ScopeError, match=r"'::1'"):
        plan_scan("::1", 22, allowed=["127.0.0.0/8"])
    with pytest.raises(ScopeError):
        list(scan("127.0.0.2", 22, allowed=["127.0.0.1"]))
    # inside: accepted; several networks; an allow-list entry that is no network is an error
    plan_scan(["127.0.0.1", "127.0.0.0/25", "::1"], 22, allowed=["127.0.0.0/24", "::1"])
    with pytest.raises(SpecError, match=r"'127\.0\.0\.300'"):
        plan_scan("127.0.0.1", 22, allowed=["127.0.0.300"])


NFT_COUNT_TCP = """
table inet nptsafety {
  counter tcp_out {}
  chain out {
    type filter hook output priority 0; policy accept;
    meta l4proto tcp counter name tcp_out
  }
}
"""


def tcp_packets(ns: NetNS) -> int:
    doc = json.loads(ns.check("nft", "-j", "list", "counter", "inet", "nptsafety", "tcp_out"))
    return int(next(i["counter"]["packets"] for i in doc["nftables"] if "counter" in i))


def test_target_outside_allow_is_refused_before_any_packet(
        make_netns: Callable[[], NetNS]) -> None:
    """Counted by nftables in a namespace with only ``lo``: a scan refused by --allow sends
    not one packet, even to the allowed target named before the refused one."""
    ns = make_netns()
    ns.nft(NFT_COUNT_TCP)
    args = ("127.0.0.1", "127.0.1.0/30", "-p", "1-50", "--format", "jsonl")
    line = one_error_line(ns.scan(*args, "--allow", "127.0.0.1/32"))
    assert "'127.0.1.0/30'" in line and "127.0.0.1/32" in line
    assert tcp_packets(ns) == 0
    # the same scan without --allow does send: the counter counts
    done = ns.scan(*args)
    assert done.returncode == 0, done.stderr
    assert len(jsonl(done.stdout)) == 3 * 50
    assert tcp_packets(ns) >= 3 * 50


def test_nornir_config_allowed_networks_refuses_hosts_outside(tmp_path: Path,
                                                             closed_port: Callable[..., int]
                                                             ) -> None:
    """The nornir config's ``user_defined.portscan.allowed_networks`` bounds every host."""
    from nornir import InitNornir

    from nornir_portscan.plugins.tasks import portscan

    port = closed_port()
    d = write_yaml_files(tmp_path, hosts=json.dumps({
        "inside": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [port]}}},
        "outside": {"hostname": "127.0.0.2", "data": {"portscan": {"ports": [port]}}}}))
    nr = InitNornir(inventory={"plugin": "PortscanInventory",
                               "options": {"host_file": str(d / "hosts.yaml")}},
                    user_defined={"portscan": {"allowed_networks": ["127.0.0.1/32"]}},
                    logging={"enabled": False})
    result = nr.run(task=portscan)
    assert not result["inside"][0].failed
    outside = result["outside"][0]
    assert outside.failed
    assert "'127.0.0.2' is outside the allowed networks (127.0.0.1/32)" in str(outside.result)


# ---- excludes ---------------------------------------------------------------------------------


def test_exclude_and_exclude_file_keep_targets_out(tmp_path: Path,
                                                   closed_port: Callable[..., int]) -> None:
    port = closed_port()
    excludes = tmp_path / "keep-out.txt"
    excludes.write_text("# never these\n127.0.0.3   # a comment after\n\n127.0.0.8/30\n",
                        encoding="utf-8")
    done = cli("scan", "127.0.0.1-10", "-p", str(port), "--exclude", "127.0.0.2",
               "--exclude-file", str(excludes), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    assert sorted(r["host"] for r in jsonl(done.stdout)) == [
        f"127.0.0.{i}" for i in (1, 4, 5, 6, 7)]


def test_bad_or_missing_exclude_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("127.0.0.1\n127.0.0.300\n", encoding="utf-8")
    line = one_error_line(cli("scan", "127.0.0.1", "-p", "1", "--exclude-file", str(bad)))
    assert f"{bad}:2:" in line and "'127.0.0.300'" in line
    missing = tmp_path / "missing.txt"
    line = one_error_line(cli("scan", "127.0.0.1", "-p", "1", "--exclude-file", str(missing)))
    assert str(missing) in line


# ---- size guard -------------------------------------------------------------------------------


def test_size_guard_default_and_raised_limit_in_the_api() -> None:
    assert DEFAULT_MAX_ADDRESSES == 65536
    plan_scan("127.0.0.0/16", 22)  # 65534 addresses: within the default
    with pytest.raises(ScopeError, match=r"cover 131070 addresses, over the limit of 65536.*"
                                         r"--max-hosts 131070"):
        plan_scan("127.0.0.0/15", 22)
    assert plan_scan("127.0.0.0/15", 22, max_addresses=131070).spec.count() == 131070
    with pytest.raises(ScopeError, match="over the limit of 10"):
        plan_scan("127.0.0.0/28", 22, max_addresses=10)


def test_max_hosts_refuses_a_slash15_naming_its_size(make_netns: Callable[[], NetNS]) -> None:
    """Run inside a namespace: were the guard missing, the scan would stay on its loopback."""
    ns = make_netns()
    for extra in ([], ["--max-hosts", "10"]):
        try:
            done = ns.scan("127.0.0.0/15", "-p", "1", *extra, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("a /15 was scanned instead of refused")
        line = one_error_line(done)
        limit = extra[1] if extra else "65536"
        assert f"the targets cover 131070 addresses, over the limit of {limit}" in line
        assert "--max-hosts 131070" in line  # how to go ahead, if that was meant


def test_max_hosts_raised_lets_a_slash24_through(make_netns: Callable[[], NetNS]) -> None:
    ns = make_netns()
    line = one_error_line(ns.scan("127.0.1.0/24", "-p", "1", "--max-hosts", "100"))
    assert "254 addresses, over the limit of 100" in line
    done = ns.scan("127.0.1.0/24", "-p", "1", "--max-hosts", "300", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = by_key(jsonl(done.stdout))
    assert set(rows) == {(f"127.0.1.{i}", 1) for i in range(1, 255)}
    assert {r["state"] for r in rows.values()} == {"closed"}


# ---- addresses that are never a host ----------------------------------------------------------


def never_a_host(text: str) -> bool:
    ip = ipaddress.ip_address(text)
    return ip.is_multicast or ip.is_unspecified or text == "255.255.255.255"


@pytest.mark.parametrize("spec", [
    "10.0.0.0/24", "0.0.0.0/29", "0.0.0.0/31", "127.255.255.248/29", "192.0.2.0/30",
    "224.0.0.0/28", "239.255.255.248/29", "255.255.255.248/29", "::/125", "::/127",
    "ff02::/125", "2001:db8::/126",
    "0.0.0.0-0.0.0.3", "255.255.255.252-255.255.255.255", "223.255.255.254-224.0.0.1",
    "::-::2", "ff01::1-ff01::3", "0.0.0.0-2", "255.255.255.*", "224.0.0.1-3",
])
def test_expansions_skip_network_broadcast_multicast_unspecified(spec: str) -> None:
    got = [t.address for t in parse_targets(spec)]
    assert all(a is not None for a in got)
    bad = [a for a in got if a is not None and never_a_host(a)]
    assert not bad, f"{spec} expands to {bad}"
    if "/" in spec:
        net = ipaddress.ip_network(spec)
        hosts = list(net)
        if net.prefixlen < net.max_prefixlen - 1:  # /31, /32, /127, /128 have no edges
            hosts = hosts[1:-1] if net.version == 4 else hosts[1:]
        assert got == [str(a) for a in hosts if not never_a_host(str(a))]


@pytest.mark.parametrize("address", ["0.0.0.0", "127.255.255.255", "10.0.0.0", "10.0.0.255",
                                     "224.0.0.1", "255.255.255.255", "::", "ff02::1"])
def test_an_address_named_singly_is_kept(address: str) -> None:
    assert [t.address for t in parse_targets(address)] == [address]
    assert [t.address for t in parse_targets([address, address])] == [address]


def test_a_scanned_network_gives_no_outcome_for_its_edges(closed_port: Callable[..., int]) -> None:
    port = closed_port()
    hosts = {o.host for o in scan("127.0.0.0/29", [port])}
    assert hosts == {f"127.0.0.{i}" for i in range(1, 7)}


# ---- rate -------------------------------------------------------------------------------------


def test_default_rate_cap_beyond_loopback_only() -> None:
    """Plan level only: nothing is sent to 198.18.0.1 (a benchmarking range)."""
    assert DEFAULT_REMOTE_RATE == 10000
    assert plan_scan("198.18.0.1", 22).rate == 10000
    assert plan_scan(["127.0.0.1", "198.18.0.1"], 22).rate == 10000  # one remote target is enough
    assert plan_scan("198.18.0.0/30", 22).rate == 10000
    assert plan_scan("remote.example", 22).rate == 10000  # a name may resolve anywhere
    for loopback in ("127.0.0.1", "127.0.0.0/16", "::1", "localhost", "127.1.2.3-127.1.2.9"):
        assert plan_scan(loopback, 22).rate is None, loopback
    # the knobs: --rate N sets the cap anywhere, --rate 0 lifts it
    assert plan_scan("198.18.0.1", 22, rate=50000).rate == 50000
    assert plan_scan("198.18.0.1", 22, rate=0).rate is None
    assert plan_scan("127.0.0.1", 22, rate=200).rate == 200
    with pytest.raises(ValueError, match="rate"):
        plan_scan("127.0.0.1", 22, rate=-1)


def test_rate_cap_paces_a_real_scan(closed_port: Callable[..., int]) -> None:
    """200 probes at --rate 200 take about a second; without a cap, loopback takes ms."""
    first = closed_port()
    ports = f"{first}-{first + 199}" if first + 199 < 65536 else f"{first - 199}-{first}"
    capped = cli("scan", "127.0.0.1", "-p", ports, "--rate", "200", "--format", "jsonl")
    assert capped.returncode == 0, capped.stderr
    assert len(jsonl(capped.stdout)) == 200
    assert elapsed(capped) >= 0.8
    free = cli("scan", "127.0.0.1", "-p", ports, "--format", "jsonl")
    assert free.returncode == 0, free.stderr
    # the cap is what took the time: the same scan without it takes a fraction
    assert elapsed(free) < elapsed(capped) / 2, (elapsed(free), elapsed(capped))


def namespace_with_remote_address(make_netns: Callable[[], NetNS]) -> NetNS:
    """A namespace where 10.77.0.1 (not loopback, so not exempt from the cap) is local."""
    ns = make_netns()
    ns.check("ip", "addr", "add", "10.77.0.1/32", "dev", "lo")
    return ns


def test_default_rate_cap_paces_a_scan_beyond_loopback(make_netns: Callable[[], NetNS]) -> None:
    """30000 probes under the default 10000/s take at least 3 s (less a small burst);
    --rate 0 lifts the cap. The address is local to a namespace: nothing leaves it."""
    ns = namespace_with_remote_address(make_netns)
    capped = ns.scan("10.77.0.1", "-p", "1-30000", "--format", "jsonl")
    assert capped.returncode == 0, capped.stderr
    assert len(jsonl(capped.stdout)) == 30000
    assert elapsed(capped) >= 2.9
    free = ns.scan("10.77.0.1", "-p", "1-30000", "--rate", "0", "--format", "jsonl")
    assert free.returncode == 0, free.stderr
    # about a third of it on a quiet machine: the cap is what took the time
    assert elapsed(free) < 0.75 * elapsed(capped), (elapsed(free), elapsed(capped))


NORNIR_REMOTE = textwrap.dedent("""
    import json, sys, time
    from nornir import InitNornir
    from nornir_portscan.plugins.tasks import portscan
    nr = InitNornir(inventory={"plugin": "PortscanInventory",
                               "options": {"host_file": sys.argv[1]}},
                    logging={"enabled": False})
    started = time.monotonic()
    result = nr.run(task=portscan)
    r = result["far"][0]
    print(json.dumps({"failed": r.failed, "summary": r.result["summary"],
                      "elapsed": time.monotonic() - started}))
""")


def test_nornir_runs_keep_the_default_rate_cap(make_netns: Callable[[], NetNS],
                                               tmp_path: Path) -> None:
    """The shared engine of a nornir run keeps the cap of a plan beyond loopback."""
    ns = namespace_with_remote_address(make_netns)
    hosts = write_yaml_files(tmp_path, hosts=json.dumps(
        {"far": {"hostname": "10.77.0.1", "data": {"portscan": {"ports": "1-5000"}}}}))
    done = ns.run(PYTHON, "-c", NORNIR_REMOTE, str(hosts / "hosts.yaml"), timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert not doc["failed"] and doc["summary"]["closed"] == 5000
    assert doc["elapsed"] >= 0.45


def test_safety_page_lists_every_guard() -> None:
    text = (REPO / "docs" / "safety.md").read_text(encoding="utf-8")
    for needle in ("--allow", "allowed_networks", "--exclude", "--exclude-file", "--max-hosts",
                   "65536", "10000", "--rate 0", "--rate N", "broadcast", "multicast",
                   "unspecified", "EMFILE", "EADDRNOTAVAIL", "max_addresses", "allowed="):
        assert needle in text, needle
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+- [^\n]*: safety\.md$", nav, re.M)
