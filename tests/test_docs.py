"""Docs that run: every code block of README.md and docs/*.md is either run here or
shown for a stated reason, and a block that breaks is a failing test.

The convention, for anyone who writes a page:

* Every fenced block names its language; the language says what the block is.

  - ``sh``: commands to type. They run, in order, with ``bash -e -o pipefail``:
    every command must succeed. A command started in the background (``&``) must
    be stopped by the block itself (``kill %1``); anything still running when the
    block ends fails it.
  - ``python``: a program. It runs in a separate interpreter; the python blocks of
    one section share that interpreter, so a later block may use an earlier one's
    names, as a reader's session would. Only what ``pip install -e .`` installs can
    be imported (plus the extras an earlier ``pip install -e '.[extra]'`` block of
    the section named): a module of the test extras fails the block, as it would on a
    fresh machine.
  - ``console``: a transcript. Each ``$ command`` line runs, and what it prints
    (stdout and stderr together) must be the lines shown under it, where ``...``
    stands for any text and a line of only ``...`` for any lines. This is the one
    kind of block whose output is compared as shown: use it for messages that are
    part of the contract (errors), not for tables and timings.
  - ``text``, ``json``, ``xml``, ``yaml``, ``groovy``, ``ini``: output, messages and file
    contents, shown and never run. ``pyi``: Python that is shown, not run
    (signatures, values). A ``json`` block right after an ``sh`` block that shows
    jsonl probe lines is checked loosely: each (host, port, state) it shows must be
    among what the commands printed (timings and spacing may differ).
  - Any other language, or none, fails ``test_every_block_follows_the_convention``:
    decide whether the block runs or is shown.

* A ``sh``, ``python`` or ``console`` block that must not run starts with the line
  ``# not run: REASON`` (a reason of a few words, visible to the reader too):
  examples for the reader's own network, the test suite itself, lab benchmarks.
* A ``sh`` block made only of ``pip install ...`` lines is an install step: it runs
  in a clean virtual environment in ``test_fresh_install.py`` (the fresh-machine walk
  of the README), not here, where the project is already installed.
* A block with ``title="PATH"`` is a file: a relative PATH is written into the
  section's directory when the block is reached, so the blocks after it use it. A
  runnable block with a title is only written, never run.
* ``--8<-- "PATH"`` inside a block includes a file of the repository (mkdocs'
  snippets extension), so a page shows a shipped file as it is.

Where and how blocks run: README.md's blocks run in the fresh-machine walk
(``test_fresh_install.py``: a clean virtual environment, ``pip install -e .``, then every
README block in order); docs/'s run here. Here each section (a ``#`` or ``##`` heading) is
one session, in a scratch directory holding a copy of the repository's ``inventory/``
(blocks assume the repository root), with this checkout's commands (PYTHONPATH). Every
address a runnable block names must be loopback, which is checked before anything runs; and
where this machine can build network namespaces (root, iproute2, nftables) each session
runs inside a fresh one that has only ``lo``, so nothing else on the machine listens there
and no packet can leave it. Elsewhere the sessions run on this machine's own loopback.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docblocks import (
    REPO,
    Block,
    Session,
    all_blocks,
    blocked_modules,
    env_here,
    output_matches,
    problems,
    run_section,
    scratch,
    sections,
    transcript,
)
from netns import NetNS, NetNSUnavailable, why_unavailable

BLOCKS = all_blocks()
SECTIONS = sections(BLOCKS)
#: README's sections run in the fresh-machine walk (test_fresh_install.py), on a real
#: fresh install; running them here as well would only take the time twice.
RUN_SECTIONS = sorted(key for key, blocks in SECTIONS.items()
                      if key[0] != "README.md" and any(b.kind == "run" for b in blocks))


@pytest.fixture
def namespace() -> Iterator[NetNS | None]:
    """A fresh namespace with only ``lo`` where one can be built, else None."""
    if why_unavailable() is not None:
        yield None
        return
    try:
        ns = NetNS("doc")
    except NetNSUnavailable:
        yield None
        return
    try:
        yield ns
    finally:
        ns.destroy()


# ---- the convention --------------------------------------------------------------------------


def test_every_block_follows_the_convention() -> None:
    found = [problem for block in BLOCKS for problem in problems(block)]
    assert not found, "\n".join(found)
    # the pages were read, and every kind of block is in use
    kinds = {(b.lang, b.kind) for b in BLOCKS}
    assert {("sh", "run"), ("python", "run"), ("console", "run"), ("sh", "install"),
            ("sh", "not-run"), ("sh", "file"), ("yaml", "shown")} <= kinds, kinds


@pytest.mark.parametrize("key", RUN_SECTIONS, ids=[f"{p}#{s}" for p, s in RUN_SECTIONS])
def test_section_runs(key: tuple[str, str], tmp_path: Path,
                      namespace: NetNS | None) -> None:
    session = Session(cwd=scratch(tmp_path), env=env_here(), python=sys.executable,
                      netns=namespace, blocked=blocked_modules())
    found = run_section(SECTIONS[key], session)
    assert not found, "\n\n".join(found)


# ---- the shipped inventory's first run, on this machine's own loopback ----------------------


def _listen(family: socket.AddressFamily, host: str) -> socket.socket | None:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
    except OSError:
        return None
    sock.listen(8)
    return sock


def test_first_run_lists_what_listens_here(tmp_path: Path) -> None:
    """README's main command, from the repository root, names every port that listens on
    127.0.0.1 and ::1 (the test opens one on each, wherever the kernel puts it) and exits
    0: the shipped expectations hold on any machine."""
    listeners = [s for s in (_listen(socket.AF_INET, "127.0.0.1"),
                             _listen(socket.AF_INET6, "::1")) if s is not None]
    assert listeners
    try:
        done = subprocess.run(["nornir-portscan", "run"], cwd=scratch(tmp_path),
                              env=env_here(), capture_output=True, text=True, timeout=240)
    finally:
        ports = [s.getsockname()[1] for s in listeners]
        for sock in listeners:
            sock.close()
    assert done.returncode == 0, done.stdout + done.stderr
    words = done.stdout.split()
    for port in ports:
        assert str(port) in words, f"port {port} listens but is not in the report:\n" + (
            done.stdout)
    assert "Traceback" not in done.stdout + done.stderr


# ---- what the pages say the install brings ----------------------------------------------------

INSTALLS = re.compile(r"This installs the `nornir-portscan` command and the `nornir_portscan`"
                      r"\s+package, with\s+(?P<names>[^.(]+)")


def test_the_dependency_lists_are_pyprojects() -> None:
    """Each page that says what ``pip install -e .`` brings names exactly the dependencies
    of pyproject.toml (a fresh machine gets those, no more, no fewer)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the package supports 3.10
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_")
              for d in project["dependencies"]}
    found: dict[str, set[str]] = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for match in INSTALLS.finditer(page.read_text(encoding="utf-8")):
            names = re.split(r",\s*|\s+and\s+", " ".join(match["names"].split()))
            found[page.name] = {n.strip().lower().replace("-", "_") for n in names if n.strip()}
    assert set(found) >= {"index.md", "getting-started.md"}
    assert {page: names for page, names in found.items() if names != wanted} == {}


