"""Resume: a scan or a nornir run killed at any moment (SIGKILL included) and started again
with ``--resume`` ends with the report an uninterrupted run writes, every (address, port)
once, states exact, nothing left beside the report; it probes only what was not decided;
a journal of another scan is refused, a damaged one loses only the damaged record.

Ground truth comes from the namespace lab (``netns.build_lab``: open, closed, filtered,
unreachable) and from nftables counters of the SYNs that reach an address.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import random
import signal
import subprocess
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netns import (
    LAB_BANNER_PORT,
    LAB_DEAD,
    LAB_FILTERED_PORT,
    LAB_NOROUTE,
    LAB_OPEN_PORT,
    LAB_REJECT,
    LAB_UP,
    PYTHON,
    NetNS,
)

from nornir_portscan import scan
from nornir_portscan.engine.api import open_journal, plan_scan, replay, stream_plan
from nornir_portscan.engine.core.decided import DecidedPairs
from nornir_portscan.engine.core.outcome import PortRun, PortState, ProbeOutcome
from nornir_portscan.engine.core.records import (
    BAD,
    NEED_MORE,
    OUTCOMES,
    Damaged,
    decode_batch,
    encode_batch,
    frame,
    parse_frame,
)
from nornir_portscan.engine.core.resume import ResumePoint, resume_work
from nornir_portscan.engine.core.stats import ScanStats
from nornir_portscan.engine.io.journal import JournalMismatch
from nornir_portscan.inputs.targets import parse_targets
from nornir_portscan.plugins.common.ports import each_port

Row = tuple[str, int, str, str | None]  # host, port, state, reason (a document may lack one)

#: The lab's hosts and a port list that covers every state; at --rate 1000 a scan of it
#: takes about 1.7 s (6,008 probes, one process) or 3.5 s (12,008, sharded), so a kill at
#: a random moment lands mid-scan.
LAB_HOSTS = (LAB_UP, LAB_DEAD, LAB_REJECT, LAB_NOROUTE)
SHORT = f"1-1500,{LAB_OPEN_PORT},{LAB_BANNER_PORT}"
LONG = f"1-3000,{LAB_OPEN_PORT},{LAB_BANNER_PORT}"


def lab_state(host: str, port: int) -> str:
    """What the lab says (host, port) is."""
    if host == LAB_UP:
        if port in (LAB_OPEN_PORT, LAB_BANNER_PORT):
            return "open"
        return "filtered" if port == LAB_FILTERED_PORT else "closed"
    return "filtered" if host == LAB_DEAD else "unreachable"


def rows_of(fmt: str, text: str) -> list[Row]:
    """A report's rows, whatever its format."""
    if fmt == "jsonl":
        return [(r["host"], r["port"], r["state"], r["reason"])
                for r in map(json.loads, text.splitlines())]
    if fmt == "csv":
        return [(r["host"], int(r["port"]), r["state"], r["reason"])
                for r in csv.DictReader(io.StringIO(text))]
    doc = json.loads(text)
    return [(host, int(port), p["state"], p["reason"])
            for host, entry in doc["hosts"].items() for port, p in each_port(entry)]


