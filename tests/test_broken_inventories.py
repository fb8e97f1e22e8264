"""Broken inventories (issue 14): a CI gate must never pass because something broken was
skipped. The cases are generated from the schema in broken_inventories.py.

Every case runs ``nornir-portscan run`` on a valid inventory of loopback hosts with one
thing broken, and must give: exit status 2; exactly one line on stderr, starting
``nornir-portscan: error:``, naming the file (and the entry, the key and the value where
there are some); no traceback and no Python internals; and, when the run went ahead (bad
``portscan`` data fails only the hosts that use it), every other host scanned and
reported. Broken input is status 2 even where another host's expectation failed too: the
gate's answer is incomplete, which is worse than a violation (status 1 is for valid input
whose expectations fail, as the control case shows).

Most cases run in this process through ``nornir_portscan.cli.main`` (fast); a fixed
sample also runs as a real process, and the inventory-file cases (all whole-file ones, a
sample of the rest) also run through ``-i DIR``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broken_inventories import (
    CASES,
    CONFIG_ACCEPTS,
    CONNECTION_ACCEPTS,
    ELEMENT_ACCEPTS,
    EXPANDED,
    PLUGIN_OPTION_ACCEPTS,
    PORTSCAN_ACCEPTS,
    SUBNET_ACCEPTS,
    USER_DEFINED_ACCEPTS,
    Case,
    set_path,
    write_case,
)

from nornir_portscan.cli import main
from nornir_portscan.cli.inventory import config_sections
from nornir_portscan.plugins.inventory import subnets
from nornir_portscan.plugins.tasks import options


def test_every_key_of_the_code_has_a_statement_of_what_it_accepts() -> None:
    """A key added to the code without a line in ACCEPTS would go ungenerated."""
    assert set(ELEMENT_ACCEPTS) == set(subnets.ELEMENT_KEYS)
    assert set(SUBNET_ACCEPTS) == set(subnets.SUBNET_KEYS) | {"hostname"}
    assert set(CONNECTION_ACCEPTS) == set(subnets.CONNECTION_KEYS)
    assert set(PORTSCAN_ACCEPTS) == set(options.KEYS)
    assert set(USER_DEFINED_ACCEPTS) == set(options.CONFIG_KEYS)
    assert set(CONFIG_ACCEPTS) == {f"{s}.{k}" for s, keys in config_sections().items()
                                   for k in keys}
    import inspect

    params = set(inspect.signature(subnets.PortscanInventory).parameters)
    assert set(PLUGIN_OPTION_ACCEPTS) == params
    assert len(CASES) > 500, len(CASES)


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None


#: run -o FILE's own summary on stderr (as scan -o prints one): a report, not a problem.
SUMMARY = re.compile(r"^\d+ hosts?, \d+ probes? in .*\n?", flags=re.M)


def problems(stderr: str) -> str:
    """stderr without run's summary line: what is left must be the problem lines."""
    return SUMMARY.sub("", stderr)


def run_in_process(argv: list[str], report: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["run", *argv, "--format", "json", "-o", str(report),
                           "--no-progress"])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    doc = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return Outcome(status, out.getvalue(), problems(err.getvalue()), doc)


