"""``--quiet`` for cron: real ``run``/``scan`` command lines over loopback listeners.

Cron mails whatever a job prints, so a quiet run prints nothing at all when every host
passed and nothing needs a person, and speaks as usual when something does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _nornir_support import write_yaml_files


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    """(open, closed) on 127.0.0.1: a listener, and a port bound without listening."""
    server, closed = socket.socket(), socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    closed.bind(("127.0.0.1", 0))
    yield server.getsockname()[1], closed.getsockname()[1]
    server.close()
    closed.close()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def inventory(directory: Path, ports: list[int], expect: str) -> Path:
    return write_yaml_files(directory, groups="{}\n", defaults="{}\n", hosts=(
        f"web:\n  hostname: 127.0.0.1\n"
        f"  data: {{portscan: {{ports: {ports}, expect: {expect}}}}}\n"))


def test_a_passing_run_prints_nothing_and_writes_its_files(
        tmp_path: Path, ports: tuple[int, int]) -> None:
    op, closed = ports
    inv = inventory(tmp_path / "inv", [op, closed], f"{{open: [{op}]}}")
    loud = cli("run", "-i", str(inv), "-o", "out.txt", cwd=tmp_path)
    assert loud.returncode == 0 and "1 host, 2 probes" in loud.stderr  # the reference
    done = cli("run", "-i", str(inv), "-o", "out.txt", "--save", "s.json", "--quiet",
               cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert "web" in (tmp_path / "out.txt").read_text()
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["probes"] == 2
    # the table meant for stdout is not printed either
    done = cli("run", "-i", str(inv), "-q", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    # and a change without --fail-on-change is no reason to speak
    done = cli("run", "-i", str(inv), "-q", "--baseline", "s.json", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_violation_speaks(tmp_path: Path, ports: tuple[int, int]) -> None:
    op, closed = ports
    inv = inventory(tmp_path / "inv", [op, closed], f"{{open: [{closed}]}}")
    done = cli("run", "-i", str(inv), "-o", "out.json", "--format", "json", "--quiet",
               cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "1 violation" in done.stderr
    done = cli("run", "-i", str(inv), "--quiet", cwd=tmp_path)  # the table, on stdout
    assert done.returncode == 1
    assert f"127.0.0.1:{closed} expected open, got closed (conn-refused)" in done.stdout


def test_a_change_speaks_with_fail_on_change(tmp_path: Path, ports: tuple[int, int]) -> None:
    op, closed = ports
    inv = inventory(tmp_path / "inv", [op, closed], "{}")
    assert cli("run", "-i", str(inv), "--save", "before.json", "-q", cwd=tmp_path).returncode == 0
    same = cli("run", "-i", str(inv), "-q", "--baseline", "before.json", "--fail-on-change",
               cwd=tmp_path)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    doc = json.loads((tmp_path / "before.json").read_text())
    doc["hosts"]["web"]["result"]["targets"]["127.0.0.1"]["ports"][str(op)]["state"] = "closed"
    (tmp_path / "before.json").write_text(json.dumps(doc))
    moved = cli("run", "-i", str(inv), "-q", "--baseline", "before.json", "--fail-on-change",
                "-o", "out.txt", cwd=tmp_path)
    assert moved.returncode == 1 and moved.stdout == ""
    assert "changed since before.json" in moved.stderr, moved.stderr


def test_an_error_speaks(tmp_path: Path, ports: tuple[int, int]) -> None:
    op, _ = ports
    inv = inventory(tmp_path / "inv", [op], "{bogus: [1]}")
    done = cli("run", "-i", str(inv), "-q", "-o", "out.txt", cwd=tmp_path)
    assert done.returncode == 2 and "nornir-portscan: error: " in done.stderr
    assert "unknown expectation" in done.stderr


def test_scan_quiet_drops_the_summary_line(tmp_path: Path, ports: tuple[int, int]) -> None:
    op, closed = ports
    args = ("scan", "127.0.0.1", "-p", f"{op},{closed}", "--format", "json", "-o", "s.json")
    assert "2 probes" in cli(*args, cwd=tmp_path).stderr
    done = cli(*args, "--quiet", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert json.loads((tmp_path / "s.json").read_text())["hosts"]["127.0.0.1"]["open"] == [op]
