"""The command line as a user runs it: ``python -m nornir_portscan scan ...`` in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from netns import (
    LAB_CLOSED_PORT,
    LAB_DEAD,
    LAB_FILTERED_PORT,
    LAB_NOROUTE,
    LAB_OPEN_PORT,
    LAB_REJECT,
    LAB_UP,
    NetNS,
    by_key,
    jsonl,
)

SUMMARY = re.compile(r"^(\d+) probes? on (\d+) hosts? in [\d.]+ s(?: \((\d+) connects\))?: .+$")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ports(listener: Callable[..., int], closed_port: Callable[..., int]) -> tuple[int, list[int]]:
    """(open port, all ports): one listener and four closed ports on 127.0.0.1."""
    op = listener()
    return op, sorted([op, *(closed_port() for _ in range(4))])


def port_arg(ports: list[int]) -> str:
    return ",".join(map(str, ports))


# ---- formats ----------------------------------------------------------------------------------


def test_jsonl_one_object_per_probe(ports: tuple[int, list[int]]) -> None:
    op, all_ports = ports
    done = cli("scan", "127.0.0.1-3", "-p", port_arg(all_ports), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    assert len(rows) == 3 * len(all_ports)
    got = by_key(rows)
    assert set(got) == {(f"127.0.0.{i}", p) for i in (1, 2, 3) for p in all_ports}
    for row in rows:
        assert set(row) == {"host", "port", "state", "reason", "rtt_ms", "attempts"}
        assert isinstance(row["rtt_ms"], float) and row["rtt_ms"] >= 0
    assert got[("127.0.0.1", op)]["state"] == "open"
    assert got[("127.0.0.1", op)]["reason"] == "syn-ack"
    assert {r["state"] for k, r in got.items() if k != ("127.0.0.1", op)} == {"closed"}
    # the summary goes to stderr, so stdout stays pure JSON lines
    assert SUMMARY.match(done.stderr.strip().splitlines()[-1])


def test_jsonl_names_the_host_when_a_name_was_given(ports: tuple[int, list[int]]) -> None:
    op, all_ports = ports
    done = cli("scan", "localhost", "-p", port_arg(all_ports), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = [r for r in jsonl(done.stdout) if r["host"] == "127.0.0.1"]
    assert len(rows) == len(all_ports)
    assert {r["name"] for r in rows} == {"localhost"}
    assert {r["port"] for r in rows if r["state"] == "open"} == {op}


def test_jsonl_rtt_is_null_without_an_answer(lab: NetNS) -> None:
    done = lab.scan(LAB_UP, "-p", f"{LAB_FILTERED_PORT},{LAB_OPEN_PORT}", "--timeout", "0.2",
                    "--retries", "0", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = by_key(jsonl(done.stdout))
    silent = rows[(LAB_UP, LAB_FILTERED_PORT)]
    assert (silent["state"], silent["reason"], silent["rtt_ms"]) == ("filtered", "no-response",
                                                                     None)
    assert '"rtt_ms":null' in done.stdout.replace(" ", "")
    assert isinstance(rows[(LAB_UP, LAB_OPEN_PORT)]["rtt_ms"], float)


def down_host_rows(lab: NetNS, fmt: str,
                   ports: range) -> dict[tuple[str, int], tuple[str, str, object, int]]:
    """(host, port) -> (state, reason, rtt, attempts) for an up and a dead lab host, as ``fmt``
    writes them (the dead host's ports reach the writer as one run)."""
    # --all-ports: the json document lists every port with its own rtt, as the rows do
    done = lab.scan(LAB_UP, LAB_DEAD, "-p", f"{ports[0]}-{ports[-1]}", "--timeout", "0.2",
                    "--retries", "0", "--format", fmt, *(["--all-ports"] if fmt == "json"
                                                         else []))
    assert done.returncode == 0, done.stderr
    if fmt == "jsonl":
        rows = jsonl(done.stdout)
    elif fmt == "csv":
        rows = [{**r, "port": int(r["port"]), "attempts": int(r["attempts"]),
                 "rtt_ms": r["rtt_ms"] or None} for r in csv.DictReader(io.StringIO(done.stdout))]
    else:
        doc = json.loads(done.stdout)
        rows = [{"host": h, "port": int(p), **v} for h, e in doc["hosts"].items()
                for p, v in e["ports"].items()]
    got = {}
    for r in rows:
        assert (r["host"], r["port"]) not in got
        got[(r["host"], r["port"])] = (r["state"], r["reason"], r["rtt_ms"], r["attempts"])
    return got


@pytest.mark.parametrize("count", [100, 5000], ids=["one-process", "sharded-on-2-cores"])
def test_every_format_writes_a_down_hosts_ports_one_by_one(lab: NetNS, count: int) -> None:
    """A dead host's ports travel through the engine (and from shard workers) as one run;
    every format still has one row or entry per port, the same in each, and the table counts
    them."""
    ports = range(6000, 6000 + count)
    by_format = {fmt: down_host_rows(lab, fmt, ports) for fmt in ("jsonl", "csv", "json")}
    want = {(h, p) for h in (LAB_UP, LAB_DEAD) for p in ports}
    for fmt, got in by_format.items():
        assert set(got) == want, fmt
        dead = [got[(LAB_DEAD, p)] for p in ports]
        assert {(st, why, rtt) for st, why, rtt, _ in dead} <= {
            ("filtered", "host-down", None), ("filtered", "no-response", None)}
        # each process discovers the host with at most 8 ports
        assert sum(1 for d in dead if d[1] == "host-down") >= count - 16
        assert {d[3] for d in dead if d[1] == "host-down"} == {0}
        assert {got[(LAB_UP, p)][:2] for p in ports} == {("closed", "conn-refused")}
    # the same ports, states and reasons in every format (rtts are measured per run)
    assert len({frozenset((k, v[:2]) for k, v in got.items())
                for got in by_format.values()}) == 1
    done = lab.scan(LAB_UP, LAB_DEAD, "-p", f"{ports[0]}-{ports[-1]}", "--timeout", "0.2",
                    "--retries", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(f": {count} closed, {count} filtered")


def test_csv_header_and_rows(ports: tuple[int, list[int]]) -> None:
    op, all_ports = ports
    done = cli("scan", "127.0.0.1", "-p", port_arg(all_ports), "--format", "csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "host,name,port,state,reason,rtt_ms,attempts,banner,anomaly"
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == len(all_ports)
    assert sorted(int(r["port"]) for r in rows) == all_ports
    assert {int(r["port"]) for r in rows if r["state"] == "open"} == {op}
    assert {r["reason"] for r in rows if r["state"] == "closed"} == {"conn-refused"}
    assert all(r["host"] == "127.0.0.1" and r["name"] == "" for r in rows)


def test_json_document(ports: tuple[int, list[int]]) -> None:
    op, all_ports = ports
    done = cli("scan", "127.0.0.1", "127.0.0.2", "-p", port_arg(all_ports), "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["summary"]["probes"] == 2 * len(all_ports)
    assert doc["summary"]["hosts"] == 2
    assert doc["summary"]["interrupted"] is False
    assert doc["summary"]["counts"] == {"open": 1, "closed": 2 * len(all_ports) - 1}
    assert set(doc["hosts"]) == {"127.0.0.1", "127.0.0.2"}
    assert doc["hosts"]["127.0.0.1"]["open"] == [op]
    assert doc["hosts"]["127.0.0.2"]["open"] == []
    assert sorted(map(int, doc["hosts"]["127.0.0.1"]["ports"])) == all_ports
    assert doc["hosts"]["127.0.0.1"]["ports"][str(op)]["state"] == "open"


def test_table_shows_open_ports_and_a_summary(ports: tuple[int, list[int]]) -> None:
    op, all_ports = ports
    done = cli("scan", "127.0.0.1", "-p", port_arg(all_ports))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("127.0.0.1")
    # port, state, service (none known for a kernel-picked port), reason
    open_lines = [ln for ln in lines if re.match(rf"^\s+{op}\s+open\s+-\s+syn-ack", ln)]
    assert len(open_lines) == 1
    closed = [p for p in all_ports if p != op]
    assert not any(re.match(rf"^\s+{p}\s", ln) for p in closed for ln in lines)
    summary = SUMMARY.match(lines[-1])
    assert summary and summary.group(1) == str(len(all_ports)) and summary.group(2) == "1"
    assert f"1 open, {len(closed)} closed" in lines[-1]
    # loopback answers every first try: one connect() per port, no retries
    assert summary.group(3) == str(len(all_ports))


def test_table_with_nothing_open_names_the_host(closed_port: Callable[..., int]) -> None:
    done = cli("scan", "127.0.0.1", "-p", str(closed_port()))
    assert done.returncode == 0
    assert done.stderr == ""  # nothing to warn about
    lines = done.stdout.splitlines()
    assert lines[:-1] == ["up, no open port (1): 127.0.0.1", "1 host: 1 up with no open port"]
    assert SUMMARY.match(lines[-1]) and lines[-1].endswith(": 1 closed")


def test_table_names_every_host_as_ranges(listener: Callable[..., int],
                                          closed_port: Callable[..., int]) -> None:
    """A /20 of loopback with one listener inside: the listening address gets its block,
    the other 4,093 addresses are two ranges, one of them across the third octet."""
    port = listener("127.0.3.7")
    shut = closed_port()
    done = cli("scan", "127.0.0.0/20", "-p", f"{port},{shut}", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "127.0.3.7  up: 1 open, 1 closed"
    assert re.match(rf"^\s+{port}\s+open\s+-\s+syn-ack", lines[2])
    assert lines[3] == "up, no open port (4093): 127.0.0.1-127.0.3.6, 127.0.3.8-127.0.15.254"
    assert lines[4] == "4094 hosts: 1 with open ports, 4093 up with no open port"
    assert SUMMARY.match(lines[5]) and len(lines) == 6


@pytest.mark.parametrize(("ports", "said"), [
    (None, "ports: top100 (100 ports, the default: -p all for every port)"),
    ("ssh,telnet,23", "ports: ssh,telnet,23 (2 ports)"),
    ("22,23", None),
])
def test_table_says_which_ports_a_named_list_probed(closed_port: Callable[..., int],
                                                    ports: str | None,
                                                    said: str | None) -> None:
    done = cli("scan", "127.0.0.1", *(["-p", ports] if ports else []))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == said if said else not first.startswith("ports:")


def test_table_shows_service_names_and_clean_banners(make_netns: Callable[[], NetNS]) -> None:
    """Well-known ports need a namespace of our own: nothing of this machine listens there."""
    ns = make_netns()
    ns.listen([("127.0.0.1", 22, "SSH-2.0-lab\x1b[31m\r\n"), ("127.0.0.1", 830, None)])
    done = ns.scan("127.0.0.1", "-p", "ssh,netconf,telnet", "--banners")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ports: ssh,netconf,telnet (3 ports)"
    assert lines[1] == "127.0.0.1  up: 2 open, 1 closed"
    assert lines[2].split() == ["PORT", "STATE", "SERVICE", "REASON", "RTT", "BANNER"]
    assert lines[3].split()[:4] == ["22", "open", "ssh", "syn-ack"]
    # what a device sends is shown, but a control character never reaches the terminal raw
    assert "SSH-2.0-lab" in lines[3] and "\x1b" not in done.stdout
    assert lines[4].split()[:4] == ["830", "open", "netconf", "syn-ack"]


def test_unreachable_and_unresolved_are_never_hidden(lab: NetNS) -> None:
    """Each such address is listed with why, counted in the hosts line, and named in one
    warning line on stderr, whatever the format."""
    targets = (LAB_UP, LAB_DEAD, LAB_REJECT, LAB_NOROUTE, "nohost.invalid")
    ports = f"{LAB_OPEN_PORT},{LAB_CLOSED_PORT}"
    done = lab.scan(*targets, "-p", ports, "--timeout", "0.3", "--retries", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"{LAB_REJECT}  unreachable: host-unreach, all 2 ports" in lines
    assert f"{LAB_NOROUTE}  unreachable: host-unreach, all 2 ports" in lines
    # (the namespace has no resolver: c-ares cannot reach resolv.conf's, a failed lookup)
    assert "name did not resolve, not probed (1): nohost.invalid" in lines
    assert f"no answer (1): {LAB_DEAD}" in lines
    assert lines[-2] == ("5 hosts: 1 with open ports, 1 no answer, 2 unreachable, "
                         "1 name not resolved")
    assert lines[-1].endswith(": 1 open, 1 closed, 2 filtered, 4 unreachable, 2 error")
    warning = (f"warning: 3 addresses could not be probed: {LAB_REJECT}, {LAB_NOROUTE} "
               f"(unreachable: host-unreach); nohost.invalid (name did not resolve)")
    assert done.stderr.splitlines() == [warning]
    as_rows = lab.scan(*targets, "-p", ports, "--timeout", "0.3", "--retries", "0",
                       "--format", "jsonl")
    assert as_rows.returncode == 0, as_rows.stderr
    assert len(jsonl(as_rows.stdout)) == 10  # stdout stays pure rows
    assert as_rows.stderr.splitlines()[0] == warning
    assert SUMMARY.match(as_rows.stderr.splitlines()[1])


def test_a_name_outside_allow_is_listed_and_warned(closed_port: Callable[..., int]) -> None:
    """``localhost`` resolves outside ``--allow``: nothing is sent to it, and the table and
    stderr say so instead of counting it as a host with no open port."""
    shut = closed_port()
    done = cli("scan", "localhost", "127.0.0.2", "-p", str(shut), "--allow", "127.0.0.2/32")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # (localhost may be ::1 as well on some machines)
    assert "localhost (127.0.0.1)  outside the allowed networks, 1 port not probed" in lines
    assert "up, no open port (1): 127.0.0.2" in lines
    counted = re.fullmatch(r"(\d) hosts: 1 up with no open port, \d not probed", lines[-2])
    assert counted, lines[-2]
    n = counted.group(1)  # one port each: as many probes as hosts
    assert lines[-1].startswith(f"{n} probes on {n} hosts in ") and "1 closed" in lines[-1]
    warning = done.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ")
    assert "localhost (127.0.0.1)" in warning[0] and "127.0.0.2" not in warning[0]
    assert warning[0].endswith(" (outside the allowed networks)")


def test_run_table_lists_unreachable_and_unresolved_addresses(lab: NetNS,
                                                              tmp_path: Path) -> None:
    """``run``'s table says the same as ``scan``'s about addresses that could not be probed:
    each on its own line with why, the silent one in a list, the host marked ERROR."""
    (tmp_path / "hosts.yaml").write_text(f"""\
edge:
  data:
    portscan:
      targets: [{LAB_UP}, {LAB_DEAD}, {LAB_REJECT}, nohost.invalid]
      ports: [{LAB_OPEN_PORT}, {LAB_CLOSED_PORT}]
      timeout: 0.3
      retries: 0
""", encoding="utf-8")
    done = lab.run(sys.executable, "-m", "nornir_portscan", "run", "-i", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr  # a name did not resolve
    lines = done.stdout.splitlines()
    assert lines[:2] == ["edge  ERROR", f"  {LAB_UP}  up: 1 open, 1 closed"]
    assert lines[3].split()[:2] == [str(LAB_OPEN_PORT), "open"]
    assert lines[4:7] == [f"  {LAB_REJECT}  unreachable: host-unreach, all 2 ports",
                          "  nohost.invalid  name did not resolve, 2 ports not probed",
                          f"  no answer (1): {LAB_DEAD}"]
    assert lines[7].startswith("1 host, 8 probes in ")
    assert lines[7].endswith(": 1 open, 1 closed, 2 filtered, 2 unreachable, 2 error; "
                             "no violations, 1 host(s) failed")


# ---- output files -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "table"])
def test_output_file(ports: tuple[int, list[int]], tmp_path: Path, fmt: str) -> None:
    op, all_ports = ports
    out = tmp_path / f"scan.{fmt}"
    done = cli("scan", "127.0.0.1", "-p", port_arg(all_ports), "--format", fmt, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert SUMMARY.match(done.stderr.strip())
    text = out.read_text(encoding="utf-8")
    if fmt == "jsonl":
        assert len(jsonl(text)) == len(all_ports)
    elif fmt == "json":
        assert json.loads(text)["hosts"]["127.0.0.1"]["open"] == [op]
    elif fmt == "csv":
        assert len(text.splitlines()) == 1 + len(all_ports)
    else:
        assert str(op) in text and SUMMARY.match(text.splitlines()[-1])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


@pytest.mark.parametrize(("args", "name", "message"), [
    (["scan", "127.0.0.1", "-p", "1"], "out.json", "the report would be a table, not what .json"
     " says; add --format json (or --format table to keep the table)"),
    (["scan", "127.0.0.1", "-p", "1"], "OUT.CSV", "the report would be a table, not what .csv"
     " says; add --format csv (or --format table to keep the table)"),
    (["scan", "127.0.0.1", "-p", "1"], "out.html", "scan writes no html report (--format "
     "table, jsonl, json, csv); add --format table to write the table there"),
    (["run", "-i", "nowhere"], "report.xml", "the report would be a table, not what .xml says;"
     " add --format junit or --format nmap-xml (or --format table to keep the table)"),
])
def test_a_report_file_named_for_another_format_is_refused(tmp_path: Path, args: list[str],
                                                           name: str, message: str) -> None:
    """``-o audit.json`` without ``--format json`` wrote the table into audit.json. The
    name is checked, not guessed from: refused before anything is read or sent."""
    out = tmp_path / name
    done = cli(*args, "-o", str(out))
    assert done.returncode == 2
    assert done.stderr == f"nornir-portscan: error: -o {out}: {message}\n"
    assert not out.exists()


def test_a_report_file_gets_the_table_when_its_name_or_the_format_says_so(
        tmp_path: Path) -> None:
    for name, fmt in (("out.txt", []), ("out.json", ["--format", "table"])):
        done = cli("scan", "127.0.0.1", "-p", "1", *fmt, "-o", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        table = (tmp_path / name).read_text(encoding="utf-8").splitlines()
        assert table[:2] == ["up, no open port (1): 127.0.0.1", "1 host: 1 up with no open port"]


def test_output_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    """Regression: this was a FileNotFoundError traceback from tempfile.mkstemp, exit 1."""
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"
    done = cli("scan", "127.0.0.1", "-p", "1", "--format", "jsonl", "-o", str(target))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert str(target.parent) in done.stderr


def test_output_to_a_fifo_writes_through_it(ports: tuple[int, list[int]],
                                            tmp_path: Path) -> None:
    """A FIFO (or /dev/null) is written in place, never replaced by a renamed file."""
    op, all_ports = ports
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []

    def read() -> None:
        with open(fifo, encoding="utf-8") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done = cli("scan", "127.0.0.1", "-p", port_arg(all_ports), "--format", "jsonl",
               "-o", str(fifo))
    if reader.is_alive():  # nobody opened the FIFO for writing: let the reader go
        with open(fifo, "w", encoding="utf-8"):
            pass
    reader.join(timeout=5)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    rows = jsonl(received[0])
    assert len(rows) == len(all_ports)
    assert {r["port"] for r in rows if r["state"] == "open"} == {op}


# ---- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "named"), [
    (["127.0.0.1", "-p", "0"], "'0'"),
    (["127.0.0.1", "-p", "65536"], "'65536'"),
    (["127.0.0.1", "-p", "1-"], "'1-'"),
    (["127.0.0.1", "-p", "22,nosuchservice"], "'nosuchservice'"),
    (["127.0.0.1", "-p", "443-22"], "'443-22'"),
    (["127.0.0.1", "-p", ""], "empty port list"),
    (["10.0.0.0/33", "-p", "22"], "'10.0.0.0/33'"),
    (["300.1.1.1", "-p", "22"], "'300'"),
    (["10.0.0.40-10.0.0.10", "-p", "22"], "'10.0.0.40-10.0.0.10'"),
    (["", "-p", "22"], "empty target"),
    (["127.0.0.1", "--exclude", "10.0.0.0/40", "-p", "22"], "'10.0.0.0/40'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], named: str) -> None:
    done = cli("scan", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nornir-portscan: error: ")
    assert named in lines[0]
    assert done.stdout == ""


@pytest.mark.parametrize(("target", "message"), [
    ("127.0.0.1:22", "'127.0.0.1:22' is not a target: ports are given apart from addresses "
                     "(127.0.0.1 with -p 22)"),
    ("[::1]:22", "'[::1]:22' is not a target: ports are given apart from addresses (::1 with "
                 "-p 22)"),
    ("localhost:8080", "'localhost:8080' is not a target: ports are given apart from "
                       "addresses (localhost with -p 8080)"),
    ("http://127.0.0.1/", "'http://127.0.0.1/' is a URL, not a target: give the address or "
                          "name alone (and its port with -p)"),
])
def test_an_endpoint_or_url_says_where_the_port_goes(target: str, message: str) -> None:
    done = cli("scan", target, "-p", "1")
    assert done.returncode == 2
    assert done.stderr == f"nornir-portscan: error: {message}\n"


@pytest.mark.parametrize(("target", "why"), [
    ("127.0.0.0/33", "the prefix length is 0-32 for IPv4, not 33"),
    ("::1/129", "the prefix length is 0-128 for IPv6, not 129"),
    ("127.0.0.0/x", "the prefix 'x' is not a length 0-32 or a netmask"),
    ("127.0.0.300/24", "'127.0.0.300' is not an IPv4 address"),
])
def test_a_bad_network_is_named_once_with_what_is_wrong(target: str, why: str) -> None:
    done = cli("scan", target, "-p", "22")
    assert done.returncode == 2
    assert done.stderr == f"nornir-portscan: error: {target!r} is not a valid network: {why}\n"


@pytest.mark.parametrize("args", [["--timeout", "0"], ["--timeout", "abc"], ["--retries", "-1"],
                                  ["--format", "xml"], ["--concurrency", "many"]])
def test_bad_options_exit_2_without_traceback(args: list[str]) -> None:
    done = cli("scan", "127.0.0.1", "-p", "1", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("nornir-portscan: error: ")
    assert args[1] in done.stderr


@pytest.mark.parametrize("command", [["scan", "127.0.0.1", "-p", "1"], ["run"], ["monitor"]])
def test_concurrency_0_is_refused_by_every_command(command: list[str]) -> None:
    """0 probes in flight is no scan; it once meant "the default" silently, which reads as
    "no limit". The setting's one parser refuses it, so every source does."""
    done = cli(*command, "--concurrency", "0")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("nornir-portscan: error: argument --concurrency '0': must be a "
                           "whole number, 1 or more\n")


def test_concurrency_0_is_refused_from_python() -> None:
    from nornir_portscan.engine import scan
    from nornir_portscan.errors import SpecError

    with pytest.raises(SpecError, match=r"^concurrency=0: must be a whole number, 1 or more$"):
        list(scan("127.0.0.1", "1", concurrency=0))


def test_scan_needs_a_target() -> None:
    done = cli("scan")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


# ---- interruption -----------------------------------------------------------------------------


def test_sigint_mid_scan_exits_130_with_complete_partial_output(lab: NetNS,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "partial.jsonl"
    # LAB_UP answers at once; LAB_DEAD holds 2000 probes for 30 s: mid-way 1 s after the
    # first probe waits (counted from then: a loaded machine may take longer to start)
    proc = lab.scan_popen(LAB_UP, LAB_DEAD, "-p", "1-2000", "--no-discovery", "--timeout", "30",
                          "--format", "jsonl", "-o", str(out))
    lab.wait_for_syn_sent()
    time.sleep(1.0)
    assert proc.poll() is None, "the scan ended before it could be interrupted"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    # it did not wait out the probes in flight (30 s each)
    assert time.monotonic() - sent < 30
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]  # every line is whole JSON
    keys = by_key(rows)
    # every port of the answering host is there (its dropped port was still waiting too)
    answered = {(LAB_UP, p) for p in range(1, 2001) if p != LAB_FILTERED_PORT}
    assert {k for k in keys if k[0] == LAB_UP} == answered
    assert not any(k[0] == LAB_DEAD for k in keys)  # partial: still waiting at the signal
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
