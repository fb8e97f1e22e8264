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

import pytest
from netns import NetNS, jsonl

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
