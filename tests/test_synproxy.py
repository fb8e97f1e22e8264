"""Hosts that answer every SYN (issue 25), in a namespace lab behind a delayed, jittery link.

Three hosts in the hosts' namespace of a WAN (tests/wan.py):

- ``PROXY``: netfilter's ``synproxy`` in front of three listeners. The proxy completes every
  handshake itself and resets the connection of a port with nothing behind it: the truth
  is 3 open ports and the rest closed, ``reset-after-syn-ack``; the host is ``syn-proxy``.
- ``ALLOPEN``: every port DNATed to one listener: every port really accepts, ``all-open``.
- ``PLAIN``: an ordinary host, two listeners (one greets and closes with a FIN).

``scan``, ``run`` and the ``portscan`` task must each report exactly that, under two
different delays and jitters: how long a connection is held to see a reset comes from the
engine's RTT estimate, so no one RTT may be baked in.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import PYTHON, NetNSUnavailable, jsonl
from wan import Wan, build_wan

from nornir_portscan.plugins.common.ports import each_port

PREFIX = "198.18.25.0/29"
PROXY, ALLOPEN, PLAIN = "198.18.25.1", "198.18.25.2", "198.18.25.3"
PORTS = range(1, 301)
PORT_SPEC = "1-300"
GREETING = "SSH-2.0-lab25"
PROXY_OPEN = {22: GREETING, 80: None, 250: None}  # 22 greets, then closes with a FIN
DNAT_TO = 280
PLAIN_OPEN = {22: GREETING, 123: None}

RULES = f"""
table ip deceive {{
  chain raw {{
    type filter hook prerouting priority raw;
    ip daddr {PROXY} tcp flags syn notrack
  }}
  chain proxy {{
    type filter hook input priority -10;
    ip daddr {PROXY} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    ip daddr {PROXY} ct state invalid drop
  }}
  chain nat {{
    type nat hook prerouting priority dstnat;
    ip daddr {ALLOPEN} tcp dport {PORT_SPEC} dnat to {ALLOPEN}:{DNAT_TO}
  }}
}}
"""

#: The truth: (state, reason) of every port of every host, and each host's anomaly.
ANOMALY = {PROXY: "syn-proxy", ALLOPEN: "all-open", PLAIN: None}


def truth(host: str, port: int) -> tuple[str, str]:
    if host == ALLOPEN or port in (PROXY_OPEN if host == PROXY else PLAIN_OPEN):
        return "open", "syn-ack"
    return ("closed", "reset-after-syn-ack") if host == PROXY else ("closed", "conn-refused")


@pytest.fixture(scope="module", params=[(5.0, 1.0), (25.0, 10.0)],
                ids=["5ms+-1", "25ms+-10"])
def wan(request: pytest.FixtureRequest) -> Iterator[Wan]:
    delay, jitter = request.param
    try:
        lab = build_wan(PREFIX, delay, jitter)
    except NetNSUnavailable as exc:
        pytest.skip(str(exc))
    try:
        srv = lab.server
        for key, value in (("net.ipv4.tcp_syncookies", "2"), ("net.ipv4.tcp_timestamps", "1"),
                           ("net.netfilter.nf_conntrack_tcp_loose", "0")):
            srv.sysctl(key, value)
        try:
            srv.nft(RULES)
        except NetNSUnavailable as exc:
            pytest.skip(f"this kernel has no netfilter synproxy or NAT: {exc}")
        srv.listen([(PROXY, p, b and b + "\r\n") for p, b in PROXY_OPEN.items()]
                   + [(ALLOPEN, DNAT_TO, None)]
                   + [(PLAIN, p, b and b + "\r\n") for p, b in PLAIN_OPEN.items()])
        yield lab
    finally:
        lab.destroy()


def check_rows(rows: list[dict[str, Any]]) -> None:
    """Every (host, port) once, in its true state and reason, with its host's anomaly."""
    got = {(r["host"], int(r["port"])): r for r in rows}  # csv's ports are text
    assert len(got) == len(rows) == 3 * len(PORTS)
    wrong = [(k, (r["state"], r["reason"]), truth(*k)) for k, r in got.items()
             if (r["state"], r["reason"]) != truth(*k)]
    assert not wrong, f"{len(wrong)} ports wrong, e.g. {wrong[:5]}"
    anomalies = {(r["host"], r.get("anomaly") or None) for r in rows}
    assert anomalies == set(ANOMALY.items())


def test_scan_sees_through_the_proxy_and_flags_both_hosts(wan: Wan) -> None:
    done = wan.client.scan(PROXY, ALLOPEN, PLAIN, "-p", PORT_SPEC, "--format", "jsonl",
                           timeout=120)
    assert done.returncode == 0, done.stderr
    check_rows(jsonl(done.stdout))