def ports_of(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def kill_within(proc: subprocess.Popen[str], delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` s; False when it had finished by then."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return True


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool],
              timeout: float = 60) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds (an event, not a delay a loaded machine
    may not keep); False when it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return True


def journaled_at_least(path: Path, count: int) -> bool:
    return journaled(path) >= count


def journaled(path: Path) -> int:
    """Outcomes a journal file holds (read frame by frame, as a crash left it)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    total, pos = 0, 0
    while pos < len(data):
        end, kind, payload = parse_frame(data, pos)
        if end <= 0:
            break
        if kind == OUTCOMES and payload is not None:
            batch = decode_batch(payload)
            total += len(batch.outcomes) + sum(len(r.ports) for r in batch.runs)
        pos = end
    return total


def left_beside(report: Path) -> list[str]:
    return sorted(p.name for p in report.parent.iterdir() if p != report)


# ---- the journal's parts, no network ---------------------------------------------------------


@pytest.mark.parametrize(("targets", "exclude"), [
    ("127.0.0.1-20 127.0.0.0/28 127.0.0.5 127.1.0-2.1,3,200", "127.0.0.7 127.1.1.0/24"),
    ("127.0.0.0/30 ::1 ::1-::3 localhost LOCALHOST 127.0.0.2 other.test", "other.test"),
    ("127.4-5.*.10-12", ""),
])
def test_position_of_inverts_at(targets: str, exclude: str) -> None:
    """Decided pairs are keyed by position: every target iterating yields maps to the
    position ``at`` gives it, whatever overlaps and excludes there are."""
    spec = parse_targets(targets, exclude)
    seen = []
    for pos in range(spec.count()):
        target = spec.at(pos)
        if target is None:
            continue
        seen.append(target)
        if target.address is not None:
            assert spec.position_of(target.address) == pos, target
        else:
            assert target.name is not None and spec.name_position(target.name) == pos
    assert Counter(seen) == Counter(spec)  # each target once, as iterating yields them
    for address in ("127.0.0.7", "127.9.9.9", "::5"):
        assert spec.position_of(address) is None


def test_decided_pairs_of_a_slash8_stay_small() -> None:
    """A /8 x 10 (167 million pairs) costs a bit per host, plus rows for hosts in part."""
    spec = parse_targets("127.0.0.0/8")
    ports = tuple(range(1, 11))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    decided = DecidedPairs(spec, ports)
    cost = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert spec.count() * len(ports) > 167_000_000
    assert cost < 2.2 * 2**20, cost  # 16,777,214 positions: 2 MiB of bits
    host = "127.3.2.1"
    first = [ProbeOutcome(host, p, PortState.CLOSED, "conn-refused") for p in ports[:6]]
    assert decided.add(first) == first
    pos = spec.position_of(host)
    assert pos is not None and pos in decided.partial and decided.partial[pos].up
    rest = [ProbeOutcome(host, p, PortState.FILTERED, "no-response") for p in ports[6:]]
    assert decided.add([*first[:2], *rest]) == rest  # repeats are left out
    assert decided.is_complete(pos) and pos not in decided.partial
    assert decided.add([ProbeOutcome(host, 99, PortState.OPEN, "syn-ack")]) == []
    run = PortRun("127.9.9.9", None, (1, 2, 3), PortState.FILTERED, "host-down")
    assert decided.add_run(run) == run and decided.count == 13


def test_a_frame_cut_short_or_damaged_is_found() -> None:
    outcomes = [ProbeOutcome("127.0.0.1", 22, PortState.OPEN, "syn-ack", 0.25, 1, None,
                             "SSH-2.0-x"),
                ProbeOutcome("127.0.0.2", 23, PortState.FILTERED, "no-response", None, 2,
                             "two.test", None)]
    runs = [PortRun("127.0.0.3", None, (1, 2, 3), PortState.UNREACHABLE, "host-unreach")]
    data = frame(OUTCOMES, encode_batch(7, outcomes, runs))
    end, kind, payload = parse_frame(data, 0)
    assert end == len(data) and kind == OUTCOMES and payload is not None
    assert decode_batch(payload) == (7, outcomes, runs)
    assert parse_frame(data[:-1], 0)[0] == NEED_MORE  # the last frame, cut mid-write
    for at in (1, 5, 20, len(data) - 1):  # magic, length, payload: any flipped bit shows
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        assert parse_frame(damaged, 0)[0] in (BAD, NEED_MORE), at
    # the cluster worker (vantage point) of each outcome and port run comes back too
    placed = [outcomes[0]._replace(worker="site-a"), outcomes[1],
              outcomes[1]._replace(port=24, worker="site-b")]
    placed_runs = [runs[0]._replace(worker="site-b")]
    _, _, payload = parse_frame(frame(OUTCOMES, encode_batch(7, placed, placed_runs)), 0)
    assert payload is not None
    assert decode_batch(payload) == (7, placed, placed_runs)
    # a checksum that holds over columns that do not agree: damaged, not believed
    body = bytearray(encode_batch(7, outcomes))
    body[3] += 1  # one outcome more than the columns hold
    end, _, payload = parse_frame(frame(OUTCOMES, bytes(body)), 0)
    assert payload is not None
    with pytest.raises(Damaged):
        decode_batch(payload)


def test_resumed_jobs_probe_only_what_is_left() -> None:
    """A decided host is not admitted; a host decided in part gets a job of its remaining
    ports, without discovery when a decided port answered."""
    plan = plan_scan("127.0.0.1-4", "20-29")
    assert plan.options.discovery
    decided = DecidedPairs(plan.spec, plan.ports)  # type: ignore[arg-type]
    decided.add([ProbeOutcome("127.0.0.1", p, PortState.CLOSED, "conn-refused")
                 for p in plan.ports])  # all of .1
    decided.add([ProbeOutcome("127.0.0.2", 20, PortState.CLOSED, "conn-refused")])  # up
    decided.add([ProbeOutcome("127.0.0.3", p, PortState.FILTERED, "no-response")
                 for p in (21, 22)])  # silent so far
    jobs, early = resume_work(plan, ResumePoint(decided), key=0)
    assert early == []
    main, *partial = jobs
    assert [t.address for t in main.targets] == ["127.0.0.4"]
    by_host = {next(iter(job.targets)).address: job for job in partial}
    assert set(by_host) == {"127.0.0.2", "127.0.0.3"}
    assert by_host["127.0.0.2"].ports == tuple(range(21, 30))
    assert not by_host["127.0.0.2"].options.discovery  # known up: no discovery probes
    assert by_host["127.0.0.3"].ports == (20, *range(23, 30))
    assert by_host["127.0.0.3"].options.discovery


# ---- local scans killed and resumed -----------------------------------------------------------


@pytest.mark.parametrize(("ports", "fmt", "seed"), [
    (SHORT, "jsonl", 1), (LONG, "json", 2), (SHORT, "csv", 3),
], ids=["one-process-jsonl", "sharded-json", "one-process-csv"])
def test_sigkill_at_random_points_then_resume(lab: NetNS, tmp_path: Path, ports: str,
                                              fmt: str, seed: int) -> None:
    """Two SIGKILLs at random moments, then the same command finishes: the report is the
    uninterrupted run's (as a multiset of rows), exact against the lab, each pair once."""
    rnd = random.Random(seed)
    args = [*LAB_HOSTS, "-p", ports, "--rate", "1000", "--format", fmt]
    whole = lab.scan(*args, timeout=60)
    assert whole.returncode == 0, whole.stderr
    expected = Counter(rows_of(fmt, whole.stdout))
    out = tmp_path / f"scan.{fmt}"
    span = 1.6 if ports == SHORT else 3.2  # about how long the scan runs, start-up included
    killed, saved, ever = 0, 0, 0
    for attempt in range(3):  # killed twice at most; the last run finishes
        proc = lab.scan_popen(*args, "-o", str(out), "--resume")
        window = (0.9, 0.9 * span) if attempt == 0 else (0.6, 0.5 * span)
        if attempt < 2 and kill_within(proc, rnd.uniform(*window)):
            killed += 1
            # no report, or (killed in its last milliseconds, the report in place) a whole one
            if out.exists():
                assert Counter(rows_of(fmt, out.read_text(encoding="utf-8"))) == expected
            assert left_beside(out) in ([], [f"{out.name}.journal"])
            saved = journaled(Path(f"{out}.journal"))
            ever = max(ever, saved)
            continue
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        break
    assert killed and ever, "no run was killed with work saved: the test proved nothing"
    if saved:  # (0 when the last kill came before anything was decided, or after the end)
        assert f": {saved} of at most" in stderr  # what the journal held was not redone
    rows = rows_of(fmt, out.read_text(encoding="utf-8"))
    assert Counter(rows) == expected
    keys = Counter((host, port) for host, port, _, _ in rows)
    assert set(keys) == {(h, p) for h in LAB_HOSTS for p in ports_of(ports)}
    assert max(keys.values()) == 1
    assert all(state == lab_state(host, port) for host, port, state, _ in rows)
    assert left_beside(out) == []  # no journal, no temporary file


def test_sigkill_without_resume_leaves_nothing_behind(lab: NetNS, tmp_path: Path) -> None:
    """The report is written unnamed (O_TMPFILE) until it is complete: a SIGKILL leaves
    neither a report nor a temporary file."""
    out = tmp_path / "scan.jsonl"
    proc = lab.scan_popen(*LAB_HOSTS, "-p", SHORT, "--rate", "1000", "--format", "jsonl",
                          "-o", str(out))
    assert kill_within(proc, 0.8)
    assert list(tmp_path.iterdir()) == []


def syn_counters(ns: NetNS, addresses: list[str]) -> Callable[[], dict[str, int]]:
    """Count the SYNs that leave for each address (nftables, inside ``ns``)."""
    names = {a: "to_" + a.replace(".", "_") for a in addresses}
    counters = "\n".join(f"  counter {n} {{}}" for n in names.values())
    rules = "\n".join(f"    ip daddr {a} tcp flags & (syn | ack) == syn counter name {n}"
                      for a, n in names.items())
    ns.nft(f"table inet nptsyn {{\n{counters}\n  chain out {{\n    type filter hook output "
           f"priority 0; policy accept;\n{rules}\n  }}\n}}\n")

    def read() -> dict[str, int]:
        doc = json.loads(ns.check("nft", "-j", "list", "counters"))
        found = {item["counter"]["name"]: int(item["counter"]["packets"])
                 for item in doc["nftables"] if "counter" in item}
        return {a: found[n] for a, n in names.items()}

    return read


#: Leaves a journal as a crash would: a real scan's outcomes, of each host only as many
#: (its lowest ports) as asked, recorded through the journal's own calls.
PREPARE = """
import json, sys
from nornir_portscan.engine.api import open_journal, plan_scan, replay, run_plan
targets, ports, keep = sys.argv[1].split(), sys.argv[2], json.loads(sys.argv[3])
plan = plan_scan(targets, ports)
outcomes = sorted(run_plan(plan), key=lambda o: (o.host, o.port))
journal = open_journal(sys.argv[4], plan)
list(replay(journal))
chosen = [o for o in outcomes if o.port < plan.ports[0] + keep.get(o.host, 0)]
for i in range(0, len(chosen), 7):  # several records, as a scan writes them
    journal.record("", chosen[i:i + 7])
journal.close()
print(json.dumps([[o.host, o.port, o.state.value, o.name] for o in chosen]))
"""

#: Resumes the journal to the end; prints every outcome, the journal's first.
RESUME = """
import json, sys
from nornir_portscan.engine.api import open_journal, plan_scan, replay, stream_plan
plan = plan_scan(sys.argv[1].split(), sys.argv[2])
journal = open_journal(sys.argv[3], plan)
old = [o for b in replay(journal) for o in b.outcomes]
new = [o for b in stream_plan(plan, journal=journal) for o in b.outcomes]
journal.close()
print(json.dumps({"old": len(old),
                  "rows": [[o.host, o.port, o.state.value, o.name] for o in old + new]}))
"""


def crash_then_resume(ns: NetNS, targets: str, ports: str, keep: dict[str, int],
                      journal: Path, count: Callable[[], dict[str, int]],
                      ) -> tuple[list[list[Any]], dict[str, Any], dict[str, int]]:
    """(what the journal held, the resumed scan's result, SYNs the resumed scan sent)."""
    prepared = ns.python(PREPARE, targets, ports, json.dumps(keep), str(journal))
    assert prepared.returncode == 0, prepared.stderr
    sent = count()
    resumed = ns.python(RESUME, targets, ports, str(journal))
    assert resumed.returncode == 0, resumed.stderr
    after = {h: n - sent[h] for h, n in count().items()}
    held: list[list[Any]] = json.loads(prepared.stdout)
    result: dict[str, Any] = json.loads(resumed.stdout)
    return held, result, after


def test_resume_probes_only_what_is_left(make_netns: Callable[[], NetNS],
                                         tmp_path: Path) -> None:
    """SYNs counted per address: a decided host gets none, a host decided in part and
    known up one per remaining port (no discovery probe), an untouched host what a fresh
    scan sends it (discovery's 8 probes, then its 100 ports)."""
    ns = make_netns()
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    ns.listen([("127.0.0.2", 2050, None), ("127.0.0.3", 2070, None)])
    count = syn_counters(ns, hosts)
    held, result, sent = crash_then_resume(
        ns, " ".join(hosts), "2000-2099", {"127.0.0.2": 100, "127.0.0.3": 50},
        tmp_path / "j", count)
    assert len(held) == 150 and result["old"] == 150
    assert sent == {"127.0.0.2": 0, "127.0.0.3": 50, "127.0.0.4": 108}
    rows = result["rows"]
    keys = Counter((r[0], r[1]) for r in rows)
    assert len(keys) == 300 and max(keys.values()) == 1
    assert {(r[0], r[1]) for r in rows if r[2] == "open"} == {("127.0.0.2", 2050),
                                                             ("127.0.0.3", 2070)}
    assert Counter(r[2] for r in rows) == {"closed": 298, "open": 2}


def test_a_name_with_two_addresses_resumes_each_address(dns_netns: NetNS,
                                                        tmp_path: Path) -> None:
    """A name's pairs are kept per address it resolved to: a resume looks the name up
    again, leaves a decided address alone and probes the other's remaining ports only."""
    ns = dns_netns
    ns.listen([("127.0.0.3", 2030, None)])
    count = syn_counters(ns, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    held, result, sent = crash_then_resume(
        ns, "multi.test 127.0.0.4", "2000-2039", {"127.0.0.2": 40, "127.0.0.3": 10},
        tmp_path / "j", count)
    assert {r[3] for r in held} == {"multi.test"} and len(held) == 50
    assert sent == {"127.0.0.2": 0, "127.0.0.3": 30, "127.0.0.4": 44}  # .4: 4 discovery
    rows = result["rows"]
    keys = Counter((r[0], r[1]) for r in rows)
    assert set(keys) == {(h, p) for h in ("127.0.0.2", "127.0.0.3", "127.0.0.4")
                         for p in range(2000, 2040)}
    assert max(keys.values()) == 1
    assert {r[3] for r in rows if r[0] != "127.0.0.4"} == {"multi.test"}
    assert {(r[0], r[1]) for r in rows if r[2] == "open"} == {("127.0.0.3", 2030)}


# ---- refusals, damage -------------------------------------------------------------------------


def partial_journal(path: Path, targets: str, ports: str, take: int = 30,
                    **options: Any) -> None:
    """A journal holding ``take`` outcomes of a real loopback scan, as a crash leaves it."""
    plan = plan_scan(targets, ports, **options)
    journal = open_journal(str(path), plan)
    list(replay(journal))
    got = 0
    for batch in stream_plan(plan, journal=journal):
        got += len(batch.outcomes)
        if got >= take:
            break
    journal.close()


#: A nornir run's journal (hosts a and b, 127.0.0.1 and .2 x 1-50), as the run leaves it.
RUN_JOURNAL = """
import sys
from nornir_portscan.engine.api import plan_scan
from nornir_portscan.engine.io.journal import shared_journal
plans = {"a": plan_scan("127.0.0.1", "1-50"), "b": plan_scan("127.0.0.2", "1-50")}
shared_journal(sys.argv[1], "run", plans).close()
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "nornir_portscan", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("changed", "item"), [
    (["127.0.0.1-3", "-p", "1-300"], "ports"),
    (["127.0.0.1-4", "-p", "1-200"], "targets"),
    (["127.0.0.1-3", "-p", "1-200", "--exclude", "127.0.0.2"], "excludes"),
    (["127.0.0.1-3", "-p", "1-200", "--timeout", "2"], "timeout"),
    (["127.0.0.1-3", "-p", "1-200", "--no-discovery"], "discovery"),
])
def test_a_resume_of_another_scan_is_refused(tmp_path: Path, changed: list[str],
                                             item: str) -> None:
    out = tmp_path / "scan.jsonl"
    journal = Path(f"{out}.journal")
    partial_journal(journal, "127.0.0.1-3", "1-200")
    before = journal.read_bytes()
    done = cli("scan", *changed, "--format", "jsonl", "-o", str(out), "--resume")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nornir-portscan: error: "), done.stderr
    assert f"different scan: {item} (journal:" in lines[0], lines[0]
    assert journal.read_bytes() == before and not out.exists()
    right = cli("scan", "127.0.0.1-3", "-p", "1-200", "--format", "jsonl", "-o", str(out),
                "--resume")
    assert right.returncode == 0, right.stderr
    assert "resuming from" in right.stderr
    rows = rows_of("jsonl", out.read_text(encoding="utf-8"))
    assert len(rows) == 600 and len({(h, p) for h, p, _, _ in rows}) == 600
    assert left_beside(out) == []


def test_a_journal_that_is_not_this_scans_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "scan.jsonl"
    journal = Path(f"{out}.journal")
    journal.write_bytes(b"certainly not a journal, but some bytes a user cares about\n")
    done = cli("scan", "127.0.0.1", "-p", "1-10", "--format", "jsonl", "-o", str(out),
               "--resume")
    assert done.returncode == 2 and "is damaged at its start or is no journal" in done.stderr, \
        done.stderr
    assert journal.read_bytes().startswith(b"certainly not")
    journal.unlink()
    made = subprocess.run([PYTHON, "-c", RUN_JOURNAL, str(journal)], capture_output=True,
                          text=True, timeout=60)  # a run's journal where a scan's belongs
    assert made.returncode == 0, made.stderr
    done = cli("scan", "127.0.0.1", "-p", "1-50", "--format", "jsonl", "-o", str(out),
               "--resume")
    assert done.returncode == 2, done.stderr
    assert "it is the journal of a run, not of a scan" in done.stderr
    assert journal.exists() and not out.exists()


def test_a_cut_off_last_record_or_a_damaged_one_costs_only_itself(tmp_path: Path) -> None:
    out = tmp_path / "scan.jsonl"
    journal = Path(f"{out}.journal")
    partial_journal(journal, "127.0.0.1-8", "1-2000", take=9000)
    data = bytearray(journal.read_bytes())
    frames = []
    pos = data.find(b"\xa5\x4a", 1)
    while pos >= 0:
        end, kind, _ = parse_frame(data, pos)
        if end > 0:
            frames.append((pos, end, kind))
            pos = end
        else:
            pos = data.find(b"\xa5\x4a", pos + 1)
    outcome_frames = [f for f in frames if f[2] == OUTCOMES]
    assert len(outcome_frames) >= 3, frames
    middle = outcome_frames[1]
    data[(middle[0] + middle[1]) // 2] ^= 0xFF  # a damaged record in the middle
    last = outcome_frames[-1]
    cut = bytes(data[:last[1] - 7])  # the last record cut mid-write
    journal.write_bytes(cut)
    done = cli("scan", "127.0.0.1-8", "-p", "1-2000", "--format", "jsonl", "-o", str(out),
               "--resume")
    assert done.returncode == 0, done.stderr
    assert "1 damaged record skipped and its last record was cut short" in done.stderr
    rows = rows_of("jsonl", out.read_text(encoding="utf-8"))
    keys = Counter((h, p) for h, p, _, _ in rows)
    assert len(keys) == 16000 and max(keys.values()) == 1
    assert left_beside(out) == []


def test_python_api_resume(tmp_path: Path, listener: Callable[..., int]) -> None:
    """``scan(..., resume=PATH)``: a caller that stopped mid-way gets, the next time, the
    outcomes decided before and then the rest, each pair once; another scan's journal
    raises at call time."""
    open_port = listener()
    path = tmp_path / "audit.journal"
    first = scan("127.0.0.1-2", f"1-500,{open_port}", resume=str(path))
    taken = [next(first) for _ in range(300)]
    first.close()  # type: ignore[attr-defined]
    again = list(scan("127.0.0.1-2", f"1-500,{open_port}", resume=str(path)))
    assert again[:300] == taken  # what was decided comes back as it was
    keys = Counter((o.host, o.port) for o in again)
    assert len(keys) == 1002 and max(keys.values()) == 1
    assert {(o.host, o.port) for o in again if o.state == PortState.OPEN} >= {
        ("127.0.0.1", open_port)}
    assert path.exists()  # the caller removes it once the outcomes are safe
    with pytest.raises(JournalMismatch, match="ports"):
        scan("127.0.0.1-2", "1-400", resume=str(path))
    stats = ScanStats()
    plan = plan_scan("127.0.0.1-2", f"1-500,{open_port}")
    journal = open_journal(str(path), plan)
    assert sum(len(b.outcomes) for b in replay(journal)) == 1002
    assert list(stream_plan(plan, stats, journal=journal)) == []
    journal.close()
    assert stats.connects == 0  # nothing left: no probe at all
    os.remove(path)


# ---- nornir runs ------------------------------------------------------------------------------


def write_inventory(directory: Path, hosts: dict[str, dict[str, Any]], ports: str) -> Path:
    directory.mkdir()
    (directory / "hosts.yaml").write_text(json.dumps(hosts), encoding="utf-8")
    (directory / "defaults.yaml").write_text(json.dumps({"data": {"portscan": {
        "ports": ports}}}), encoding="utf-8")
    return directory


def run_rows(doc: dict[str, Any]) -> Counter[tuple[str, str, int, str, str | None]]:
    return Counter((name, address, int(port), p["state"], p["reason"])
                   for name, entry in doc["hosts"].items()
                   for address, target in (entry.get("result") or {}).get("targets", {}).items()
                   for port, p in each_port(target))


#: Five addresses over four nornir hosts, LAB_UP twice: a run of about 2.5 s at --rate 1000.
RUN_PORTS = f"1-700,{LAB_OPEN_PORT},{LAB_BANNER_PORT}"
LAB_INVENTORY: dict[str, dict[str, Any]] = {
    "up": {"hostname": LAB_UP},
    "dead": {"hostname": LAB_DEAD},
    "reject": {"hostname": LAB_REJECT},
    "pair": {"hostname": LAB_NOROUTE,
             "data": {"portscan": {"targets": [LAB_NOROUTE, LAB_UP]}}},
}


def test_run_sigkill_at_random_points_then_resume_with_save_and_baseline(
        lab: NetNS, tmp_path: Path) -> None:
    """A run killed twice mid-way and run again: its report and --save are an uninterrupted
    run's, and --baseline finds nothing changed; no journal or temporary file is left."""
    inventory = write_inventory(tmp_path / "inv", LAB_INVENTORY, RUN_PORTS)
    base = tmp_path / "base.json"

    def run(*extra: str) -> list[str]:
        return [PYTHON, "-m", "nornir_portscan", "run", "-i", str(inventory), "--rate",
                "1000", "--no-progress", *extra]

    whole = lab.run(*run("--save", str(base)), timeout=90)
    assert whole.returncode == 0, whole.stderr
    expected = run_rows(json.loads(base.read_text(encoding="utf-8")))
    assert sum(expected.values()) == 5 * len(ports_of(RUN_PORTS))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, saved = out_dir / "run.json", out_dir / "saved.json"
    args = run("--format", "json", "-o", str(out), "--save", str(saved), "--baseline",
               str(base), "--fail-on-change", "--resume")
    rnd = random.Random(7)
    killed, kept = 0, 0
    for attempt in range(3):  # killed twice at most; the last run finishes
        proc = lab.popen(*args)
        # killed at a random point of the work (not of the clock, which a loaded machine
        # stretches): once the journal holds more than a random number of outcomes
        point = kept + rnd.randint(1, len(expected) // 3)
        if attempt < 2 and kill_when(proc, functools.partial(journaled_at_least,
                                                             out_dir / "run.json.journal", point)):
            killed += 1
            assert sorted(p.name for p in out_dir.iterdir()) in ([], ["run.json.journal"])
            kept = journaled(out_dir / "run.json.journal")
            continue
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr  # --fail-on-change: nothing changed
        break
    assert killed and kept, "no run was killed with work saved: the test proved nothing"
    assert f": {kept} probes were decided before" in stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert run_rows(doc) == expected
    assert run_rows(json.loads(saved.read_text(encoding="utf-8"))) == expected
    assert not any(entry["changed"] for entry in doc["hosts"].values())
    assert all(state == lab_state(address, port)
               for (_, address, port, state, _), n in expected.items())
    assert sorted(p.name for p in out_dir.iterdir()) == ["run.json", "saved.json"]


def test_run_resume_of_another_run_is_refused(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "inv", {"a": {"hostname": "127.0.0.1"},
                                                   "b": {"hostname": "127.0.0.2"}}, "1-50")
    out = tmp_path / "run.json"
    journal = Path(f"{out}.journal")
    first = cli("run", "-i", str(inventory), "--format", "json", "-o", str(out), "--resume",
                "--no-progress")
    assert first.returncode == 0, first.stderr
    assert not journal.exists() and out.exists()  # finished: the journal went
    made = subprocess.run([PYTHON, "-c", RUN_JOURNAL, str(journal)], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    before = journal.read_bytes()
    for extra, item in ((["-p", "1-60"], "host 'a': ports (journal: 1-50; now: 1-60)"),
                        (["--filter", "name=a"], "hosts differ (it has 'b', which this run "
                                                  "does not scan)")):
        done = cli("run", "-i", str(inventory), "--format", "json", "-o", str(out),
                   "--resume", "--no-progress", *extra)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and item in lines[0], lines
        assert journal.read_bytes() == before
    done = cli("run", "-i", str(inventory), "--format", "json", "-o", str(out), "--resume",
               "--no-progress")
    assert done.returncode == 0, done.stderr
    assert not journal.exists()


NORNIR_SCRIPT = """
import json, sys
from nornir import InitNornir
from nornir_portscan.plugins.tasks import portscan
nr = InitNornir(inventory={"plugin": "PortscanInventory",
                           "options": {"host_file": sys.argv[1]}},
                logging={"enabled": False})
result = nr.run(task=portscan, ports="2000-2049", resume=sys.argv[2])
print(json.dumps({name: (r[0].result if isinstance(r[0].result, dict) else r[0].result)
                  for name, r in result.items()}))
"""


#: A run's journal as a crash leaves it: host a's first 20 ports decided (a real scan's
#: outcomes), host b untouched.
RUN_CRASHED = """
import sys
from nornir_portscan.engine.api import plan_scan, run_plan
from nornir_portscan.engine.io.journal import shared_journal
plans = {"a": plan_scan("127.0.0.2", "2000-2049"), "b": plan_scan("127.0.0.3", "2000-2049")}
journal = shared_journal(sys.argv[1], "run", plans)
journal.record("a", sorted(run_plan(plans["a"]), key=lambda o: o.port)[:20])
journal.close()
"""


def test_nornir_task_resume_probes_a_hosts_remaining_pairs_only(
        make_netns: Callable[[], NetNS], tmp_path: Path) -> None:
    """A run keeps decided (address, port) pairs per nornir host, not only finished hosts:
    a host decided in part gets a SYN for each of its remaining ports, and no more."""
    ns = make_netns()
    ns.listen([("127.0.0.2", 2001, None), ("127.0.0.2", 2040, None)])
    count = syn_counters(ns, ["127.0.0.2", "127.0.0.3"])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(json.dumps({"a": {"hostname": "127.0.0.2"},
                                 "b": {"hostname": "127.0.0.3"}}), encoding="utf-8")
    journal = tmp_path / "run.journal"
    crashed = ns.python(RUN_CRASHED, str(journal))
    assert crashed.returncode == 0, crashed.stderr
    sent = count()
    done = ns.python(NORNIR_SCRIPT, str(hosts), str(journal), timeout=60)
    assert done.returncode == 0, done.stderr
    assert {h: n - sent[h] for h, n in count().items()} == {"127.0.0.2": 30, "127.0.0.3": 50}
    results = json.loads(done.stdout)
    assert results["a"]["open"] == {"127.0.0.2": [2001, 2040]}  # one from the journal
    for name, address in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        assert [p for p, _ in each_port(results[name]["targets"][address])] == list(
            range(2000, 2050))


def test_nornir_task_resume_takes_a_finished_host_from_the_journal(
        make_netns: Callable[[], NetNS], tmp_path: Path) -> None:
    """``portscan(resume=PATH)``: the journal keeps each host's outcomes; a host marked
    finished is not probed again, and the Results are the same."""
    ns = make_netns()
    ns.listen([("127.0.0.2", 2001, None)])
    count = syn_counters(ns, ["127.0.0.2", "127.0.0.3"])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(json.dumps({"a": {"hostname": "127.0.0.2"},
                                 "b": {"hostname": "127.0.0.3"}}), encoding="utf-8")
    journal = tmp_path / "run.journal"
    first = ns.python(NORNIR_SCRIPT, str(hosts), str(journal), timeout=60)
    assert first.returncode == 0, first.stderr
    sent = count()
    assert sent == {"127.0.0.2": 50, "127.0.0.3": 50}
    assert journal.exists()  # the caller deletes it once the results are safe
    second = ns.python(NORNIR_SCRIPT, str(hosts), str(journal), timeout=60)
    assert second.returncode == 0, second.stderr
    assert count() == sent  # nothing probed again
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    for name in ("a", "b"):
        assert two[name]["targets"].keys() == one[name]["targets"].keys()
        for address, target in one[name]["targets"].items():
            assert {p: v["state"] for p, v in each_port(two[name]["targets"][address])} \
                == {p: v["state"] for p, v in each_port(target)}
    assert two["a"]["open"] == {"127.0.0.2": [2001]}
    other = ns.python(NORNIR_SCRIPT.replace("2000-2049", "2000-2059"), str(hosts),
                      str(journal), timeout=60)
    assert other.returncode == 0, other.stderr
    results = json.loads(other.stdout)
    assert all("different scan" in results[n] and "ports" in results[n] for n in ("a", "b"))


# ---- the report's file, where unnamed files cannot be made or named -------------------------


def test_the_report_appears_whole_where_unnamed_files_cannot_be_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where an unnamed file could not be named, a hidden file is written and renamed (the
    report is never written twice); where naming fails only at the end, it is copied. The
    report appears whole either way, with a new file's mode, and nothing else is left."""
    from nornir_portscan.cli import outfile

    umask = os.umask(0o022)
    try:
        monkeypatch.setattr(outfile, "_nameable", {})
        monkeypatch.setattr(outfile, "_name", lambda fd, directory: None)
        out = tmp_path / "a.txt"
        with outfile.output_stream(str(out), durable=True) as stream:
            stream.write("hidden\n" * 1000)
            hidden = list(tmp_path.iterdir())
            assert [p.name[:16] for p in hidden] == [".portscan-a.txt-"]
            os.utime(hidden[0], (time.time() - 60, time.time() - 60))
            outfile._remove_leftovers(str(tmp_path), ".portscan-a.txt-")
            assert hidden[0].exists()  # its writer (this process) holds its lock
        assert out.read_text() == "hidden\n" * 1000
        assert oct(out.stat().st_mode & 0o777) == "0o644"
        device = os.stat(tmp_path).st_dev
        monkeypatch.setattr(outfile, "_nameable", {device: True})  # it worked when tried
        with outfile.output_stream(str(out)) as stream:
            stream.write("copied\n" * 1000)
            assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # unnamed, then copied
        assert out.read_text() == "copied\n" * 1000
        assert oct(out.stat().st_mode & 0o777) == "0o644"
        assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    finally:
        os.umask(umask)


NO_TMPFILE_SCAN = """
import os, sys
del os.O_TMPFILE  # a file system without unnamed files
from nornir_portscan.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_killed_writers_hidden_file_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """Without unnamed files a SIGKILL leaves the hidden file behind; its lock died with
    its writer, so the next report written to the same path removes it (a fresh one, or
    one whose writer lives, is left alone)."""
    out = tmp_path / "scan.jsonl"
    proc = subprocess.Popen([PYTHON, "-c", NO_TMPFILE_SCAN, "scan", "127.0.0.1", "-p", "all",
                             "--rate", "20000", "--format", "jsonl", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def writing() -> bool:
        return any(p.name.startswith(".portscan-scan.jsonl-") and p.stat().st_size
                   for p in tmp_path.iterdir())
    assert kill_when(proc, writing)  # killed mid-report: once the hidden file holds some
    left = [p for p in tmp_path.iterdir()]
    assert [p.name[:21] for p in left] == [".portscan-scan.jsonl-"] and left[0].stat().st_size
    live = tmp_path / ".portscan-scan.jsonl-live"
    live.write_text("a writer that is still at work")
    fresh = tmp_path / ".portscan-scan.jsonl-fresh"
    fresh.write_text("a writer that has not locked its file yet")
    old = time.time() - 60
    for path in (left[0], live):
        os.utime(path, (old, old))
    holder = subprocess.Popen([PYTHON, "-c", "import fcntl, sys, time\n"
                               "f = open(sys.argv[1])\nfcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\ntime.sleep(60)\n", str(live)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        done = subprocess.run([PYTHON, "-c", NO_TMPFILE_SCAN, "scan", "127.0.0.1", "-p",
                               "1-10", "--format", "jsonl", "-o", str(out)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        holder.kill()
        holder.communicate()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["scan.jsonl", live.name, fresh.name])
    assert len(out.read_text().splitlines()) == 10
