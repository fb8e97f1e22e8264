"""``nornir-portscan run`` as a user runs it: ``python -m nornir_portscan run`` in a subprocess.

Fixture inventories are written to tmp_path per test, around real listeners this
module opens on 127.0.0.1 (port 0, so the kernel picks). Network rule: every
packet goes to 127.0.0.0/8 or ::1; no test names a host that needs DNS.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import stalled_port, subnet_inventory
from netns import NetNS

REPO = Path(__file__).resolve().parents[1]
NMAP_DTD = Path("/usr/share/nmap/nmap.dtd")
JUNIT_XSD = Path(__file__).parent / "data" / "junit.xsd"


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "nornir_portscan", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


#: The run's summary line: the table's last line, and stderr's when the report is a file
RUN_SUMMARY = re.compile(r"^\d+ hosts?, \d+ probes? in [\d.]+ s: .+; (no violations|.*violation)")


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """Status 2's contract: one error line on stderr, no traceback anywhere. A run that
    still wrote a report to a file says first, in its summary line, what that report holds."""
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if len(lines) == 2:
        assert RUN_SUMMARY.match(lines.pop(0)), done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nornir-portscan: error: "), lines[0]
    return lines[0]


# ---- loopback ports and fixture inventories ---------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


@pytest.fixture
def open_port(sockets: list[socket.socket]) -> Callable[..., int]:
    """``open_port(host)`` -> a port with a real listener (the kernel completes handshakes)."""
    def make(host: str = "127.0.0.1") -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sock.listen(64)
        sockets.append(sock)
        port: int = sock.getsockname()[1]
        return port
    return make


@pytest.fixture
def bound_port(sockets: list[socket.socket]) -> Callable[..., socket.socket]:
    """``bound_port(host)`` -> a bound, not listening socket: its port refuses until
    ``.listen()`` is called on it, and nothing else can take it meanwhile."""
    def make(host: str = "127.0.0.1") -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sockets.append(sock)
        return sock
    return make


def write_inventory(directory: Path, config: bool = True, **files: str) -> Path:
    """hosts/groups/subnets files as given, plus a config.yaml with absolute paths."""
    directory.mkdir(parents=True, exist_ok=True)
    files.setdefault("groups", "core: {}\nedge: {}\n")
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    if config:
        options = "".join(f"    {key}: {directory / (name + '.yaml')}\n"
                          for key, name in (("host_file", "hosts"), ("group_file", "groups"),
                                            ("subnet_file", "subnets"))
                          if (directory / f"{name}.yaml").exists())
        (directory / "config.yaml").write_text(
            "inventory:\n  plugin: PortscanInventory\n  options:\n" + options
            + "runner:\n  plugin: threaded\n  options:\n    num_workers: 4\n", encoding="utf-8")
    return directory


@pytest.fixture
def lab(tmp_path: Path, open_port: Callable[..., int],
        bound_port: Callable[..., socket.socket]) -> dict[str, Any]:
    """Two hosts whose expectations hold: web (a listener open, 23 not open) and db."""
    web = open_port()
    db_closed = bound_port("127.0.0.2").getsockname()[1]
    hosts = f"""\
web:
  hostname: 127.0.0.1
  groups: [core]
  data:
    portscan:
      ports: [{web}, 23]
      expect: {{open: [{web}], not_open: [23]}}
db:
  hostname: 127.0.0.2
  groups: [edge]
  data:
    portscan:
      ports: [{db_closed}]
      expect: {{not_open: [{db_closed}]}}