def test_scan_csv_and_json_carry_the_anomaly(wan: Wan) -> None:
    done = wan.client.scan(PROXY, ALLOPEN, PLAIN, "-p", PORT_SPEC, "--format", "csv",
                           timeout=120)
    assert done.returncode == 0, done.stderr
    check_rows(list(csv.DictReader(io.StringIO(done.stdout))))
    done = wan.client.scan(PROXY, ALLOPEN, PLAIN, "-p", PORT_SPEC, "--format", "json",
                           timeout=120)
    hosts = json.loads(done.stdout)["hosts"]
    assert {h: e.get("anomaly") for h, e in hosts.items()} == ANOMALY
    assert hosts[PROXY]["open"] == sorted(PROXY_OPEN)


def test_the_table_names_the_proxy_with_its_real_ports_and_folds_the_all_open_host(
        wan: Wan) -> None:
    done = wan.client.scan(PROXY, ALLOPEN, PLAIN, "-p", PORT_SPEC, "--banners", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"{ALLOPEN}  all-open: every one of 300 probed ports accepts" in lines
    assert not any(line.split()[:1] == ["281"] for line in lines)  # no row per port
    at = lines.index(next(line for line in lines if line.startswith(PROXY)))
    block = lines[at:at + 8]
    assert block[0] == f"{PROXY}  up: 3 open, 297 closed"
    assert [line.split()[0] for line in block[2:5]] == ["22", "80", "250"]
    assert GREETING in block[2]  # the greeting that came before the FIN
    assert block[5].strip().startswith("syn-proxy: 297 of 300 probed ports reset right after")
    assert f"{PLAIN}  up: 2 open, 298 closed" in lines


def write_lab_inventory(directory: Path) -> Path:
    hosts = textwrap.dedent(f"""\
        proxy:
          hostname: {PROXY}
          data: {{portscan: {{ports: "{PORT_SPEC}", expect: {{open: [22, 80]}}}}}}
        dnat:
          hostname: {ALLOPEN}
          data: {{portscan: {{ports: "{PORT_SPEC}", expect: {{not_open: [23]}}}}}}
        plain:
          hostname: {PLAIN}
          data: {{portscan: {{ports: "{PORT_SPEC}", expect: {{open: [22], not_open: [23]}}}}}}
        """)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yaml").write_text(hosts, encoding="utf-8")
    (directory / "config.yaml").write_text(
        "inventory:\n  plugin: PortscanInventory\n  options:\n"
        f"    host_file: {directory / 'hosts.yaml'}\n"
        "runner:\n  plugin: threaded\n  options:\n    num_workers: 3\n", encoding="utf-8")
    return directory


def check_targets(results: dict[str, Any]) -> None:
    """A run's or the task's per-host Results: truth, anomaly, and the violation's words."""
    for name, address in (("proxy", PROXY), ("dnat", ALLOPEN), ("plain", PLAIN)):
        target = results[name]["targets"][address]
        assert target.get("anomaly") == ANOMALY[address], name
        got = {p: (v["state"], v["reason"]) for p, v in each_port(target)}  # folded too
        assert got == {p: truth(address, p) for p in PORTS}, name
    assert results["proxy"]["violations"] == [] and results["plain"]["violations"] == []
    [violation] = results["dnat"]["violations"]
    assert violation.startswith(f"{ALLOPEN}:23 expected not open, got open (syn-ack); host is "
                                "all-open: every one of 300 probed ports accepts"), violation


def test_run_reports_the_truth_and_the_anomaly(wan: Wan, tmp_path: Path) -> None:
    inventory = write_lab_inventory(tmp_path / "inv")
    out = tmp_path / "run.json"
    done = wan.client.run(PYTHON, "-m", "nornir_portscan", "run", "-c",
                          str(inventory / "config.yaml"), "--format", "json", "-o", str(out),
                          timeout=120)
    assert done.returncode == 1, done.stderr  # the all-open host violates not_open: [23]
    doc = json.loads(out.read_text(encoding="utf-8"))
    check_targets({name: entry["result"] for name, entry in doc["hosts"].items()})
    done = wan.client.run(PYTHON, "-m", "nornir_portscan", "run", "-c",
                          str(inventory / "config.yaml"), "--format", "jsonl", timeout=120)
    rows = jsonl(done.stdout)
    assert {(r["nornir_host"], r.get("anomaly")) for r in rows} == {
        ("proxy", "syn-proxy"), ("dnat", "all-open"), ("plain", None)}
    check_rows(rows)


TASK_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from _nornir_support import init_nornir
    from nornir_portscan.plugins.tasks import portscan

    nr = init_nornir(Path(sys.argv[1]), workers=3)
    result = nr.run(task=portscan)
    print(json.dumps({name: r[0].result for name, r in result.items()}))
""")


def test_the_task_reports_the_truth_and_the_anomaly(wan: Wan, tmp_path: Path) -> None:
    inventory = write_lab_inventory(tmp_path / "inv")
    script = tmp_path / "task.py"
    script.write_text(TASK_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = wan.client.run(sys.executable, str(script), str(inventory),
                          str(Path(__file__).parent), timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    check_targets(json.loads(done.stdout))
