"""Names against a real DNS server (dnsmasq in a test namespace, tests/dnslab.py): what
each kind of failure is called, in every format; a resolver that never answers; stopping
while lookups hang; target files. Every lookup here happens inside a namespace that has
only ``lo`` and whose resolv.conf names the test's own dnsmasq (or a dropped address)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dask_procs import DaskProcesses
from dnslab import DNS, SILENT, DnsSetup, why_no_dnsmasq
from netns import PYTHON, NetNS, by_key, jsonl

from nornir_portscan.engine.core.names import FIRST_LOOKUPS

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(why_no_dnsmasq() is not None, reason=str(why_no_dnsmasq()))]

OPEN = 5000  # listens on a.test's address
SHUT = 5001  # nothing listens anywhere
RECORDS = ["--host-record=a.test,127.0.0.10", "--host-record=v6.test,::1",
           "--host-record=dual.test,127.0.0.12,::1", "--host-record=sw1.corp.test,127.0.0.11",
           "--txt-record=noaddr.test,no address here"]
HOSTS = "127.0.0.9 fromhosts.test\n"
#: name -> the addresses it must give (search domain and /etc/hosts included), or its reason
EXPECTED: dict[str, set[str] | str] = {
    "a.test": {"127.0.0.10"}, "v6.test": {"::1"}, "dual.test": {"127.0.0.12", "::1"},
    "sw1": {"127.0.0.11"}, "fromhosts.test": {"127.0.0.9"},
    "nx.test": "no-such-name", "noaddr.test": "no-address"}


@pytest.fixture
def dns(make_netns: Callable[[], NetNS]) -> Iterator[tuple[NetNS, DnsSetup]]:
    """A namespace resolving through its own dnsmasq, a listener on a.test's address."""
    ns = make_netns()
    ns.check("ip", "addr", "add", f"{DNS}/32", "dev", "lo")
    setup = DnsSetup(ns, records=RECORDS, hosts=HOSTS)
    try:
        ns.listen([("127.0.0.10", OPEN, None)])
        yield ns, setup
    finally:
        setup.close()


@pytest.fixture
def silent(make_netns: Callable[[], NetNS]) -> Iterator[tuple[NetNS, DnsSetup]]:
    """A namespace whose only resolver drops every question (dnsmasq runs, unasked)."""
    ns = make_netns()
    ns.check("ip", "addr", "add", f"{DNS}/32", "dev", "lo")
    setup = DnsSetup(ns, records=RECORDS, hosts=HOSTS, nameserver=SILENT)
    try:
        yield ns, setup
    finally:
        setup.close()


def names(n: int) -> list[str]:
    return [f"h{i}.dc1.example.net" for i in range(n)]


# ---- what each name gives, in every format ---------------------------------------------------