# ---- the runner itself fails when it should ---------------------------------------------------


def _block(lang: str, text: str, title: str | None = None) -> Block:
    return Block(page="docs/x.md", line=1, section="x", lang=lang, title=title, text=text)


def _session(tmp_path: Path) -> Session:
    return Session(cwd=scratch(tmp_path), env=env_here(), python=sys.executable,
                   blocked=blocked_modules())


def test_the_runner_reports_a_failing_command_and_a_leftover_listener(tmp_path: Path) -> None:
    session = _session(tmp_path)
    assert session.run(_block("sh", "true\nfalse\ntrue")).status != 0
    left = session.run(_block("sh", "python3 -m http.server 0 --bind 127.0.0.1 "
                                    ">/dev/null 2>&1 &\nsleep 0.2"))
    assert left.status != 0 and "left processes running" in left.error
    assert session.run(_block("sh", "sleep 30 &\nkill %1")).status == 0


def test_the_runner_refuses_what_a_fresh_install_lacks(tmp_path: Path) -> None:
    pytest.importorskip("nornir_utils")  # a test extra; without it there is nothing to refuse
    session = _session(tmp_path)
    try:
        ran = session.run(_block("python", "from nornir_utils.plugins.functions import "
                                           "print_result"))
        assert ran.status == 1 and "fresh machine" in ran.error, ran.error
        assert session.run(_block("python", "import nornir, rich, yaml\nx = 1")).status == 0
        assert session.run(_block("python", "assert x == 1")).status == 0  # one session
    finally:
        session.close()


def test_the_runner_compares_transcripts(tmp_path: Path) -> None:
    session = _session(tmp_path)
    good = "$ echo one; echo two\none\n...\n$ echo 'port 0 is bad'\nport ... is bad"
    assert session.run(_block("console", good)).status == 0
    assert session.run(_block("console", "$ echo one\ntwo")).status != 0
    assert list(transcript("$ a\nx\n\n$ b")) == [("a", ["x"]), ("b", [])]
    assert output_matches(["a ... c"], ["a b c"]) and not output_matches(["a"], ["a", "b"])


@pytest.mark.parametrize(("lang", "text", "title", "why"), [
    ("", "ls", None, "without a language"),
    ("bash", "ls", None, "neither run"),
    ("sh", "# not run: no\nls", None, "needs a reason"),
    ("sh", "nornir-portscan scan 10.0.0.1", None, "not loopback"),
    ("python", "print(1)", "/etc/x.py", "relative path"),
])
def test_the_convention_check_catches(lang: str, text: str, title: str | None,
                                      why: str) -> None:
    found = problems(_block(lang, text, title))
    assert found and why in found[0], found
