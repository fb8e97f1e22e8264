"""A scan replayed by its seed: the same plan and seed probe in the same order, in any process.

The probe order is read off the wire: a packet socket on ``lo`` records the SYNs the scan
sends to one loopback address of its own (chosen per test, so no other scan on the machine
shows up), in the order the kernel saw them leave. The shard layout is read off the
outcomes: on loopback every answer comes straight from ``connect()``, so each shard's hosts
appear in the order the shard takes them.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nornir_portscan.engine import plan_scan
from nornir_portscan.engine.core.seed import layout_key
from nornir_portscan.engine.core.split import ShardLayout

REPO = Path(__file__).resolve().parents[1]
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26


def _syn_filter(address: str, prefix: int) -> bytes:
    """Classic BPF for ``lo``: IPv4 TCP into ``address``/``prefix`` with SYN set and ACK
    clear. The kernel drops the rest, so the machine's other loopback traffic cannot crowd
    it out."""
    ip = struct.unpack("!I", socket.inet_aton(address))[0]
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    code = [
        (0x28, 0, 0, 12),         # ldh [12]: the ethertype
        (0x15, 0, 10, ETH_P_IP),  # jeq IPv4, else drop
        (0x20, 0, 0, 30),         # ld [30]: the destination address
        (0x54, 0, 0, mask),       # and the prefix's mask
        (0x15, 0, 7, ip & mask),  # jeq ours, else drop
        (0x30, 0, 0, 23),        # ldb [23]: the protocol
        (0x15, 0, 5, 6),         # jeq TCP, else drop
        (0xb1, 0, 0, 14),        # ldxb 4*([14]&0xf): the IP header's length
        (0x50, 0, 0, 27),        # ldb [x+27]: the TCP flags
        (0x54, 0, 0, 0x12),      # and SYN|ACK
        (0x15, 0, 1, 0x02),      # jeq SYN alone, else drop
        (0x06, 0, 0, 0xFFFF),    # accept
        (0x06, 0, 0, 0),         # drop
    ]
    return b"".join(struct.pack("HBBI", *c) for c in code)


class SynCapture:
    """The SYNs sent into one small loopback network, in wire order: (address, port)."""

    def __init__(self, address: str, prefix: int = 32) -> None:
        self.address, self.prefix = address, prefix
        self.syns: list[tuple[str, int]] = []
        # ETH_P_ALL: a socket bound to one protocol sees only the packets that arrive
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        program = ctypes.create_string_buffer(_syn_filter(address, prefix))
        fprog = struct.pack("HL", len(program.raw) // 8, ctypes.addressof(program))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        self.sock.bind(("lo", ETH_P_ALL))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        mask = (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF
        ours = struct.unpack("!I", socket.inet_aton(self.address))[0] & mask
        while True:
            try:
                frame, where = self.sock.recvfrom(256)
            except TimeoutError:
                if self._stop.is_set():  # and everything queued is read
                    return
                continue
            # each packet on lo is seen leaving and arriving: keep one copy, and check
            # what the filter checked (a frame may have queued before it was attached)
            if where[2] != PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            tcp = ip[(ip[0] & 0xF) * 4:]
            if (ip[9] == 6 and struct.unpack("!I", ip[16:20])[0] & mask == ours
                    and tcp[13] & 0x12 == 0x02):
                self.syns.append((socket.inet_ntoa(ip[16:20]),
                                  struct.unpack("!H", tcp[2:4])[0]))

    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.syns]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@contextmanager
def syns_to(address: str, prefix: int = 32) -> Iterator[SynCapture]:
    try:
        capture = SynCapture(address, prefix)
    except PermissionError:
        pytest.skip("capturing on lo needs CAP_NET_RAW")
    try:
        yield capture
    finally:
        capture.stop()


def own_address() -> str:
    """A loopback address no other test or scan on the machine is likely to probe."""
    return f"127.{random.randrange(64, 250)}.{random.randrange(1, 250)}.{random.randrange(2, 250)}"


def own_network() -> str:
    """The first three octets of a loopback /24 no other scan is likely to probe."""
    return f"127.{random.randrange(64, 250)}.{random.randrange(1, 250)}"


def cli(*args: str, hashseed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def scanned_order(address: str, *flags: str, hashseed: str) -> tuple[list[int], dict[str, Any]]:
    """The order a ``scan`` of ``address`` x 1-300 sent its SYNs in, and its report's options."""
    with syns_to(address) as capture:
        done = cli("scan", address, "-p", "1-300", "--retries", "0", "--format", "json",
                   *flags, hashseed=hashseed)
    assert done.returncode == 0, done.stderr
    options: dict[str, Any] = json.loads(done.stdout)["options"]
    return capture.ports, options