"""
    directory = write_inventory(tmp_path / "inv", hosts=hosts)
    return {"dir": directory, "config": directory / "config.yaml", "web": web,
            "db_closed": db_closed, "hosts_text": hosts}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


# ---- where the inventory comes from -------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_no_arguments_runs_the_shipped_inventory() -> None:
    if not _ipv6_loopback():
        pytest.skip("::1 is not usable here, and the shipped inventory scans it")
    done = run(cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("localhost-v4", "localhost-v6", "loopback-lab/127.0.0.2"):
        assert name in done.stdout
    # the subnet's last host, by name or as the end of a range of quiet hosts
    assert re.search(r"loopback-lab/127\.0\.0\.(6|2-6)\b", done.stdout), done.stdout
    assert "loopback-lab/127.0.0.1" not in done.stdout  # the known host keeps that address
    assert "closed]" not in done.stdout  # no per-host noise of closed-port counts
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("7 hosts, ") and "no violations" in last, last
    assert done.stderr == ""  # stderr is not a terminal: no progress bar


def test_no_arguments_elsewhere_names_the_missing_default(tmp_path: Path) -> None:
    done = run(cwd=tmp_path)
    assert done.returncode == 2
    assert "inventory/config.yaml not found" in error_line(done)


def test_inventory_directory(lab: dict[str, Any], tmp_path: Path) -> None:
    done = run("-i", str(lab["dir"]), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"web  ok  checked: {lab['web']} open, 23 not open" in lines
    assert f"ok, up, no open port, checked {lab['db_closed']} not open (1): db" in lines
    assert any(line.split()[:4] == [str(lab["web"]), "open", "-", "syn-ack"] for line in lines)
    assert lines[-1].startswith("2 hosts, 3 probes") and "no violations" in lines[-1]


def test_config_file(lab: dict[str, Any], tmp_path: Path) -> None:
    done = run("-c", str(lab["config"]), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert sorted(doc["hosts"]) == ["db", "web"]
    assert doc["hosts"]["web"]["result"]["open"] == {"127.0.0.1": [lab["web"]]}
    assert doc["options"]["config"] == str(lab["config"])
    assert doc["summary"]["violations"] == 0 and not doc["interrupted"]


@pytest.mark.parametrize(("filters", "kept"), [
    (["groups__contains=core"], ["web"]),
    (["name=db"], ["db"]),
    (["groups__contains=edge", "hostname=127.0.0.2"], ["db"]),
])
def test_filter(lab: dict[str, Any], tmp_path: Path, filters: list[str],
                kept: list[str]) -> None:
    args = [a for f in filters for a in ("--filter", f)]
    done = run("-i", str(lab["dir"]), *args, "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["hosts"]) == kept


def test_filter_leaving_no_host_is_a_usage_error(lab: dict[str, Any], tmp_path: Path) -> None:
    done = run("-i", str(lab["dir"]), "--filter", "name=nobody", cwd=tmp_path)
    assert done.returncode == 2
    assert "no hosts to scan" in error_line(done)


# ---- exit status ---------------------------------------------------------------------------------


def test_violated_expectation_exits_1_and_shows_it(
        tmp_path: Path, open_port: Callable[..., int],
        bound_port: Callable[..., socket.socket]) -> None:
    web = open_port()
    dead = bound_port().getsockname()[1]
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
web:
  hostname: 127.0.0.1
  data:
    portscan:
      ports: [{web}, 23]
      expect: {{open: [{web}, {dead}], not_open: [23]}}
""")
    done = run("-i", "inv", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "web  VIOLATED" in done.stdout
    assert f"! 127.0.0.1:{dead} expected open, got closed (conn-refused)" in done.stdout
    # the expectation that holds is not listed (the full endpoint: a random port may end in 23)
    assert "127.0.0.1:23 expected" not in done.stdout
    assert "1 violation(s)" in done.stdout.splitlines()[-1]
    assert done.stderr == ""


def _subnets(text: str) -> dict[str, str]:
    return {"subnets": text}


BROKEN = {
    "malformed-hosts": ({"hosts": "web:\n  hostname: [127.0.0.1\n"},
                        ["hosts.yaml", "line 3", "malformed YAML"]),
    "unknown-subnet-key": (_subnets("lab:\n  subnet: 127.0.0.8/30\n  colour: red\n"),
                           ["subnets.yaml", "'lab'", "'colour'", "'red'"]),
    "bad-cidr": (_subnets("lab:\n  subnet: 127.0.0.0/33\n"),
                 ["subnets.yaml", "'lab'", "'127.0.0.0/33'"]),
    "unknown-group": ({"hosts": "web:\n  hostname: 127.0.0.1\n  groups: [cores]\n"},
                      ["hosts.yaml", "'web'", "'cores'"]),
}


@pytest.mark.parametrize("how", ["-i", "-c"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inventory_is_one_line_and_exit_2(tmp_path: Path, case: str, how: str) -> None:
    files, named = BROKEN[case]
    directory = write_inventory(tmp_path / "inv", True, **files)
    target = directory if how == "-i" else directory / "config.yaml"
    done = run(how, str(target), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    line = error_line(done)
    for text in named:
        assert text in line, line
    assert done.stdout == ""  # nothing was scanned


def test_missing_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run("-c", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{tmp_path / 'nope.yaml'} not found" in error_line(done)


def test_malformed_config_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("inventory:\n  plugin: [PortscanInventory\n")
    done = run("-c", "config.yaml", cwd=tmp_path)
    assert done.returncode == 2
    line = error_line(done)
    assert "config.yaml" in line and "line 3" in line and "malformed YAML" in line


def test_broken_runner_config_is_one_line(lab: dict[str, Any], tmp_path: Path) -> None:
    config = lab["config"].read_text().replace("num_workers: 4", "num_workers: 0")
    (tmp_path / "zero.yaml").write_text(config)
    done = run("-c", "zero.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert error_line(done) == ("nornir-portscan: error: zero.yaml: runner.options.num_workers: "
                                "must be 1 or more, got 0")


RECORDING_RUNNER = """\
import json, sys, threading
from nornir.core.plugins.runners import RunnersPluginRegister
from nornir.plugins.runners import ThreadedRunner
from nornir_portscan.cli import main

class Recording(ThreadedRunner):
    def run(self, task, hosts):
        result = super().run(task, hosts)
        with open(sys.argv[1], "w") as f:
            json.dump({"hosts": sorted(h.name for h in hosts),
                       "workers": self.num_workers}, f)
        return result

RunnersPluginRegister.register("recording", Recording)
sys.exit(main(["run", *sys.argv[2:]]))
"""


def test_threaded_runner_runs_on_one_thread_and_any_other_runner_as_configured(
        lab: dict[str, Any], tmp_path: Path) -> None:
    """Every host's scan runs at once, so ``run`` takes its hosts on one thread, as their
    scans finish (PortscanRunner), where the config names nornir's threaded runner; a
    runner of the user's own (a subclass included) is the one that runs the hosts."""
    from nornir_portscan.cli.inventory import load_nornir
    from nornir_portscan.plugins.runner import PortscanRunner

    assert isinstance(load_nornir(str(lab["config"]), None).runner, PortscanRunner)
    # the report is the same as with threads: both hosts, expectations checked
    done = run("-c", str(lab["config"]), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert sorted(doc["hosts"]) == ["db", "web"]
    assert doc["hosts"]["web"]["result"]["open"] == {"127.0.0.1": [lab["web"]]}

    config = lab["config"].read_text().replace("plugin: threaded", "plugin: recording")
    (tmp_path / "own.yaml").write_text(config)
    script = tmp_path / "own_runner.py"
    script.write_text(RECORDING_RUNNER)
    seen = tmp_path / "seen.json"
    done = subprocess.run([sys.executable, str(script), str(seen), "-c", "own.yaml",
                           "--format", "json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(seen.read_text()) == {"hosts": ["db", "web"], "workers": 4}
    assert sorted(json.loads(done.stdout)["hosts"]) == ["db", "web"]


def test_a_run_called_in_process_hands_back_the_garbage_collector(
        lab: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` pauses the collector while it builds Results, and the program freezes the
    heap on its way out (cli.console): a process that calls ``main`` and goes on, a
    runbook or a test, gets its collector back as it was, after a failed run too."""
    import gc

    from nornir_portscan.cli import main

    monkeypatch.chdir(tmp_path)
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    assert main(["run", "-c", str(lab["config"]), "--format", "json", "-o", "doc.json",
                 "--no-progress"]) == 0
    assert load(tmp_path / "doc.json")["hosts"]["web"]["result"]["open"] == {
        "127.0.0.1": [lab["web"]]}
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    with pytest.raises(SystemExit):  # a bad --ports is exit 2, after the pause began
        main(["run", "-c", str(lab["config"]), "-p", "99999", "--no-progress"])
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_bad_ports_in_one_host_fail_that_host_only(lab: dict[str, Any], tmp_path: Path) -> None:
    hosts = lab["hosts_text"] + "bad:\n  hostname: 127.0.0.3\n  data:\n    portscan:\n" \
                                "      ports: [22, 0]\n"
    write_inventory(lab["dir"], hosts=hosts)
    report = tmp_path / "report.json"
    done = run("-i", str(lab["dir"]), "--format", "json", "-o", str(report), cwd=tmp_path)
    assert done.returncode == 2
    line = error_line(done)
    assert "'bad'" in line and "portscan.ports" in line and "[22, 0]" in line
    doc = load(report)
    assert sorted(doc["hosts"]) == ["bad", "db", "web"]
    assert doc["hosts"]["bad"]["failed"] and doc["hosts"]["bad"]["result"] is None
    assert "out of range" in doc["hosts"]["bad"]["error"]
    assert doc["hosts"]["web"]["result"]["open"] == {"127.0.0.1": [lab["web"]]}
    assert doc["hosts"]["db"]["result"]["summary"]["closed"] == 1
    assert doc["summary"]["failed"] == 1


def test_bad_ports_argument_is_one_line_not_one_per_host(lab: dict[str, Any],
                                                         tmp_path: Path) -> None:
    done = run("-i", str(lab["dir"]), "-p", "22,0", cwd=tmp_path)
    assert done.returncode == 2
    assert "--ports '22,0'" in error_line(done)
    assert done.stdout == ""


def test_allow_refuses_a_host_outside_and_scans_the_rest(lab: dict[str, Any],
                                                        tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run("-i", str(lab["dir"]), "--allow", "127.0.0.1/32", "--format", "json", "-o",
               str(report), cwd=tmp_path)
    assert done.returncode == 2
    line = error_line(done)
    assert "'db'" in line and "127.0.0.2" in line and "outside the allowed networks" in line
    doc = load(report)
    assert doc["hosts"]["web"]["result"]["open"] == {"127.0.0.1": [lab["web"]]}
    assert doc["hosts"]["db"]["result"] is None and doc["summary"]["probes"] == 2


def test_bad_allow_network_is_one_line(lab: dict[str, Any], tmp_path: Path) -> None:
    done = run("-i", str(lab["dir"]), "--allow", "127.0.0.0/33", cwd=tmp_path)
    assert done.returncode == 2
    assert "'127.0.0.0/33'" in error_line(done)
    assert done.stdout == ""


@pytest.mark.parametrize(("content", "named"), [
    ("not json", "is not JSON"),
    ('{"a": 1}', "no 'hosts'"),
    ('{"hosts": {"web": {"result": {"targets": {"127.0.0.1": {"ports": [22]}}}}}}',
     "hosts.web.result.targets.127.0.0.1.ports"),
    ('{"hosts": [1, 2]}', "no 'hosts' mapping"),
])
def test_bad_baseline_is_one_line(lab: dict[str, Any], tmp_path: Path, content: str,
                                  named: str) -> None:
    (tmp_path / "old.json").write_text(content)
    done = run("-i", str(lab["dir"]), "--baseline", "old.json", cwd=tmp_path)
    assert done.returncode == 2
    line = error_line(done)
    assert "old.json" in line and named in line, line


def test_a_crashing_task_is_one_line_without_traceback(tmp_path: Path,
                                                       open_port: Callable[..., int]) -> None:
    """Whatever a host's task raises, nornir keeps the traceback as its result: the run must
    report one line, not the traceback (here: a baseline in inventory data of a shape the
    comparison does not expect)."""
    port = open_port()
    baseline = "{hosts: {web: {result: {targets: [1]}}}}"
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
web:
  hostname: 127.0.0.1
  data: {{portscan: {{ports: [{port}], baseline: {baseline}}}}}
""")
    done = run("-i", "inv", cwd=tmp_path)
    assert done.returncode in (2, 3), done.stdout + done.stderr
    assert "'web'" in error_line(done)
    assert "Traceback" not in done.stdout


def test_inventory_baseline_of_the_wrong_shape_is_an_input_error(
        tmp_path: Path, open_port: Callable[..., int]) -> None:
    port = open_port()
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
web:
  hostname: 127.0.0.1
  data: {{portscan: {{ports: [{port}], baseline: {{hosts: 5}}}}}}
""")
    done = run("-i", "inv", cwd=tmp_path)
    assert done.returncode == 2
    line = error_line(done)
    assert "baseline" in line and "AttributeError" not in line


# ---- formats -------------------------------------------------------------------------------------


def _xmllint(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: apt-get install libxml2-utils")
    return subprocess.run(["xmllint", "--noout", *args], capture_output=True, text=True,
                          timeout=30)


def _check_json(path: Path, lab: dict[str, Any]) -> None:
    doc = load(path)
    assert doc["tool"] == "nornir-portscan" and sorted(doc["hosts"]) == ["db", "web"]
    assert doc["summary"]["probes"] == 3


def _check_jsonl(path: Path, lab: dict[str, Any]) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3
    got = {(r["nornir_host"], r["host"], r["port"]): r["state"] for r in rows}
    assert got == {("web", "127.0.0.1", lab["web"]): "open", ("web", "127.0.0.1", 23): "closed",
                   ("db", "127.0.0.2", lab["db_closed"]): "closed"}


def _check_csv(path: Path, lab: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert list(rows[0]) == ["nornir_host", "host", "name", "port", "state", "reason", "rtt_ms",
                             "attempts", "banner", "anomaly"]
    assert len(rows) == 3
    assert {(r["nornir_host"], r["port"], r["state"]) for r in rows if r["state"] == "open"} \
        == {("web", str(lab["web"]), "open")}


def _check_junit(path: Path, lab: dict[str, Any]) -> None:
    done = _xmllint("--schema", str(JUNIT_XSD), str(path))
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert 'tests="2" failures="0" errors="0"' in text
    assert 'name="web"' in text and 'name="db"' in text


def _check_nmap_xml(path: Path, lab: dict[str, Any]) -> None:
    if not NMAP_DTD.exists():
        pytest.skip(f"{NMAP_DTD} missing: apt-get install nmap (it ships nmap's DTD)")
    done = _xmllint("--dtdvalid", str(NMAP_DTD), str(path))
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert f'portid="{lab["web"]}"><state state="open" reason="syn-ack"' in text
    assert '<address addr="127.0.0.2" addrtype="ipv4"/>' in text
    try:
        from libnmap.parser import NmapParser  # type: ignore[import-untyped]
    except ImportError:
        return
    report = NmapParser.parse_fromstring(text)
    ports = {(h.address, p) for h in report.hosts for p in h.get_open_ports()}
    assert ports == {("127.0.0.1", (lab["web"], "tcp"))}


def _check_html(path: Path, lab: dict[str, Any]) -> None:
    text = path.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert "<h2>web</h2>" in text and "<h2>db</h2>" in text
    assert str(lab["web"]) in text
    assert "http://" not in text and "https://" not in text  # fetches nothing


CHECKS: dict[str, Callable[[Path, dict[str, Any]], None]] = {
    "json": _check_json, "jsonl": _check_jsonl, "csv": _check_csv, "junit": _check_junit,
    "nmap-xml": _check_nmap_xml, "html": _check_html,
}


@pytest.mark.parametrize("fmt", sorted(CHECKS))
def test_format_to_file(lab: dict[str, Any], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out" / f"report.{fmt}"
    out.parent.mkdir()
    done = run("-i", str(lab["dir"]), "--format", fmt, "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    CHECKS[fmt](out, lab)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no .portscan-* left over


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_machine_formats_on_stdout_are_pure(lab: dict[str, Any], tmp_path: Path,
                                            fmt: str) -> None:
    done = run("-i", str(lab["dir"]), "--format", fmt, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "stdout"
    out.write_text(done.stdout)
    CHECKS[fmt](out, lab)


def test_output_replaces_a_file_atomically(lab: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "reports" / "report.xml"
    out.parent.mkdir()
    out.write_text("old report\n")
    for fmt in ("junit", "nmap-xml"):
        done = run("-i", str(lab["dir"]), "--format", fmt, "-o", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert out.read_text().startswith("<?xml")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.xml"]


def test_output_file_gets_the_usual_permissions(lab: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = run("-i", str(lab["dir"]), "--format", "json", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


# ---- what the table says -------------------------------------------------------------------------


def test_table_shows_what_matters_and_lists_quiet_hosts_together(
        tmp_path: Path, open_port: Callable[..., int],
        bound_port: Callable[..., socket.socket]) -> None:
    """An open port, a violation, and six hosts with nothing to say: those six are one line,
    a range of their names, not six lines of closed-port counts."""
    web = open_port()
    shut = bound_port().getsockname()[1]
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
web:
  hostname: 127.0.0.1
  data: {{portscan: {{ports: [{web}, {shut}], expect: {{open: [{web}]}}}}}}
bad:
  hostname: 127.0.0.3
  data: {{portscan: {{ports: [{shut}], expect: {{open: [{shut}]}}}}}}
quiet:
  hostname: 127.0.0.4
  data: {{portscan: {{ports: [{shut}], expect: {{not_open: [{shut}, 23], only_open: [{shut}]}}}}}}
""", subnets=f"""\
lab:
  subnet: 127.0.2.0/29
  data: {{portscan: {{ports: [{shut}]}}}}
""")
    done = run("-i", "inv", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # bad's expectation
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"bad  VIOLATED  checked: {shut} open",
                         "  up, no open port (1): 127.0.0.3",
                         f"  ! 127.0.0.3:{shut} expected open, got closed (conn-refused)"]
    # a host that passed says what it was checked for, quiet hosts too (grouped by it)
    assert lines[3:5] == [f"web  ok  checked: {web} open", "  127.0.0.1  up: 1 open, 1 closed"]
    assert lines[5].split() == ["PORT", "STATE", "SERVICE", "REASON", "RTT", "BANNER"]
    assert lines[6].split()[:4] == [str(web), "open", "-", "syn-ack"]
    assert lines[7] == "ok, up, no open port (6): lab/127.0.2.1-6"
    assert lines[8] == (f"ok, up, no open port, checked {min(shut, 23)},{max(shut, 23)} not "
                        f"open, only {shut} open (1): quiet")
    assert lines[9] == ("9 hosts, 11 probes in " + lines[9].split(" in ")[1].split(" s:")[0]
                        + " s: 1 open, 10 closed; 1 violation(s), 1 host(s) failed")
    assert len(lines) == 10


@pytest.mark.parametrize("fmt", ["table", "jsonl", "junit"])
def test_a_report_in_a_file_prints_its_summary_on_stderr(lab: dict[str, Any], tmp_path: Path,
                                                         fmt: str) -> None:
    """As ``scan -o`` does: the report in the file, its one-line summary on stderr."""
    done = run("-i", str(lab["dir"]), "--format", fmt, "-o", "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and RUN_SUMMARY.match(done.stderr)
    if fmt == "table":  # the very line the table ends with
        assert (tmp_path / "report").read_text().splitlines()[-1] == done.stderr.strip()
    rows = run("-i", str(lab["dir"]), "--format", "jsonl", cwd=tmp_path)
    assert len(rows.stdout.splitlines()) == 3 and RUN_SUMMARY.match(rows.stderr)
    table = run("-i", str(lab["dir"]), cwd=tmp_path)
    assert table.stderr == ""  # the table on stdout already ends with it


# ---- scan and run write the same rows ---------------------------------------------------------


def _scan_rows(fmt: str, ports: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "nornir_portscan", "scan", "localhost",
                           "127.0.0.2", "-p", ports, "--banners", "--format", fmt],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_scan_and_run_write_the_same_rows(tmp_path: Path, fmt: str,
                                          listener: Callable[..., int],
                                          bound_port: Callable[..., socket.socket]) -> None:
    """The same loopback targets and ports through ``scan`` and through ``run``: the same
    keys in the same order, spaced the same, ``attempts`` included; a run's row only adds
    its nornir host, first. RTTs are measured twice, so only their form is compared."""
    greeter = listener(banner=b"SSH-2.0-same \"rows\"\r\n")
    silent = listener()
    shut = bound_port().getsockname()[1]
    ports = ",".join(map(str, sorted([greeter, silent, shut, 23])))
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
lo:
  data: {{portscan: {{targets: [localhost, 127.0.0.2], ports: "{ports}", banners: true}}}}
""")
    ran = run("-i", "inv", "--format", fmt, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    scanned = _scan_rows(fmt, ports, tmp_path)
    rtt = re.compile(r'(?<="rtt_ms":)[0-9.]+' if fmt == "jsonl" else r"(?<=,)[0-9]+\.[0-9]{3}(?=,)")
    scan_lines = [rtt.sub("<rtt>", line) for line in scanned.splitlines()]
    lead = '{"nornir_host":"lo",' if fmt == "jsonl" else "lo,"
    run_lines = []
    for line in ran.stdout.splitlines()[1 if fmt == "csv" else 0:]:
        assert line.startswith(lead), line
        run_lines.append(rtt.sub("<rtt>", ("{" if fmt == "jsonl" else "") + line[len(lead):]))
    if fmt == "csv":
        assert ran.stdout.splitlines()[0] == "nornir_host," + scan_lines.pop(0)
    assert len(run_lines) == len(scan_lines) >= 2 * 4  # every (address, port) once
    assert sorted(run_lines) == sorted(scan_lines)
    # what the comparison stands on: the banner, a name, attempts and both states are there
    text = "\n".join(scan_lines)
    assert "SSH-2.0-same" in text and "localhost" in text and "conn-refused" in text
    assert ('"attempts":1' if fmt == "jsonl" else ",1,") in text


# ---- baselines -----------------------------------------------------------------------------------


def test_save_then_baseline_shows_what_opened(tmp_path: Path, open_port: Callable[..., int],
                                              bound_port: Callable[..., socket.socket]) -> None:
    web = open_port()
    later = bound_port()
    port = later.getsockname()[1]
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
web:
  hostname: 127.0.0.1
  data:
    portscan:
      ports: [{web}, {port}, 23]
      expect: {{open: [{web}], not_open: [23]}}
""")
    first = run("-i", "inv", "--save", "audit-1.json", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert load(tmp_path / "audit-1.json")["hosts"]["web"]["result"]["open"] == {
        "127.0.0.1": [web]}

    later.listen(16)  # a new service appears between the two audits
    second = run("-i", "inv", "--baseline", "audit-1.json", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr  # expectations hold
    assert f"~ + 127.0.0.1:{port} opened" in second.stdout
    taken = load(tmp_path / "audit-1.json")["started"].replace("T", " ").replace("+00:00",
                                                                              " UTC")
    assert second.stdout.splitlines()[-1].endswith(
        f"1 host(s) changed since audit-1.json, {taken}")

    gated = run("-i", "inv", "--baseline", "audit-1.json", "--fail-on-change", "--format",
                "json", "--save", "audit-2.json", cwd=tmp_path)
    assert gated.returncode == 1
    entry = json.loads(gated.stdout)["hosts"]["web"]
    assert entry["changed"] and entry["result"]["diff"]["opened"] == {"127.0.0.1": [port]}
    assert load(tmp_path / "audit-2.json")["hosts"]["web"]["changed"]

    same = run("-i", "inv", "--baseline", "audit-2.json", "--fail-on-change", cwd=tmp_path)
    assert same.returncode == 0, same.stdout  # nothing moved since the second audit
    assert "~" not in same.stdout
    taken = load(tmp_path / "audit-2.json")["started"].replace("T", " ").replace("+00:00",
                                                                              " UTC")
    assert same.stdout.splitlines()[-1].endswith(f"; no violations, no change since "
                                                 f"audit-2.json, {taken}")


# ---- engine options, progress --------------------------------------------------------------------


def test_rate_caps_the_whole_run(tmp_path: Path, bound_port: Callable[..., socket.socket]) -> None:
    """--rate reaches the shared engine (120 probes at 100/s take over a second)."""
    port = bound_port().getsockname()[1]
    write_inventory(tmp_path / "inv", config=False, hosts=f"""\
a: {{hostname: 127.0.0.1, data: {{portscan: {{ports: "1-59,{port}"}}}}}}
b: {{hostname: 127.0.0.2, data: {{portscan: {{ports: "1-59,{port}"}}}}}}
""")
    done = run("-i", "inv", "--rate", "100", "--concurrency", "8", "--format", "json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["summary"]["probes"] == 120
    assert doc["elapsed_s"] >= 1.0, doc["elapsed_s"]
    assert doc["options"]["rate"] == 100 and doc["options"]["concurrency"] == 8


def test_progress_when_asked_even_without_a_terminal(lab: dict[str, Any],
                                                     tmp_path: Path) -> None:
    done = run("-i", str(lab["dir"]), "--progress", "-o", "report.txt", cwd=tmp_path)
    assert done.returncode == 0
    assert "probes 3/3" in done.stderr and "hosts 2/2" in done.stderr
    quiet = run("-i", str(lab["dir"]), "--no-progress", "-o", "report.txt", cwd=tmp_path)
    assert RUN_SUMMARY.match(quiet.stderr) and len(quiet.stderr.splitlines()) == 1  # no bar


# ---- interruption --------------------------------------------------------------------------------


def test_sigint_exits_130_and_writes_what_completed(tmp_path: Path,
                                                    open_port: Callable[..., int]) -> None:
    web = open_port()
    with stalled_port() as slow:
        if slow is None:
            pytest.skip("this kernel answers SYNs to a full accept queue: no slow port")
        # slow first: the run takes its hosts in order (nornir's serial runner), so the
        # fast host's scan finishes while its task waits behind the slow one's
        write_inventory(tmp_path / "inv", config=False, hosts=f"""\
slow: {{hostname: 127.0.0.1, data: {{portscan: {{ports: [{slow}]}}}}}}
fast: {{hostname: 127.0.0.1, data: {{portscan: {{ports: [{web}], expect: {{open: [{web}]}}}}}}}}
""")
        report = tmp_path / "report.json"
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "nornir_portscan", "run", "-i", "inv", "--timeout", "60",
             "--retries", "0", "--format", "json", "-o", str(report)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            time.sleep(3)  # start-up, then the fast host completes in milliseconds
            assert proc.poll() is None, proc.communicate()
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    # it did not wait for the slow host's 60 s try
    assert time.monotonic() - started < 60
    assert "Traceback" not in err
    doc = load(report)
    assert doc["interrupted"] is True
    assert doc["hosts"]["fast"]["result"]["open"] == {"127.0.0.1": [web]}
    assert doc["hosts"]["slow"] == {"failed": False, "error": None, "result": None}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".portscan-")] == []


def test_sigint_while_nornir_queues_the_hosts_ends_the_run_at_once(
        tmp_path: Path, make_netns: Callable[[], NetNS]) -> None:
    """Ctrl-C while nornir's runner still queues a big inventory's hosts (the scan is
    already going): nornir joins its threads before the interrupt unwinds, and each
    host's task waited for its probes, so the run waited for them all to time out (120 s
    here, seen as 26 to 31 s with 20 s). The host tasks are let go instead."""
    ns = make_netns()
    ns.drop_syns_to("127.91.0.0/16")
    config = subnet_inventory(tmp_path / "inv", "127.91.0.0/18", "1", max_hosts=16382)
    report, stderr = tmp_path / "report.json", tmp_path / "stderr.txt"

    def default_ctrl_c() -> None:  # as a terminal's foreground job has it, whatever ours is
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(stderr, "w") as err_file:
        proc = ns.popen(sys.executable, "-m", "nornir_portscan", "run", "-c",
                        str(config), "--timeout", "120", "--retries", "0",
                        "--format", "json", "--no-progress", "-o", str(report), cwd=tmp_path,
                        stdout=subprocess.DEVNULL, stderr=err_file,
                        preexec_fn=default_ctrl_c)
    try:
        ns.wait_for_syn_sent()  # the run's plan is out; the runner queues 16,382 hosts
        with open(f"/proc/{proc.pid}/status") as f:  # to tell an ignored Ctrl-C from a hang
            masks = [line.strip() for line in f if line.startswith(("SigIgn", "SigCgt"))]
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit 150 s after SIGINT; signal masks {masks}; "
                                 f"stderr {stderr.read_text()[-500:]!r}") from None
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.read_text()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert took < 60, f"the run waited {took:.0f} s for probes it was told to drop"
    doc = load(report)
    assert doc["interrupted"] is True and len(doc["hosts"]) == 16382
    # hosts let go are not scanned, never failed: their probes had no outcome
    assert all(h["failed"] is False for h in doc["hosts"].values())


# ---- found while testing run, owned elsewhere ---------------------------------------------


def test_ipv6_violation_brackets_the_address(tmp_path: Path,
                                             bound_port: Callable[..., socket.socket]) -> None:
    if not _ipv6_loopback():
        pytest.skip("::1 is not usable here")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind(("::1", 0))
    port = sock.getsockname()[1]
    try:
        write_inventory(tmp_path / "inv", config=False, hosts=f"""\
v6: {{hostname: "::1", data: {{portscan: {{ports: [{port}], expect: {{open: [{port}]}}}}}}}}
""")
        done = run("-i", "inv", cwd=tmp_path)
    finally:
        sock.close()
    assert done.returncode == 1
    assert f"! [::1]:{port} expected open, got closed (conn-refused)" in done.stdout


def _netns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", *args], capture_output=True, text=True, timeout=30)


def test_run_where_ipv6_is_off_reports_the_address_promptly(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to build a namespace without IPv6")
    name = f"portscan-run-nov6-{os.getpid()}"
    if _netns("add", name).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        setup = _netns("exec", name, "sh", "-c", "ip link set lo up && "
                       "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && "
                       "echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6")
        if setup.returncode != 0:
            pytest.skip(f"cannot turn IPv6 off in a namespace: {setup.stderr.strip()}")
        write_inventory(tmp_path / "inv", config=False, hosts="""\
v4: {hostname: 127.0.0.1, data: {portscan: {ports: [23]}}}
v6: {hostname: "::1", data: {portscan: {ports: [23]}}}
""")
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-m",
                               "nornir_portscan", "run", "-i", str(tmp_path / "inv"),
                               "--format", "json"], capture_output=True, text=True, timeout=60)
    finally:
        _netns("del", name)
    assert "descriptors" not in done.stderr, done.stderr
    assert done.returncode != 3
    # promptly: connect() itself said the network is unreachable, at the first try (not a
    # timeout, nor retries)
    v6 = json.loads(done.stdout)["hosts"]["v6"]["result"]["targets"]["::1"]
    assert v6["status"] == "unreachable", v6
    assert v6["ports"]["23"]["reason"] == "net-unreach" and v6["ports"]["23"]["attempts"] == 1


def test_max_hosts_refuses_a_host_whose_targets_are_too_large(tmp_path: Path) -> None:
    write_inventory(tmp_path / "inv", config=False, hosts="""\
wide: {hostname: 127.0.0.1, data: {portscan: {targets: [127.0.0.0/28], ports: [23]}}}
narrow: {hostname: 127.0.0.1, data: {portscan: {ports: [23]}}}
""")
    refused = run("-i", "inv", "--max-hosts", "10", "--format", "json", "-o", "r.json",
                  cwd=tmp_path)
    assert refused.returncode == 2
    line = error_line(refused)
    assert "'wide'" in line and "14 addresses" in line and "Traceback" not in refused.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["hosts"]["narrow"]["failed"] is False  # the other host was scanned
    allowed = run("-i", "inv", "--max-hosts", "20", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
