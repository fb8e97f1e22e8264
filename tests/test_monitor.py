"""``nornir-portscan monitor`` as an operator runs it: a subprocess, scraped over HTTP by
this test or by a real Prometheus server, signalled, and read back with prometheus_client's
own parser.

Network rule: the targets are listeners on 127.0.0.1, of this machine or of a namespace
the test built (where Prometheus, the monitor and its targets share the namespace's
loopback). Timing: intervals are short so a test takes seconds; bounds are counted in
rounds where they can be, never loosened for a slow machine.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import stalled_port
from netns import NetNS
from prometheus_client.parser import text_string_to_metric_families

from nornir_portscan.cli.monitor import DEFAULT_PORT, parse_listen
from nornir_portscan.report.metrics import (
    HELP,
    STATE_REASONS,
    Snapshot,
    host_values,
    reason_label,
)

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def series(text: str) -> Series:
    """Every sample of an exposition, keyed by (name, labels); parsing it is the check."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(s: Series, name: str, **labels: str) -> float | None:
    return s.get((name, frozenset(labels.items())))


def names(s: Series, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in s if n == name]


# ---- running the monitor ----------------------------------------------------------------------


class Monitor:
    """A monitor subprocess; its stderr is read on a thread into ``lines``."""

    def __init__(self, args: list[str], cwd: Path, ns: NetNS | None = None) -> None:
        cmd = [sys.executable, "-m", "nornir_portscan", "monitor", *args]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc: subprocess.Popen[str] = (
            ns.popen(*cmd, cwd=cwd, env=env) if ns is not None else
            subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r}; stderr: {self.lines}")

    def serving(self) -> str:
        self.url = self.wait_line(r"serving (http://\S+/metrics)").group(1)
        return self.url

    def scrape(self) -> Series:
        with urllib.request.urlopen(self.url or self.serving(), timeout=5) as response:
            return series(response.read().decode())

    def until(self, check: Callable[[Series], bool], timeout: float = 20,
              scrape: Callable[[], Series] | None = None) -> Series:
        deadline = time.monotonic() + timeout
        last: Series = {}
        while time.monotonic() < deadline:
            last = (scrape or self.scrape)()
            if check(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"not reached in {timeout} s; last scrape: {last}; "
                             f"stderr: {self.lines}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signum)
        status = self.proc.wait(timeout=timeout)
        took = time.monotonic() - started
        self._reader.join(timeout=5)
        return status, took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def monitors() -> Iterator[Callable[..., Monitor]]:
    made: list[Monitor] = []

    def start(args: list[str], cwd: Path, ns: NetNS | None = None) -> Monitor:
        m = Monitor(args, cwd, ns)
        made.append(m)
        return m

    yield start
    for m in made:
        m.kill()


def inventory(directory: Path, hosts: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yaml").write_text(json.dumps(hosts), encoding="utf-8")
    return directory


def host(address: str, ports: list[int], **portscan: Any) -> dict[str, Any]:
    return {"hostname": address, "data": {"portscan": {"ports": ports, **portscan}}}


def listening(port: int) -> socket.socket:
    """A listener on 127.0.0.1 that accepts and closes on a thread until it is closed.

    Accepting matters: connections a listener never accepts fill its queue over many rounds,
    and then the kernel drops SYNs and the port reads as filtered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    sock.settimeout(0.1)

    def accept_all() -> None:
        while sock.fileno() != -1:
            try:
                conn, _ = sock.accept()
            except OSError:  # the timeout, or the socket closed under us
                continue
            conn.close()

    threading.Thread(target=accept_all, daemon=True).start()
    return sock


def free_port() -> int:
    """A loopback port nothing listens on now (bound for a number, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- what the metrics say, without sockets -------------------------------------------------------


def _result(ports: dict[int, tuple[str, str]], status: str = "up",
            violations: int = 0, address: str = "127.0.0.1") -> dict[str, Any]:
    return {"targets": {address: {"status": status, "name": None,
                                  "ports": {p: {"state": s, "reason": r, "rtt_ms": None}
                                            for p, (s, r) in ports.items()}}},
            "violations": ["x"] * violations}


def test_series_only_for_open_or_expected_ports_with_fixed_labels() -> None:
    values = host_values("core1", _result({22: ("open", "syn-ack"),
                                           23: ("closed", "conn-refused"),
                                           80: ("closed", "conn-refused"),
                                           443: ("filtered", "no-response")}, violations=1),
                         frozenset({23, 443}))
    got = {dict(p.labels)["port"]: (p.open, p.state, p.reason) for p in values.ports}
    # 80 is closed and no expectation names it: no series at all
    assert got == {"22": (1, "open", "syn-ack"), "23": (0, "closed", "conn-refused"),
                   "443": (0, "filtered", "no-response")}
    assert dict(values.ports[0].labels) == {"host": "core1", "address": "127.0.0.1",
                                            "port": "22"}
    assert values.violations == 1
    assert values.up == (((("host", "core1"), ("address", "127.0.0.1")), 1),)
    # a host named by its address gets no address label
    same = host_values("127.0.0.1", _result({22: ("open", "syn-ack")}), frozenset())
    assert dict(same.ports[0].labels) == {"host": "127.0.0.1", "port": "22"}


def test_host_anomaly_gauge_and_an_all_open_host_costs_one_series() -> None:
    """Issue 25: portscan_host_anomaly{host, address, anomaly} for anomalous addresses only;
    an all-open address's thousands of open ports are not a series each (only the ports an
    expectation names)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from nornir_portscan.plugins.common.shapes import HostResult
    from nornir_portscan.plugins.tasks.result import finish_targets
    from nornir_portscan.report.metrics import SnapshotCollector

    def result(address: str, ports: dict[int, tuple[str, str]]) -> HostResult:
        return finish_targets({address: {"status": "up", "name": None, "ports": {
            p: {"state": st, "reason": r, "rtt_ms": 1.0} for p, (st, r) in ports.items()}}})

    every = result("198.18.30.2", {p: ("open", "syn-ack") for p in range(1, 2001)})
    proxy = result("198.18.30.1", {p: ("open", "syn-ack") if p == 22
                                   else ("closed", "reset-after-syn-ack") for p in range(1, 101)})
    plain = result("127.0.0.1", {22: ("open", "syn-ack"), 23: ("closed", "conn-refused")})
    snap = Snapshot(hosts={"dnat": host_values("dnat", every, frozenset({23})),
                           "proxy": host_values("proxy", proxy, frozenset()),
                           "127.0.0.1": host_values("127.0.0.1", plain, frozenset())})
    collector = SnapshotCollector()
    collector.publish(snap)
    registry = CollectorRegistry()
    registry.register(collector)
    s = series(generate_latest(registry).decode())
    assert sorted(map(sorted, map(dict.items, names(s, "portscan_host_anomaly")))) == sorted([
        sorted({"host": "dnat", "address": "198.18.30.2", "anomaly": "all-open"}.items()),
        sorted({"host": "proxy", "address": "198.18.30.1", "anomaly": "syn-proxy"}.items())])
    assert value(s, "portscan_host_anomaly", host="dnat", address="198.18.30.2",
                 anomaly="all-open") == 1
    assert [d["port"] for d in names(s, "portscan_port_open") if d["host"] == "dnat"] == ["23"]
    assert value(s, "portscan_port_state", host="proxy", address="198.18.30.1", port="22",
                 state="open", reason="syn-ack") == 1


def test_reasons_outside_the_documented_sets_are_other() -> None:
    assert reason_label("closed", "conn-refused") == "conn-refused"
    assert reason_label("open", "conn-refused") == "other"  # a reason of another state
    assert reason_label("error", "ECONNABORTED") == "ECONNABORTED"  # an errno name
    assert reason_label("error", "made-up") == "other"
    assert reason_label("filtered", None) == "other"


def test_the_documented_reasons_are_the_metrics_reasons() -> None:
    """docs/cli.md's table of states and reasons and the label sets cannot drift apart."""
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("### States and reasons", 1)[1].split("\n\n", 2)[1]
    documented: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        state = cells[0].strip("`")
        documented.setdefault(state, set()).update(re.findall(r"`([^`]+)`", cells[1]))
    documented["error"].discard("ECONNABORTED")  # the example of "an errno name"
    assert documented == {k: set(v) for k, v in STATE_REASONS.items()}


def test_every_metric_is_documented() -> None:
    page = (REPO / "docs" / "monitor.md").read_text(encoding="utf-8")
    for name in HELP:
        shown = name + ("_total" if name in ("portscan_rounds", "portscan_round_errors")
                        else "")
        assert f"`{shown}" in page, shown


def _block(page: str, title: str) -> str:
    """The fenced block of docs/monitor.md titled ``title``."""
    found = re.search(r'```\w+ title="' + re.escape(title) + r'"\n(.*?)```', page, re.S)
    assert found, title
    return found.group(1)


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK),
                    reason="needs Debian's prometheus package (.ci/run installs it)")
def test_the_documented_prometheus_config_and_rules_check(tmp_path: Path) -> None:
    page = (REPO / "docs" / "monitor.md").read_text(encoding="utf-8")
    rules = tmp_path / "portscan.yml"
    rules.write_text(_block(page, "/etc/prometheus/rules/portscan.yml"), encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(_block(page, "/etc/prometheus/prometheus.yml").replace(
        "/etc/prometheus/rules/portscan.yml", str(rules)), encoding="utf-8")
    for cmd in (["check", "rules", str(rules)], ["check", "config", str(config)]):
        done = subprocess.run([PROMTOOL, *cmd], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "portscan_expectations_violated > 0" in rules.read_text(encoding="utf-8")


def test_a_failed_round_keeps_hosts_values_and_its_time() -> None:
    good = host_values("a", _result({22: ("open", "syn-ack")}), frozenset())
    first = Snapshot().after_round({"a": good}, failed=False, finished=100.0, duration=1.0)
    worse = host_values("b", _result({22: ("closed", "conn-refused")}), frozenset({22}))
    second = first.after_round({"b": worse}, failed=True, finished=200.0, duration=2.0)
    assert second.hosts == {"a": good, "b": worse}  # a kept, b scanned
    assert (second.finished, second.duration, second.rounds, second.errors) == (100.0, 1.0, 2, 1)
    assert second.only(["b"]).hosts == {"b": worse}


def test_listen_names_loopback_unless_told() -> None:
    assert parse_listen("9100") == ("127.0.0.1", 9100)
    assert parse_listen("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in (":9100", "::1:9100", "127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(Exception, match=re.escape(repr(bad))):
            parse_listen(bad)


# ---- the daemon on this machine's loopback ----------------------------------------------------


def test_once_exits_like_run_and_writes_parseable_metrics(tmp_path: Path) -> None:
    sock = listening(0)
    port = sock.getsockname()[1]
    shut = free_port()
    try:
        good = inventory(tmp_path / "good", {"web": host("127.0.0.1", [port, shut],
                                                         expect={"open": [port]})})
        done = subprocess.run([sys.executable, "-m", "nornir_portscan", "monitor", "--once",
                               "-i", str(good)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        s = series(done.stdout)
        assert value(s, "portscan_port_open", host="web", address="127.0.0.1",
                     port=str(port)) == 1
        # closed and not expected: no series
        assert value(s, "portscan_port_open", host="web", address="127.0.0.1",
                     port=str(shut)) is None
        assert value(s, "portscan_rounds_total") == 1
        assert not any(n.startswith("process_") for n, _ in s)  # not in a cron's file

        bad = inventory(tmp_path / "bad", {"web": host("127.0.0.1", [port, shut],
                                                       expect={"open": [shut]})})
        out = tmp_path / "portscan.prom"
        done = subprocess.run([sys.executable, "-m", "nornir_portscan", "monitor", "--once",
                               "-i", str(bad), "--textfile", str(out)], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        s = series(out.read_text(encoding="utf-8"))
        assert value(s, "portscan_expectations_violated", host="web") == 1
        assert value(s, "portscan_port_state", host="web", address="127.0.0.1", port=str(shut),
                     state="closed", reason="conn-refused") == 1

        done = subprocess.run([sys.executable, "-m", "nornir_portscan", "monitor", "--once",
                               "-i", str(bad), "--listen", "127.0.0.1:0"], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "--listen" in done.stderr, done.stderr
    finally:
        sock.close()


def test_a_failing_round_keeps_the_last_values_and_counts_an_error(
        tmp_path: Path, monitors: Callable[..., Monitor]) -> None:
    """The round reads a file the inventory names (a baseline) that has gone away."""
    sock = listening(0)
    port = sock.getsockname()[1]
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"targets": {}}', encoding="utf-8")
    inv = inventory(tmp_path / "inv", {"web": host("127.0.0.1", [port], expect={"open": [port]},
                                                   baseline=str(baseline))})
    m = monitors(["-i", str(inv), "--listen", "127.0.0.1:0", "--interval", "0.2"], tmp_path)
    m.serving()
    labels = {"host": "web", "address": "127.0.0.1", "port": str(port)}
    first = m.until(lambda s: value(s, "portscan_port_open", **labels) == 1)
    when = value(first, "portscan_last_round_timestamp_seconds")
    assert when is not None
    baseline.unlink()
    sock.close()  # the port closes while the rounds fail: the monitor must not say so
    failed = m.until(lambda s: (value(s, "portscan_round_errors_total") or 0) >= 3)
    assert value(failed, "portscan_port_open", **labels) == 1  # the last good value
    assert value(failed, "portscan_last_round_timestamp_seconds") == when
    assert m.proc.poll() is None
    # a client that resets the connection (as a scanner does) is no news in the log
    rude = socket.create_connection(("127.0.0.1", int(m.url.rsplit(":", 1)[1].split("/")[0])))
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    m.until(lambda s: (value(s, "portscan_round_errors_total") or 0) >= 4)
    errors = [line for line in m.lines if "failed" in line]
    assert errors and all("host 'web'" in line and "baseline" in line for line in errors)
    assert not any("Traceback" in line for line in m.lines), m.lines

    baseline.write_text('{"targets": {}}', encoding="utf-8")  # fixed: fresh values again
    fixed = m.until(lambda s: value(s, "portscan_port_open", **labels) == 0)
    assert (value(fixed, "portscan_last_round_timestamp_seconds") or 0) > when
    assert m.stop()[0] == 0


def test_sighup_reloads_and_a_broken_inventory_keeps_the_old(
        tmp_path: Path, monitors: Callable[..., Monitor]) -> None:
    sock = listening(0)
    port = sock.getsockname()[1]
    try:
        inv = inventory(tmp_path / "inv", {"old": host("127.0.0.1", [port])})
        m = monitors(["-i", str(inv), "--listen", "127.0.0.1:0", "--interval", "0.2"], tmp_path)
        m.serving()
        m.until(lambda s: value(s, "portscan_expectations_violated", host="old") == 0)

        (inv / "hosts.yaml").write_text("old: [unclosed\n", encoding="utf-8")
        m.proc.send_signal(signal.SIGHUP)
        line = m.wait_line(r"reload failed.*").group(0)
        assert "hosts.yaml" in line and "line" in line, line
        rounds = value(m.scrape(), "portscan_rounds_total") or 0
        s = m.until(lambda s: (value(s, "portscan_rounds_total") or 0) >= rounds + 2)
        assert value(s, "portscan_expectations_violated", host="old") == 0  # still monitored
        assert value(s, "portscan_round_errors_total") == 0

        inventory(inv, {"new": host("127.0.0.1", [port])})
        m.proc.send_signal(signal.SIGHUP)
        s = m.until(lambda s: value(s, "portscan_expectations_violated", host="new") == 0)
        assert {labels["host"] for labels in names(s, "portscan_port_open")} == {"new"}
        assert len([x for x in m.lines if "reload failed" in x]) == 1
        assert m.stop()[0] == 0
    finally:
        sock.close()


def test_sigterm_stops_promptly_with_status_0(
        tmp_path: Path, monitors: Callable[..., Monitor]) -> None:
    shut = free_port()
    with stalled_port() as stalled:
        if stalled is None:
            pytest.skip("this kernel does not stall a full accept queue")
        # idle between rounds
        idle = inventory(tmp_path / "idle", {"web": host("127.0.0.1", [shut])})
        m = monitors(["-i", str(idle), "--listen", "127.0.0.1:0", "--interval", "30"], tmp_path)
        m.serving()
        m.until(lambda s: value(s, "portscan_rounds_total") == 1)
        status, took = m.stop(timeout=60)
        # it did not wait for the next round, 30 s away
        assert status == 0 and took < 30, (status, took, m.lines)

        # in the middle of a round that would take 20 s
        slow = inventory(tmp_path / "slow", {"web": host("127.0.0.1", [shut, stalled],
                                                         timeout=20, retries=0)})
        m = monitors(["-i", str(slow), "--listen", "127.0.0.1:0", "--interval", "30"], tmp_path)
        m.serving()
        time.sleep(1)
        assert value(m.scrape(), "portscan_rounds_total") == 0  # the first is still running
        status, took = m.stop(timeout=60)
        # it abandoned the round instead of waiting out its 20 s try
        assert status == 0 and took < 20, (status, took, m.lines)
        assert "abandoned" in m.lines[-1]


def test_a_long_round_delays_the_next_instead_of_stacking(
        tmp_path: Path, monitors: Callable[..., Monitor]) -> None:
    shut = free_port()
    with stalled_port() as stalled:
        if stalled is None:
            pytest.skip("this kernel does not stall a full accept queue")
        inv = inventory(tmp_path / "inv", {"web": host("127.0.0.1", [shut, stalled],
                                                       timeout=0.8, retries=0)})
        m = monitors(["-i", str(inv), "--listen", "127.0.0.1:0", "--interval", "0.1"], tmp_path)
        m.serving()
        ends: dict[float, float] = {}  # round end -> its duration
        deadline = time.monotonic() + 30
        while len(ends) < 4 and time.monotonic() < deadline:
            s = m.scrape()
            end = value(s, "portscan_last_round_timestamp_seconds")
            took = value(s, "portscan_scan_duration_seconds")
            if end is not None and took is not None:
                ends[end] = took
            time.sleep(0.05)
        assert len(ends) >= 4, m.lines
        times = sorted(ends)
        for before, after in itertools.pairwise(times):
            assert ends[after] >= 0.8  # the stalled port's timeout: a long round
            # a round that began before the previous one ended would end sooner than this
            assert after - before >= ends[after] - 0.01, (before, after, ends)
        assert any("longer than --interval" in line for line in m.lines)
        assert m.stop()[0] == 0


def test_textfile_is_replaced_by_rename_and_always_parses(
        tmp_path: Path, monitors: Callable[..., Monitor]) -> None:
    sock = listening(0)
    port = sock.getsockname()[1]
    try:
        inv = inventory(tmp_path / "inv", {"web": host("127.0.0.1", [port])})
        out_dir = tmp_path / "textfiles"
        out_dir.mkdir()
        out = out_dir / "portscan.prom"
        m = monitors(["-i", str(inv), "--listen", "127.0.0.1:0", "--interval", "0.05",
                      "--textfile", str(out)], tmp_path)
        m.serving()
        inodes: set[int] = set()
        reads = 0
        deadline = time.monotonic() + 15  # rounds slow down on a loaded machine
        while time.monotonic() < deadline and not (reads > 20 and len(inodes) >= 5):
            try:
                with open(out, encoding="utf-8") as f:
                    inodes.add(os.fstat(f.fileno()).st_ino)
                    text = f.read()
            except FileNotFoundError:
                continue  # before the first round
            s = series(text)  # a torn file fails to parse or lacks the last family
            assert value(s, "portscan_port_open", host="web", address="127.0.0.1",
                         port=str(port)) == 1
            assert value(s, "portscan_round_errors_total") == 0
            reads += 1
        assert reads > 20
        assert len(inodes) >= 5  # a new file each round, renamed over the old one
        assert m.stop()[0] == 0
        assert [p.name for p in out_dir.iterdir()] == ["portscan.prom"]  # no temp files left
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # node_exporter may read it
    finally:
        sock.close()


def test_the_rounds_share_the_process_engine(tmp_path: Path) -> None:
    """In-process: every round's scans go to the one shared engine thread."""
    import threading as th

    from nornir_portscan.cli import build_parser
    from nornir_portscan.cli.monitor_daemon import Monitor as Daemon
    from nornir_portscan.engine.io.service import shared_engine

    sock = listening(0)
    try:
        inv = inventory(tmp_path / "inv", {f"h{i}": host("127.0.0.1", [sock.getsockname()[1]])
                                           for i in range(30)})
        args = build_parser().parse_args(["monitor", "-i", str(inv), "--interval", "1"])
        daemon = Daemon(args)
        assert daemon.run_round().status == 0
        engine = shared_engine()
        first = engine._thread
        assert daemon.run_round().status == 0
        assert engine._thread is first and first is not None and first.is_alive()
        assert [t for t in th.enumerate() if t.name == "portscan-engine"] == [first]
        snap = daemon.collector.snapshot
        assert len(snap.hosts) == 30 and snap.rounds == 2 and snap.errors == 0
    finally:
        sock.close()


# ---- a real Prometheus, in a namespace ----------------------------------------------------------

FETCH = textwrap.dedent("""
    import json, sys, urllib.request, urllib.error
    for url in sys.stdin:
        try:
            with urllib.request.urlopen(url.strip(), timeout=5) as r:
                out = {"status": r.status, "body": r.read().decode()}
        except (urllib.error.URLError, OSError) as exc:
            out = {"status": 0, "body": str(exc)}
        print(json.dumps(out), flush=True)
""")


class Fetcher:
    """HTTP GETs made from inside a namespace: one long-lived helper process there."""

    def __init__(self, ns: NetNS) -> None:
        self.proc = ns.popen(sys.executable, "-c", FETCH, stdin=subprocess.PIPE)

    def get(self, url: str) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(url + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        return int(out["status"]), str(out["body"])

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        status, body = self.get("http://127.0.0.1:9090/api/v1/query?" +
                                urllib.parse.urlencode(params))
        if status != 200:
            return []
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result


def _one(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.mark.netns
@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                    reason="needs Debian's prometheus package (.ci/run installs it)")
def test_prometheus_sees_a_port_close_within_two_rounds_and_the_alert_fires(
        tmp_path: Path, make_netns: Callable[[], NetNS],
        monitors: Callable[..., Monitor]) -> None:
    ns = make_netns()
    expected, unexpected, shut = 5000, 5002, 5001
    targets = ns.listen([("127.0.0.1", expected, None), ("127.0.0.1", unexpected, None)])
    inv = inventory(tmp_path / "inv", {"web": host("127.0.0.1", [expected, unexpected, shut],
                                                   expect={"open": [expected]})})
    # the default --listen: 127.0.0.1:9634 of the namespace's loopback
    m = monitors(["-i", str(inv), "--interval", "1"], tmp_path, ns)
    m.serving()
    listeners = ns.run("ss", "-ltnH").stdout
    assert re.search(rf"127\.0\.0\.1:{DEFAULT_PORT}\b", listeners), listeners
    assert not re.search(rf"(\*|0\.0\.0\.0|\[::\]):{DEFAULT_PORT}\b", listeners), listeners

    (tmp_path / "prometheus.yml").write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        rule_files: [rules.yml]
        scrape_configs:
          - job_name: portscan
            static_configs:
              - targets: ["127.0.0.1:{DEFAULT_PORT}"]
        """), encoding="utf-8")
    (tmp_path / "rules.yml").write_text(textwrap.dedent("""
        groups:
          - name: portscan
            rules:
              - alert: PortscanExpectationViolated
                expr: portscan_expectations_violated > 0
        """), encoding="utf-8")
    prometheus = ns.popen(PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          "--web.listen-address=127.0.0.1:9090", cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fetch = Fetcher(ns)

    def poll(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            assert prometheus.poll() is None, "prometheus exited"
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never saw {what}; monitor stderr: {m.lines}")

    port_open = f'portscan_port_open{{host="web",port="{expected}"}}'
    poll("the expected port open", lambda: _one(fetch.query(port_open)) == 1)
    assert _one(fetch.query(f'portscan_port_open{{port="{unexpected}"}}')) == 1
    assert fetch.query(f'portscan_port_open{{port="{shut}"}}') == []  # closed, unexpected
    assert fetch.query('ALERTS{alertname="PortscanExpectationViolated"}') == []

    status, body = fetch.get(f"http://127.0.0.1:{DEFAULT_PORT}/metrics")
    assert status == 200
    before = value(series(body), "portscan_rounds_total")
    assert before is not None
    targets.kill()
    targets.wait(timeout=5)

    def closed() -> float | None:
        at = time.time()
        if _one(fetch.query(port_open, at)) != 0:
            return None
        return _one(fetch.query("portscan_rounds_total", at))

    rounds = poll("the port closed", closed)
    # the round running when it closed may have seen it open; the one after cannot
    assert rounds <= before + 2, (before, rounds)
    # the same scrape: a closed port no expectation names has no series any more
    assert fetch.query(f'portscan_port_open{{port="{unexpected}"}}') == []
    state = fetch.query(f'portscan_port_state{{host="web",port="{expected}"}}')
    assert [r["metric"]["state"] + "/" + r["metric"]["reason"] for r in state] == \
        ["closed/conn-refused"]

    def firing() -> list[dict[str, Any]]:
        status, body = fetch.get("http://127.0.0.1:9090/api/v1/alerts")
        alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"] if status == 200 \
            else []
        return [a for a in alerts if a["labels"].get("alertname") ==
                "PortscanExpectationViolated" and a["state"] == "firing"]

    alerts = poll("the alert firing", firing)
    assert [a["labels"]["host"] for a in alerts] == ["web"]
    assert float(alerts[0]["value"]) == 1
    assert m.stop()[0] == 0


def test_bad_usage_is_one_line_and_status_2(tmp_path: Path) -> None:
    taken = listening(0)
    try:
        inv = inventory(tmp_path / "inv", {"web": host("127.0.0.1", [22])})
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "hosts.yaml").write_text("web: [unclosed\n", encoding="utf-8")
        cases = {
            ("-i", str(inv), "--listen", ":9634"): "names no address",
            ("-i", str(inv), "--interval", "0"): "must be greater than 0",
            ("-i", str(inv), "--textfile", str(tmp_path / "missing" / "x.prom")):
                "does not exist",
            ("-i", str(inv), "--listen", f"127.0.0.1:{taken.getsockname()[1]}"):
                "cannot listen on 127.0.0.1:",
            ("-i", str(broken), "--once"): "hosts.yaml: line 2",
        }
        for args, message in cases.items():
            done = subprocess.run([sys.executable, "-m", "nornir_portscan", "monitor", *args],
                                  capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            lines = [x for x in done.stderr.splitlines()
                     if x.strip() and not x.startswith("usage:") and not x.startswith("  ")]
            assert done.returncode == 2, (args, done.stderr)
            assert len(lines) == 1 and message in lines[0], (args, done.stderr)
            assert "Traceback" not in done.stderr
    finally:
        taken.close()