def test_the_report_records_the_seed_a_scan_drew_and_it_replays_the_scan() -> None:
    """A scan without --seed draws one and records it (options.seed); the same scan given
    that seed, in another process with another string-hash salt, sends its SYNs in the same
    order. Another seed, another order; every port probed once either way."""
    address = own_address()
    drawn, options = scanned_order(address, hashseed="1")
    seed = options["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert sorted(drawn) == list(range(1, 301))
    assert drawn != sorted(drawn)  # keyed, not in the order given
    replayed, again = scanned_order(address, "--seed", str(seed), hashseed="2")
    assert again["seed"] == seed
    assert replayed == drawn
    other, _ = scanned_order(address, "--seed", str(seed + 1), hashseed="1")
    assert sorted(other) == list(range(1, 301)) and other != drawn


def test_each_scan_without_a_seed_draws_its_own() -> None:
    address = own_address()
    first, a = scanned_order(address, hashseed="1")
    second, b = scanned_order(address, hashseed="1")
    assert a["seed"] != b["seed"] and first != second


def test_a_bad_seed_is_one_line_naming_it() -> None:
    for bad in ("-1", "1.5", "x"):
        done = cli("scan", "127.0.0.1", "-p", "1", "--seed", bad, hashseed="1")
        assert done.returncode == 2
        assert done.stderr == (f"nornir-portscan: error: argument --seed {bad!r}: must be a "
                               f"whole number, 0 or more\n")


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    from nornir_portscan.engine import plan_scan, run_plan
    plan = plan_scan("127.0.0.1-16", "1-60", retries=0, seed=int(sys.argv[1]), shards=2)
    print(json.dumps([(o.host, o.port) for o in run_plan(plan)]))
""")


def sharded_outcomes(seed: int, hashseed: str) -> list[tuple[str, int]]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(seed)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [(host, port) for host, port in json.loads(done.stdout)]


def slices(seed: int) -> list[list[str]]:
    """The hosts of each of the two shards, in the order the layout keyed by ``seed``
    hands them to their worker."""
    plan = plan_scan("127.0.0.1-16", "1-60", retries=0, seed=seed, shards=2)
    layout = ShardLayout.for_processes(plan, 2, layout_key(seed))
    return [[str(t.address) for t in layout.share(plan, i).spec] for i in range(2)]


def test_a_sharded_scan_lays_out_its_shards_by_its_seed() -> None:
    """Two forked shards, in two processes with different string-hash salts: with the same
    seed each shard takes the same hosts in the same order (the layout's slices, seen in the
    order the shard first reports each host) and probes each host's ports in the same
    order. Another seed cuts the hosts otherwise."""
    seed = 20261207
    first, second = sharded_outcomes(seed, "1"), sharded_outcomes(seed, "2")
    for outcomes in (first, second):
        assert sorted(outcomes) == sorted((f"127.0.0.{h}", p) for h in range(1, 17)
                                          for p in range(1, 61))
        for hosts in slices(seed):
            seen = list(dict.fromkeys(h for h, _ in outcomes if h in set(hosts)))
            assert seen == hosts
    for host in {h for h, _ in first}:
        assert [p for h, p in first if h == host] == [p for h, p in second if h == host]
    assert slices(seed + 1) != slices(seed)
    other = sharded_outcomes(seed + 1, "1")
    for hosts in slices(seed + 1):
        assert list(dict.fromkeys(h for h, _ in other if h in set(hosts))) == hosts


def run_order(inventory: Path, *flags: str, hashseed: str) -> tuple[list[int], str]:
    """The SYN order of a ``run`` of ``inventory`` (one host, its own address), and its
    report."""
    address = (inventory / "address").read_text()
    with syns_to(address) as capture:
        done = cli("run", "-i", str(inventory), *flags, hashseed=hashseed)
    assert done.returncode == 0, done.stderr
    return capture.ports, done.stdout


def inventory(tmp_path: Path, name: str, data: str) -> Path:
    address = own_address()
    d = tmp_path / name
    d.mkdir()
    (d / "address").write_text(address)
    (d / "hosts.yaml").write_text(
        f"a: {{hostname: {address}, data: {{portscan: {{ports: 1-300, retries: 0{data}}}}}}}\n")
    return d


def test_a_run_records_its_seed_and_it_replays_the_run(tmp_path: Path) -> None:
    """A run without --seed records the seed its hosts scanned with (json options.seed,
    nmap-xml's args); run --seed with it sends the same SYNs in the same order."""
    inv = inventory(tmp_path, "inv", "")
    drawn, report = run_order(inv, "--format", "json", hashseed="1")
    seed = json.loads(report)["options"]["seed"]
    assert isinstance(seed, int) and sorted(drawn) == list(range(1, 301))
    replayed, xml = run_order(inv, "--seed", str(seed), "--format", "nmap-xml", hashseed="2")
    assert replayed == drawn
    assert f"seed={seed}" in xml.split("<nmaprun ", 1)[1].split(">", 1)[0]
    other, _ = run_order(inv, "--seed", str(seed + 1), "--format", "json", hashseed="1")
    assert other != drawn


def test_a_hosts_seed_in_its_inventory_keys_its_order_as_scan_seed_does(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "inv", ", seed: 4242")
    from_data, _ = run_order(inv, "--format", "json", hashseed="1")
    address = (inv / "address").read_text()
    scanned, _ = scanned_order(address, "--seed", "4242", hashseed="2")
    assert from_data == scanned and sorted(scanned) == list(range(1, 301))


def first_seen(syns: list[tuple[str, int]], hosts: list[str]) -> list[str]:
    """``hosts`` in the order their first SYN went out."""
    wanted = set(hosts)
    return list(dict.fromkeys(h for h, _ in syns if h in wanted))


def test_a_cluster_scan_lays_out_and_orders_by_its_seed() -> None:
    """On a local Dask cluster (two single-threaded workers, so two shards of whole hosts):
    a seedless scan records its seed; given back, in another process, each shard takes its
    hosts in the same order (the layout's slices, whichever worker runs a shard) and each
    host's ports go out in the same order."""
    pytest.importorskip("distributed")
    net = own_network()
    targets = f"{net}.1-16"

    def cluster_scan(*flags: str, hashseed: str) -> tuple[list[tuple[str, int]], int]:
        with syns_to(f"{net}.0", 24) as capture:
            done = cli("scan", targets, "-p", "1-60", "--retries", "0", "--cluster", "local:2",
                       "--format", "json", "--no-progress", *flags, hashseed=hashseed)
        assert done.returncode == 0, done.stderr
        return capture.syns, json.loads(done.stdout)["options"]["seed"]

    def cluster_slices(seed: int) -> list[list[str]]:
        plan = plan_scan(targets, "1-60", retries=0, seed=seed, cluster="local:2")
        layout = ShardLayout.for_plan(plan, 2, layout_key(seed))
        assert layout.count == 2 and layout.port_classes == 1
        return [[str(t.address) for t in layout.share(plan, i).spec] for i in range(2)]

    drawn, seed = cluster_scan(hashseed="1")
    replayed, again = cluster_scan("--seed", str(seed), hashseed="2")
    assert again == seed
    for syns in (drawn, replayed):
        # every port of every host (and the discovery probes' port 80 beside them)
        assert set(syns) >= {(f"{net}.{h}", p) for h in range(1, 17) for p in range(1, 61)}
        for hosts in cluster_slices(seed):
            assert first_seen(syns, hosts) == hosts
    for h in range(1, 17):
        host = f"{net}.{h}"
        assert [p for a, p in drawn if a == host] == [p for a, p in replayed if a == host]