def run_process(argv: list[str], report: Path, cwd: Path) -> Outcome:
    done = subprocess.run([sys.executable, "-m", "nornir_portscan", "run", *argv, "--format",
                           "json", "-o", str(report), "--no-progress"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    doc = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return Outcome(done.returncode, done.stdout, problems(done.stderr), doc)


#: What must never reach a person: Python's words, not ours.
INTERNALS = re.compile(r"Traceback|object has no attribute|unexpected keyword|NoneType|<class|"
                       r"'\w+' object|Error:|Errno|__\w+__|is not a mapping|"
                       r"not subscriptable|not iterable|KeyError|codec can't")


def check_broken(case: Case, outcome: Outcome, d: Path) -> str:
    """The contract for broken input; returns the error line."""
    everything = outcome.stdout + outcome.stderr
    assert outcome.status == 2, f"{case.id}: status {outcome.status}\n{everything[-2000:]}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case.id}: one line per problem, got:\n{outcome.stderr}"
    line = lines[0]
    assert line.startswith("nornir-portscan: error: "), line
    assert not INTERNALS.search(line), f"{case.id}: Python internals in: {line}"
    assert "Traceback" not in everything
    if case.shape == "missing" and case.file == "config":
        assert str(d / "config.yaml") in line, line
    elif case.shape or case.file == "config":
        assert str(d / "config.yaml") in line or (
            case.shape and str(d) in line), f"{case.id}: config file not named: {line}"
        if case.shape and case.file != "config":
            assert str(d / f"{case.file}.yaml") in line, line
    else:
        assert str(d / f"{case.named}.yaml") in line, f"{case.id}: file not named: {line}"
    for pattern in case.names:
        assert re.search(pattern, line), f"{case.id}: {pattern!r} not in: {line}"
    if outcome.report is None:
        return line
    # the run went ahead: every host is accounted for, and one none of the broken data
    # reaches is scanned as if nothing were wrong
    assert case.data, f"{case.id}: a run went ahead on broken input: {line}"
    hosts = outcome.report["hosts"]
    assert set(hosts) == {"web", "solo", EXPANDED}, sorted(hosts)
    for name, entry in hosts.items():
        assert entry["result"] is not None or entry["error"], (case.id, name, entry)
    if case.file != "defaults" and case.path[:1] != ("solo",):
        solo = hosts["solo"]["result"]
        assert solo is not None and solo["summary"]["closed"] == 1, (case.id, hosts["solo"])
        assert not hosts["solo"]["failed"]
    return line


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """A listening port and a closed one on 127.0.0.1, for the whole module.

    The listener accepts (and closes) what arrives: hundreds of runs connect to it, and a
    full accept queue would make the kernel drop SYNs, the port then looking filtered.
    """
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        closed.bind(("127.0.0.1", 0))
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.close()

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], closed.getsockname()[1]
        finally:
            stop.set()
            thread.join()


@pytest.mark.parametrize("full", [False, True], ids=["small", "every-key"])
def test_the_unbroken_inventory_passes(tmp_path: Path, ports: tuple[int, int],
                                       full: bool) -> None:
    """The control: with nothing broken the run exits 0 and scans every host (also with
    every key of every file set); with an expectation that fails it exits 1 (valid input,
    a real violation)."""
    config = write_case(tmp_path, None, *ports, full=full)
    outcome = run_in_process(["-c", str(config)], tmp_path / "report.json")
    assert outcome.status == 0, outcome.stderr
    assert outcome.stderr == ""
    assert outcome.report is not None
    assert sorted(outcome.report["hosts"]) == sorted(["web", "solo", EXPANDED])
    assert outcome.report["hosts"]["web"]["result"]["open"] == {"127.0.0.1": [ports[0]]}
    assert all(h["result"] is not None for h in outcome.report["hosts"].values())
    violated = Case("violation", "hosts", ("web", "data", "portscan", "expect", "open"),
                    [ports[1]])
    config = write_case(tmp_path / "v", violated, *ports, full=full)
    outcome = run_in_process(["-c", str(config)], tmp_path / "v" / "report.json")
    assert outcome.status == 1, outcome.stderr
    assert outcome.stderr == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_inventory(tmp_path: Path, ports: tuple[int, int], case: Case,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the baseline file names are relative
    config = write_case(tmp_path, case, *ports)
    check_broken(case, run_in_process(["-c", str(config)], tmp_path / "report.json"),
                 tmp_path)


#: Inventory-file cases that also run through ``-i DIR`` (no config file: the directory's
#: files are used as found, so a missing one is no error and is left out).
DIRECTORY_CASES = [c for c in CASES if c.file != "config" and c.shape != "missing" and (
    not c.path or c.shape)]  # whole files: how -i finds them is what differs
DIRECTORY_CASES += [c for c in CASES if c.file != "config" and c.path][::9]


@pytest.mark.parametrize("case", DIRECTORY_CASES, ids=[c.id for c in DIRECTORY_CASES])
def test_broken_inventory_directory(tmp_path: Path, ports: tuple[int, int], case: Case,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_case(tmp_path, case, *ports)
    (tmp_path / "config.yaml").unlink()
    case = copy.copy(case)
    if case.shape:  # no option names the file: the directory's file itself is named
        case.names = case.names[1:]
    outcome = run_in_process(["-i", str(tmp_path)], tmp_path / "report.json")
    check_broken(case, outcome, tmp_path)


#: A fixed sample, run as a real process: what the unit-speed path stands for.
PROCESS_CASES = CASES[::101]


@pytest.mark.parametrize("case", PROCESS_CASES, ids=[c.id for c in PROCESS_CASES])
def test_broken_inventory_in_a_real_process(tmp_path: Path, ports: tuple[int, int],
                                            case: Case) -> None:
    config = write_case(tmp_path, case, *ports)
    outcome = run_process(["-c", str(config)], tmp_path / "report.json", cwd=tmp_path)
    check_broken(case, outcome, tmp_path)
    assert os.path.exists(tmp_path / "report.json") == case.data or not case.data


# ---- the issue's own cases, each with its exact line ------------------------------------------


def _line(outcome: Outcome) -> str:
    lines = outcome.stderr.splitlines()
    assert outcome.status == 2 and len(lines) == 1, (outcome.status, outcome.stderr)
    return lines[0].removeprefix("nornir-portscan: error: ")


def _inventory(tmp_path: Path, ports: tuple[int, int], **changes: Any) -> Path:
    """The small inventory, with (file, key path) -> value changes, paths as given."""
    write_case(tmp_path, None, *ports)
    for spec, value in changes.items():
        file, *path = spec.split("__")
        doc = json.loads((tmp_path / f"{file}.yaml").read_text(encoding="utf-8"))
        (tmp_path / f"{file}.yaml").write_text(json.dumps(set_path(doc, tuple(path), value)),
                                               encoding="utf-8")
    return tmp_path / "config.yaml"


def test_a_misspelt_defaults_file_is_an_error_not_skipped_expectations(
        tmp_path: Path, ports: tuple[int, int]) -> None:
    """Issue 14: `defaults_file: inventory/defaults.yml` (the file is defaults.yaml) exited 0,
    and the expectations in the defaults were never checked."""
    config = _inventory(tmp_path, ports, defaults__data__portscan__expect={"open": [ports[1]]},
                        config__inventory__options__defaults_file="defaults.yml")
    outcome = run_process(["-c", "config.yaml"], tmp_path / "r.json", cwd=tmp_path)
    assert _line(outcome) == (f"config.yaml: inventory.options.defaults_file: defaults.yml does "
                              f"not exist (relative to the working directory {tmp_path})")
    assert not (tmp_path / "r.json").exists()
    config.write_text(config.read_text().replace("defaults.yml", "defaults.yaml"))
    outcome = run_process(["-c", "config.yaml"], tmp_path / "r.json", cwd=tmp_path)
    assert outcome.status == 1  # the defaults' expectation is checked, and fails


def test_bad_subnet_data_names_the_subnet_entry_and_its_file(
        tmp_path: Path, ports: tuple[int, int]) -> None:
    """Issue 14: it was blamed on "inventory data of host 'lab/127.0.0.2'". web (127.0.0.1)
    is a known host the subnet covers: its own ports and expect win, and the subnet's
    expect keys it lacks are filled in: one problem, failing two hosts, one line."""
    config = _inventory(tmp_path, ports, subnets__lab__data__portscan={
        "ports": [ports[0]], "expect": {"closed": ["nope"]}})
    subnet_file = tmp_path / "subnets.yaml"
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert outcome.stderr.splitlines() == [
        f"nornir-portscan: error: {subnet_file}: subnet entry 'lab': portscan.expect.closed = "
        f"['nope']: unknown port or service name 'nope' in 'nope' (fails hosts "
        f"'lab/127.0.0.2', 'web')"]
    assert outcome.status == 2
    assert outcome.report is not None
    hosts = outcome.report["hosts"]
    assert hosts["web"]["error"] == (
        f"host 'web': portscan.expect.closed = ['nope'] (inventory data of subnet entry 'lab' "
        f"in {subnet_file}): unknown port or service name 'nope' in 'nope'")
    assert "lab/127.0.0.2" not in hosts[EXPANDED]["error"].split("(")[1]
    assert hosts["solo"]["result"]["summary"]["closed"] == 1  # the other host: scanned


@pytest.mark.parametrize(("change", "line"), [
    (lambda d: ["inventory"], "{config}: expected a mapping of nornir settings (inventory, "
                              "runner, ...), got a list ['inventory']"),
    (lambda d: set_path(d, ("inventory", "options", "hosts_file"), "hosts.yaml"),
     "{config}: inventory.options: unknown option 'hosts_file' (value 'hosts.yaml') for "
     "PortscanInventory; allowed: host_file, group_file, defaults_file, subnet_file, encoding, "
     "max_hosts"),
    (lambda d: set_path(d, ("runner", "plugin"), "threads"),
     "{config}: runner.plugin: 'threads' is not a runner plugin installed here; installed: "
     "serial, threaded"),
], ids=["config-is-a-list", "hosts_file", "unknown-runner"])
def test_the_issues_config_mistakes_are_one_clear_line(
        tmp_path: Path, ports: tuple[int, int], change: Callable[[Any], Any], line: str) -> None:
    config = write_case(tmp_path, None, *ports)
    config.write_text(json.dumps(change(json.loads(config.read_text()))))
    outcome = run_process(["-c", str(config)], tmp_path / "r.json", cwd=tmp_path)
    assert _line(outcome) == line.format(config=config)


def test_inventory_option_given_a_file(tmp_path: Path, ports: tuple[int, int]) -> None:
    """Issue 14: `-i PATH` where PATH is a file said the directory "does not exist"."""
    write_case(tmp_path, None, *ports)
    outcome = run_process(["-i", "hosts.yaml"], tmp_path / "r.json", cwd=tmp_path)
    assert _line(outcome) == ("hosts.yaml is a file, not an inventory directory: give the "
                              "directory that holds hosts.yaml (or subnets.yaml), or a config "
                              "file with -c")


def test_simple_inventory_gets_the_same_checks(tmp_path: Path, ports: tuple[int, int]) -> None:
    """nornir's SimpleInventory skips a missing group_file and ignores a misspelt key; run
    reads its files with PortscanInventory's checks, and a valid one still runs."""
    config = _inventory(tmp_path, ports, config__inventory={
        "plugin": "SimpleInventory", "options": {
            "host_file": str(tmp_path / "hosts.yaml"), "group_file": str(tmp_path / "g.yaml"),
            "defaults_file": str(tmp_path / "defaults.yaml")}})
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert _line(outcome) == (f"{config}: inventory.options.group_file: {tmp_path / 'g.yaml'} "
                              f"does not exist")
    config.write_text(config.read_text().replace("g.yaml", "groups.yaml"))
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert outcome.status == 0, outcome.stderr
    assert outcome.report is not None and sorted(outcome.report["hosts"]) == ["solo", "web"]
    _inventory(tmp_path, ports, hosts__web__group=["core"])
    config.write_text(config.read_text().replace("g.yaml", "groups.yaml"))
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert _line(outcome).startswith(f"{tmp_path / 'hosts.yaml'}: host 'web': unknown key "
                                     f"'group'")


def test_raise_on_error_does_not_cut_the_run_short(tmp_path: Path,
                                                  ports: tuple[int, int]) -> None:
    config = _inventory(tmp_path, ports, config__core={"raise_on_error": True},
                        hosts__web__data__portscan__expect={"open": [ports[1]]})
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert outcome.status == 1 and outcome.stderr == ""
    assert outcome.report is not None
    assert all(h["result"] is not None for h in outcome.report["hosts"].values())


def test_transform_function_and_its_options(tmp_path: Path, ports: tuple[int, int]) -> None:
    pytest.importorskip("nornir_utils")
    config = _inventory(tmp_path, ports, config__inventory__transform_function="load_credentials",
                        config__inventory__transform_function_options={"username": "u"})
    outcome = run_in_process(["-c", str(config)], tmp_path / "r.json")
    assert outcome.status == 0, outcome.stderr
    config = _inventory(tmp_path, ports, config__inventory__transform_function="load_credentials",
                        config__inventory__transform_function_options={"user": "u"})
    assert _line(run_in_process(["-c", str(config)], tmp_path / "r.json")) == (
        f"{config}: inventory.transform_function_options: unknown option 'user' (value 'u') for "
        f"load_credentials; allowed: username, password")