def test_names_resolve_through_dnsmasq_and_failures_say_why(dns: tuple[NetNS, DnsSetup]) -> None:
    """A, AAAA, both, a search domain, /etc/hosts; NXDOMAIN and a name without address get
    their own reasons, each port accounted for once."""
    ns, _ = dns
    done = ns.scan(*EXPECTED, "-p", f"{OPEN},{SHUT}", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    got: dict[str, set[str]] = {}
    for row in rows:
        got.setdefault(row["name"], set()).add(row["host"])
    assert set(got) == set(EXPECTED)
    for name, want in EXPECTED.items():
        if isinstance(want, str):  # the name itself is the row's host, with the reason
            assert got[name] == {name}
            assert {(r["state"], r["reason"]) for r in rows if r["name"] == name} == {
                ("error", want)}
        else:
            assert got[name] == want, name
    # each (name, address, port) once: ::1 is two names' address, probed for each
    keyed = {(r["name"], r["host"], r["port"]): r for r in rows}
    assert len(keyed) == len(rows) == 2 * sum(
        1 if isinstance(w, str) else len(w) for w in EXPECTED.values())
    assert keyed[("a.test", "127.0.0.10", OPEN)]["state"] == "open"
    assert done.stderr.splitlines()[0] == ("warning: 2 addresses could not be probed: "
                                           "noaddr.test (name has no address); nx.test "
                                           "(no such name)")


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_every_scan_format_carries_the_reasons(dns: tuple[NetNS, DnsSetup], fmt: str) -> None:
    ns, _ = dns
    done = ns.scan("a.test", "nx.test", "noaddr.test", "nx2.test", "-p", str(SHUT),
                   "--format", fmt)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    if fmt == "table":  # grouped by why, counted by why
        lines = out.splitlines()
        assert "no such name, not probed (2): nx.test, nx2.test" in lines
        assert "name has no address, not probed (1): noaddr.test" in lines
        assert lines[-2] == ("4 hosts: 1 up with no open port, 2 no such name, "
                             "1 name without address")
        return
    if fmt == "csv":
        reasons = {(r["host"], r["reason"]) for r in csv.DictReader(io.StringIO(out))}
    else:
        doc = json.loads(out)
        reasons = {(host, str(port["reason"])) for host, entry in doc["hosts"].items()
                   for port in entry["ports"].values()}
    assert reasons == {("127.0.0.10", "conn-refused"), ("nx.test", "no-such-name"),
                       ("nx2.test", "no-such-name"), ("noaddr.test", "no-address")}


def test_run_and_the_task_result_carry_the_reasons(dns: tuple[NetNS, DnsSetup],
                                                   tmp_path: Path) -> None:
    """``run`` over hosts named by DNS name: each Result says why, the table groups the
    hosts by it, and every run format keeps the reason."""
    ns, _ = dns
    (tmp_path / "hosts.yaml").write_text(f"""\
good: {{hostname: a.test, data: {{portscan: {{ports: [{OPEN}]}}}}}}
gone: {{hostname: nx.test, data: {{portscan: {{ports: [{OPEN}]}}}}}}
gone2: {{hostname: nx2.test, data: {{portscan: {{ports: [{OPEN}]}}}}}}
bare: {{hostname: noaddr.test, data: {{portscan: {{ports: [{OPEN}]}}}}}}
""", encoding="utf-8")
    base = [PYTHON, "-m", "nornir_portscan", "run", "-i", str(tmp_path)]
    table = ns.run(*base)
    assert table.returncode == 1, table.stdout + table.stderr  # names failed: hosts failed
    lines = table.stdout.splitlines()
    assert "ERROR, no such name (2): gone, gone2" in lines
    assert "ERROR, name has no address (1): bare" in lines
    as_json = ns.run(*base, "--format", "json")
    doc = json.loads(as_json.stdout)
    errors = {name: doc["hosts"][name]["result"]["errors"] for name in ("gone", "bare")}
    assert errors == {"gone": ["nx.test: name could not be resolved: no such name "
                               "(no-such-name)"],
                      "bare": ["noaddr.test: name could not be resolved: name has no "
                               "address (no-address)"]}
    for fmt in ("jsonl", "csv", "junit", "nmap-xml", "html"):
        done = ns.run(*base, "--format", fmt)
        assert done.returncode == 1, done.stderr
        assert "no-such-name" in done.stdout and "no-address" in done.stdout, fmt


# ---- a resolver that does not answer ---------------------------------------------------------


def test_a_silent_resolver_costs_seconds_not_minutes(silent: tuple[NetNS, DnsSetup],
                                                     tmp_path: Path) -> None:
    """2,000 names behind a resolver that drops every question: each port accounted for,
    one line naming the resolver and what it cost, every name asked (A and AAAA) exactly
    twice, and lookups in parallel: 2,000 names take a few times as long as 16 (about 5
    rounds of timeouts, as the lookups under way grow; 8 threads took 125 times as long,
    64 lookups at a time 31). The 60 s bound is the issue's own (about 17 s here)."""
    ns, setup = silent
    few, many = tmp_path / "16.txt", tmp_path / "2000.txt"
    few.write_text("\n".join(names(16)) + "\n", encoding="ascii")
    many.write_text("# a silent resolver\n" + "\n".join(names(2000)) + "\n", encoding="ascii")
    started = time.monotonic()
    small = ns.scan("-iL", str(few), "-p", "22,80,443", "--format", "jsonl", timeout=120)
    small_s = time.monotonic() - started
    assert small.returncode == 0, small.stderr
    before = setup.dropped()
    assert before == 16 * 2 * 2
    started = time.monotonic()
    big = ns.scan("-iL", str(many), "-p", "22,80,443", "--format", "jsonl", timeout=120)
    big_s = time.monotonic() - started
    assert big.returncode == 0, big.stderr
    rows = jsonl(big.stdout)
    assert len(rows) == len(by_key(rows)) == 2000 * 3
    assert {(r["state"], r["reason"]) for r in rows} == {("error", "resolver-timeout")}
    assert {r["host"] for r in rows} == set(names(2000))
    warning = f"warning: resolver {SILENT}:53 did not answer: 2000 names not scanned " \
              f"(resolver-timeout)"
    assert big.stderr.splitlines()[0] == warning
    assert setup.dropped() - before == 2000 * 2 * 2
    assert big_s < 60
    assert big_s < 10 * small_s, (big_s, small_s)


def test_a_sharded_scan_names_the_silent_resolver_too(silent: tuple[NetNS, DnsSetup]) -> None:
    """Over 8,192 probes a scan runs in process shards (on a machine with 2 cores or more):
    each shard's tally of silent names reaches the one warning line."""
    ns, _ = silent
    done = ns.scan(*names(30), "-p", "1-300", "--format", "jsonl", timeout=120)
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    assert len(rows) == len(by_key(rows)) == 30 * 300
    assert done.stderr.splitlines()[0] == (f"warning: resolver {SILENT}:53 did not answer: "
                                           f"30 names not scanned (resolver-timeout)")


def test_run_names_a_silent_resolver_once(silent: tuple[NetNS, DnsSetup],
                                          tmp_path: Path) -> None:
    """``run`` over hosts whose names the resolver never answers: the hosts are grouped
    under why, and one line on stderr names the resolver and the names it cost."""
    ns, _ = silent
    (tmp_path / "hosts.yaml").write_text("".join(
        f"sw{i}: {{hostname: {name}, data: {{portscan: {{ports: [22]}}}}}}\n"
        for i, name in enumerate(names(3))), encoding="utf-8")
    done = ns.run(PYTHON, "-m", "nornir_portscan", "run", "-i", str(tmp_path), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ERROR, resolver did not answer (3): sw0, sw1, sw2" in done.stdout.splitlines()
    assert done.stderr.splitlines() == [
        f"warning: resolver {SILENT}:53 did not answer: 3 names not scanned (resolver-timeout)"]


def _silent_line(count: int) -> str:
    return (f"warning: resolver {SILENT}:53 did not answer: {count} names not scanned "
            f"(resolver-timeout)")


def test_each_monitor_round_names_a_silent_resolver(silent: tuple[NetNS, DnsSetup],
                                                   tmp_path: Path) -> None:
    ns, _ = silent
    (tmp_path / "hosts.yaml").write_text("".join(
        f"sw{i}: {{hostname: {name}, data: {{portscan: {{ports: [22]}}}}}}\n"
        for i, name in enumerate(names(3))), encoding="utf-8")
    done = ns.run(PYTHON, "-m", "nornir_portscan", "monitor", "-i", str(tmp_path), "--once",
                  timeout=60)
    assert "portscan_host_up" in done.stdout, done.stderr
    assert f"nornir-portscan monitor: round 1: {_silent_line(3)}" in done.stderr.splitlines()


def test_a_cluster_scan_names_the_silent_resolver(silent: tuple[NetNS, DnsSetup]) -> None:
    """Names looked up on Dask workers: each run's tally comes back with its end."""
    pytest.importorskip("distributed")
    ns, _ = silent
    procs = DaskProcesses(ns)
    try:
        procs.add_worker("w1")
        procs.add_worker("w2")
        procs.wait_for_workers(2)
        done = ns.scan(*names(30), "-p", "1-3", "--cluster", procs.address, "--format",
                       "jsonl", timeout=120)
    finally:
        procs.close()
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    assert len(rows) == len(by_key(rows)) == 30 * 3
    assert done.stderr.splitlines()[0] == _silent_line(30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_scan_while_lookups_hang(silent: tuple[NetNS, DnsSetup],
                                                 tmp_path: Path, sig: int) -> None:
    """Stopped while 300 lookups hang (they would take seconds more): the scan ends at
    once, exit 130, what was decided (the addresses before the names) written. The 2 s
    bound is the feature's; it takes about 0.1 s here (getaddrinfo threads took 380 s)."""
    ns, setup = silent
    listed = tmp_path / "targets.txt"
    listed.write_text("127.0.0.1-20\n" + "\n".join(names(300)) + "\n", encoding="ascii")
    out = tmp_path / "scan.jsonl"
    proc = ns.scan_popen("-iL", str(listed), "-p", "22,80", "--format", "jsonl",
                         "-o", str(out), "--no-discovery")
    deadline = time.monotonic() + 60
    while setup.dropped() < 2 * FIRST_LOOKUPS:  # the first lookups went out, unanswered
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the lookups never went out"
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    took = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert took < 2.0, took
    rows = jsonl(out.read_text(encoding="utf-8"))
    addresses = [r for r in rows if not r.get("name")]
    assert {(r["host"], r["port"]) for r in addresses} == {
        (f"127.0.0.{i}", p) for i in range(1, 21) for p in (22, 80)}
    # (a name is decided only once its lookup timed out: none had, on a machine not slowed)
    assert all(r["reason"] == "resolver-timeout" for r in rows if r.get("name"))
    assert len(rows) == len(by_key(rows))
    assert "interrupted" in stderr


# ---- behind the lab's WAN relay ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
#: netlab.py, in the shared folder beside the repository (or beside its worktrees' folder)
NETLAB = next((p for p in (REPO.parent / "shared" / "lab" / "netlab.py",
                           REPO.parent.parent / "shared" / "lab" / "netlab.py") if p.is_file()),
              None)


@pytest.fixture
def wan(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]], Path]]:
    """A netlab WAN lab (hosts 20 ms away behind its relay) with dnsmasq beside the hosts,
    naming each of them; the scanner's namespace resolves through it. (name of the
    scanner's namespace, (name, address) pairs, the lab's ground truth)"""
    if NETLAB is None:
        pytest.skip("netlab.py is not beside the repository (shared/lab/netlab.py)")
    lab = f"nptdns{os.getpid()}"
    truth = tmp_path / "truth.jsonl"
    up = subprocess.run([sys.executable, str(NETLAB), "up", lab, "--hosts", "198.18.3.0/26",
                         "--ports", "22,80,443", "--delay-ms", "20", "--alive", "1",
                         "--unreach", "0", "--open", "1", "--filtered", "0",
                         "--truth", str(truth)], capture_output=True, text=True, timeout=120)
    conf = Path("/etc/netns") / lab
    dnsmasq: subprocess.Popen[str] | None = None
    try:
        if up.returncode != 0:
            pytest.skip(f"netlab could not build a WAN lab: {up.stderr.strip()[-300:]}")
        pairs = [(f"h{i}.wan.test", f"198.18.3.{i}") for i in range(1, 63)]
        records = tmp_path / "names.hosts"
        records.write_text("".join(f"{ip} {name}\n" for name, ip in pairs), encoding="ascii")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", f"{lab}-srv", "dnsmasq", "--no-daemon", "--no-resolv",
             "--no-hosts", "--conf-file=/dev/null", "--user=root", "--bind-dynamic",
             "--listen-address=198.18.3.63", "--local=/test/", f"--addn-hosts={records}",
             "--log-facility=-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert dnsmasq.stderr is not None
        for line in dnsmasq.stderr:
            if "started" in line:
                break
        conf.mkdir(parents=True, exist_ok=True)
        conf.joinpath("resolv.conf").write_text("nameserver 198.18.3.63\n", encoding="ascii")
        yield lab, pairs, truth
    finally:
        if dnsmasq is not None:
            dnsmasq.kill()
            dnsmasq.communicate(timeout=5)
        subprocess.run([sys.executable, str(NETLAB), "down", lab], capture_output=True,
                       timeout=60)
        shutil.rmtree(conf, ignore_errors=True)


def test_names_behind_a_delayed_resolver_scan_as_their_addresses(
        wan: tuple[str, list[tuple[str, str]], Path], tmp_path: Path) -> None:
    """Every question crosses the relay (20 ms each way), as every probe does: the names
    scan the same (address, port) pairs with the same states as their addresses, exact
    against the lab's truth, each row carrying its name."""
    lab, pairs, truth = wan
    listed = tmp_path / "names.txt"
    listed.write_text("".join(f"{name}\n" for name, _ in pairs), encoding="ascii")
    base = ["ip", "netns", "exec", lab, PYTHON, "-m", "nornir_portscan", "scan", "-p",
            "22,80,443", "--format", "jsonl"]
    by_name = subprocess.run([*base, "-iL", str(listed)], capture_output=True, text=True,
                             timeout=120)
    by_address = subprocess.run([*base, *(ip for _, ip in pairs)], capture_output=True,
                                text=True, timeout=120)
    assert by_name.returncode == by_address.returncode == 0, by_name.stderr
    named, plain = jsonl(by_name.stdout), jsonl(by_address.stdout)
    assert {(r["host"], r["port"], r["state"]) for r in named} == {
        (r["host"], r["port"], r["state"]) for r in plain}
    assert {(r["name"], r["host"]) for r in named} == set(pairs)
    got = tmp_path / "got.jsonl"
    got.write_text(by_name.stdout, encoding="utf-8")
    score = subprocess.run([sys.executable, str(NETLAB), "score", str(truth), str(got)],
                           capture_output=True, text=True, timeout=60)
    assert score.returncode == 0, score.stdout


# ---- target files ----------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_a_target_file_reads_as_the_command_line(tmp_path: Path,
                                                 closed_port: Callable[..., int]) -> None:
    """Comments, blank lines, several targets a line, ranges: the same rows as the same
    targets on the command line; ``-`` reads standard input; excludes still apply."""
    shut = closed_port()
    listed = tmp_path / "targets.txt"
    listed.write_text("# core\n127.0.0.1   # this machine\n\n127.0.0.2,127.0.0.3 127.0.0.5-6\n",
                      encoding="utf-8")
    argv = ["-p", str(shut), "--format", "jsonl", "--exclude", "127.0.0.6"]
    from_file = cli("scan", "-iL", str(listed), *argv)
    from_stdin = cli("scan", "--targets-file", "-", *argv, stdin=listed.read_text())
    on_line = cli("scan", "127.0.0.1", "127.0.0.2,127.0.0.3", "127.0.0.5-6", *argv)
    rows = [sorted((r["host"], r["port"], r["state"]) for r in jsonl(done.stdout))
            for done in (from_file, from_stdin, on_line)]
    assert rows[0] == rows[1] == rows[2]
    assert [h for h, _, _ in rows[0]] == ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.5"]


@pytest.mark.parametrize(("text", "message"), [
    ("127.0.0.1\n# fine\n127.0.0.300\n", "{path}:3: octet '300' in '127.0.0.300' is out of "
                                         "range 0-255"),
    ("# nothing but comments\n\n", "{path}: no targets in it (one a line, # comments)"),
])
def test_a_bad_target_file_names_file_and_line(tmp_path: Path, text: str,
                                               message: str) -> None:
    listed = tmp_path / "targets.txt"
    listed.write_text(text, encoding="utf-8")
    done = cli("scan", "-iL", str(listed), "-p", "1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"nornir-portscan: error: {message.format(path=listed)}"]
    stdin = cli("scan", "-iL", "-", "-p", "1", stdin=text)
    assert stdin.returncode == 2
    assert stdin.stderr.splitlines() == [
        f"nornir-portscan: error: {message.format(path='standard input')}"]
