"""The code blocks of README.md and docs/*.md, what each one is, and a runner for them.

The convention itself (which blocks run, which are shown, how to mark one) is
written down in ``test_docs.py``, whose tests enforce it; this module holds the
machinery that ``test_docs.py`` (in place) and ``test_fresh_install.py`` (in a
clean virtual environment) share: the parser, the classification, and a
``Session`` that runs one section's blocks in order, as a reader would.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import NetNS

REPO = Path(__file__).resolve().parents[1]

#: Blocks that run (see test_docs.py): shell commands, Python programs, and
#: transcripts (``$ command`` lines, each followed by what it prints).
RUN_LANGUAGES = frozenset({"sh", "python", "console"})
#: Blocks that are shown, never run: output, messages, file contents, signatures.
SHOWN_LANGUAGES = frozenset({"text", "json", "xml", "yaml", "groovy", "pyi", "ini"})

#: The first line of a runnable block that is only shown; the reason is required.
NOT_RUN = re.compile(r"^#\s*not run:\s*(?P<reason>.*)$")
#: A shell block whose every command is one of these is an install step.
INSTALL = re.compile(r"^pip install (?P<args>.+)$")
INCLUDE = re.compile(r'^-{2}8<-{2}\s+"(?P<path>[^"]+)"\s*$')
FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
TITLE = re.compile(r'\btitle="(?P<title>[^"]*)"')

#: How long one block may take before the test gives up on it.
BLOCK_TIMEOUT = 240.0


def pages() -> list[Path]:
    """Every page whose blocks are tested: the README, then docs/ in name order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language and title, its text."""

    page: str
    line: int
    section: str
    lang: str
    title: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def not_run_reason(self) -> str | None:
        first = self.text.split("\n", 1)[0]
        found = NOT_RUN.match(first)
        return found.group("reason").strip() if found else None

    @property
    def install_args(self) -> list[str] | None:
        """The arguments of each ``pip install`` when the block is an install step."""
        if self.lang != "sh":
            return None
        commands = [line.strip() for line in self.text.splitlines()
                    if line.strip() and not line.strip().startswith("#")]
        found = [INSTALL.match(_strip_comment(c)) for c in commands]
        if not commands or not all(found):
            return None
        return [m.group("args").strip() for m in found if m]

    @property
    def kind(self) -> str:
        """``run``, ``install``, ``file``, ``not-run``, ``shown`` or ``unknown``."""
        if self.lang in SHOWN_LANGUAGES:
            return "shown"
        if self.lang not in RUN_LANGUAGES:
            return "unknown"
        if self.not_run_reason is not None:
            return "not-run"
        if self.title is not None:
            return "file"
        if self.install_args is not None:
            return "install"
        return "run"

    @property
    def file_path(self) -> str | None:
        """The relative path a titled block asks the reader to write, if any."""
        if self.title is None or os.path.isabs(self.title) or " " in self.title:
            return None
        return self.title


def _strip_comment(command: str) -> str:
    """A shell line without a trailing ``# comment`` (outside quotes, which docs avoid)."""
    return re.sub(r"\s+#.*$", "", command)


def parse(path: Path) -> list[Block]:
    """The fenced blocks of one page, with ``--8<-- "file"`` includes expanded."""
    page = str(path.relative_to(REPO))
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            if re.match(r"^#{1,2} ", lines[i]):
                section = lines[i].lstrip("#").strip()
            i += 1
            continue
        indent, fence = len(opened.group("indent")), opened.group("fence")
        info = opened.group("info").strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: a code block that is never closed")
        title = TITLE.search(info)
        blocks.append(Block(page=page, line=i + 1, section=section,
                            lang=info.split()[0] if info else "",
                            title=title.group("title") if title else None,
                            text=_expand("\n".join(body))))
        i = j + 1
    return blocks


def _expand(text: str) -> str:
    out: list[str] = []
    for line in text.split("\n"):
        included = INCLUDE.match(line.strip())
        if included:
            out.append((REPO / included.group("path")).read_text(encoding="utf-8").rstrip("\n"))
        else:
            out.append(line)
    return "\n".join(out)


def all_blocks() -> list[Block]:
    return [block for path in pages() for block in parse(path)]


def sections(blocks: Sequence[Block]) -> dict[tuple[str, str], list[Block]]:
    """Blocks grouped by (page, section): each group is one reader's session."""
    grouped: dict[tuple[str, str], list[Block]] = {}
    for block in blocks:
        grouped.setdefault((block.page, block.section), []).append(block)
    return grouped


def problems(block: Block) -> list[str]:
    """What breaks the convention in this block (empty when it follows it)."""
    where = block.where
    if not block.lang:
        return [f"{where}: a code block without a language: say what it is (sh, python, "
                f"console to run; {', '.join(sorted(SHOWN_LANGUAGES))} to show)"]
    if block.kind == "unknown":
        return [f"{where}: language {block.lang!r} is neither run "
                f"({', '.join(sorted(RUN_LANGUAGES))}) nor shown "
                f"({', '.join(sorted(SHOWN_LANGUAGES))}): use one of them"]
    found: list[str] = []
    reason = block.not_run_reason
    if reason is not None and len(reason.split()) < 3:
        found.append(f"{where}: '# not run:' needs a reason of a few words, got {reason!r}")
    if block.kind == "file" and block.file_path is None:
        found.append(f"{where}: a runnable block titled {block.title!r} is a file to write, "
                     "so its title must be a relative path; or mark it '# not run: REASON'")
    if block.kind in ("run", "install"):
        found.extend(f"{where}: {bad}" for bad in not_loopback(block.text))
    return found


def not_loopback(text: str) -> list[str]:
    """Addresses named in ``text`` that are not loopback: a run block may only scan those."""
    bad: list[str] = []
    for token in re.findall(r"[0-9A-Fa-f:.]+", text):
        token = token.strip(".")
        if token.count(".") == 3 and ":" in token and "::" not in token:
            token = token.split(":")[0]  # 127.0.0.1:8786
        if token.count(".") != 3 and "::" not in token:
            continue  # port numbers, versions, file names
        try:
            address = ipaddress.ip_address(token)
        except ValueError:
            continue
        message = f"names {token}, which is not loopback (the network rule)"
        if not address.is_loopback and message not in bad:
            bad.append(message)
    return bad


# ---- running a section ------------------------------------------------------------------------

#: Runs python blocks one after another in one interpreter (a reader's session):
#: reads {"code", "name", "first", "out", "err"} lines on stdin, points fds 1 and 2
#: at the block's files while it runs, and answers {"status", "error"} on the
#: original stdout. BLOCKED names modules a fresh install does not have, HIDDEN the
#: distributions whose metadata (and entry points) it would not see.
DRIVER = textwrap.dedent(r'''
    import importlib.abc, json, os, re, sys, traceback

    import importlib.metadata as md

    BLOCKED, HIDDEN = json.loads(sys.argv[1])
    everything = md.distributions

    def distributions(**kwargs):
        """Only what a fresh install has: entry points of the rest (nornir's plugin
        registers read them) would otherwise load modules it lacks."""
        return (d for d in everything(**kwargs) if d.metadata["Name"] is None
                or re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() not in HIDDEN)

    md.distributions = distributions

    class FreshMachineOnly(importlib.abc.MetaPathFinder):
        """Refuses what `pip install -e .` does not install, as a fresh machine would."""
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in BLOCKED:
                raise ModuleNotFoundError(
                    f"No module named {top!r} on a fresh machine: `pip install -e .` does "
                    f"not install it (it comes with {BLOCKED[top]})", name=top)
            return None

    sys.meta_path.insert(0, FreshMachineOnly())
    answers = os.fdopen(os.dup(1), "w")
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1); os.dup2(err, 2)
        status, error = "ok", ""
        try:
            exec(compile("\n" * job["first"] + job["code"], job["name"], "exec"), scope)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                status, error = "failed", f"SystemExit({exc.code!r})"
        except BaseException:
            status, error = "failed", traceback.format_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            for fd in (out, err, *saved):
                os.close(fd)
        answers.write(json.dumps({"status": status, "error": error}) + "\n")
        answers.flush()
''')


@dataclass
class Ran:
    """What one block did."""

    block: Block
    status: int
    stdout: str
    stderr: str
    error: str = ""

    def explain(self) -> str:
        return (f"{self.block.where} ({self.block.lang}, section {self.block.section!r}) "
                f"exited {self.status}\n--- block\n{self.block.text}\n--- stdout\n"
                f"{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}\n{self.error}")


@dataclass
class Session:
    """One section's blocks, run in order in one directory, as a reader follows them.

    ``netns``: run every command inside it (only ``lo``: nothing else listens, and
    no packet can leave); ``None`` runs in this machine's own network.
    ``blocked``: top-level modules the python blocks may not import.
    """

    cwd: Path
    env: dict[str, str]
    python: str
    netns: NetNS | None = None
    blocked: dict[str, str] = field(default_factory=dict)
    _driver: subprocess.Popen[str] | None = None
    _count: int = 0

    def argv(self, *cmd: str) -> list[str]:
        return self.netns.argv(*cmd) if self.netns is not None else list(cmd)

    def run(self, block: Block) -> Ran:
        if block.file_path is not None:
            target = self.cwd / block.file_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text + "\n", encoding="utf-8")
        if block.kind not in ("run", "install"):
            return Ran(block, 0, "", "")
        if block.lang == "python":
            return self._python(block)
        if block.lang == "console":
            return self._console(block)
        return self.shell(block, block.text)

    def shell(self, block: Block, script: str) -> Ran:
        """``bash -e``: every command of the block must succeed; nothing may stay running."""
        proc = subprocess.Popen(self.argv("bash", "-e", "-o", "pipefail", "-c", script),
                                cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Ran(block, -1, out, err, f"timed out after {BLOCK_TIMEOUT:.0f} s")
        left = _leftovers(proc.pid)
        ran = Ran(block, proc.returncode, out, err)
        if left:
            ran.status = ran.status or -2
            ran.error = ("the block left processes running (a snippet that starts a listener "
                         f"must stop it): {left}")
        return ran

    def _console(self, block: Block) -> Ran:
        """Each ``$ command`` runs; its output (stdout and stderr as they interleave) must
        match the lines shown under it, where ``...`` stands for any text."""
        out_all: list[str] = []
        for command, expected in transcript(block.text):
            ran = self.shell(block, command + " 2>&1")
            out_all.append(f"$ {command}\n{ran.stdout}")
            if ran.status in (-1, -2):
                return ran
            if not output_matches(expected, ran.stdout.splitlines()):
                return Ran(block, 1, "".join(out_all), ran.stderr,
                           f"the output of '$ {command}' is not what the block shows:\n"
                           + "\n".join(expected))
        return Ran(block, 0, "".join(out_all), "")

    def _python(self, block: Block) -> Ran:
        driver = self._start_driver()
        self._count += 1
        out = self.cwd.parent / f"{self.cwd.name}-py{self._count}.out"
        err = out.with_suffix(".err")
        assert driver.stdin is not None and driver.stdout is not None
        first = block.line  # the fence's line: the code's first line is the next one
        driver.stdin.write(json.dumps({"code": block.text, "name": str(REPO / block.page),
                                       "first": first, "out": str(out),
                                       "err": str(err)}) + "\n")
        driver.stdin.flush()
        ready, _, _ = select.select([driver.stdout], [], [], BLOCK_TIMEOUT)
        answer = driver.stdout.readline() if ready else ""
        stdout = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
        stderr = err.read_text(encoding="utf-8", errors="replace") if err.exists() else ""
        if not answer:
            self.close()
            return Ran(block, -1, stdout, stderr,
                       f"no answer within {BLOCK_TIMEOUT:.0f} s (or the interpreter died)")
        result = json.loads(answer)
        return Ran(block, 0 if result["status"] == "ok" else 1, stdout, stderr, result["error"])

    def _start_driver(self) -> subprocess.Popen[str]:
        if self._driver is None or self._driver.poll() is not None:
            self._driver = subprocess.Popen(
                self.argv(self.python, "-c", DRIVER,
                          json.dumps([self.blocked, hidden_distributions(self.blocked)])),
                cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, start_new_session=True)
        return self._driver

    def close(self) -> None:
        if self._driver is not None:
            if self._driver.stdin is not None:
                self._driver.stdin.close()
            try:
                self._driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._driver.pid, signal.SIGKILL)
                self._driver.wait()
            self._driver = None


def _leftovers(pgid: int, grace: float = 3.0) -> str:
    """The processes of a finished block's group still alive after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _in_group(p, pgid)]
        if not alive:
            return ""
        if time.monotonic() > deadline:
            names = [(p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                     for p in alive if (p / "cmdline").exists()]
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return "; ".join(n.strip() for n in names)
        time.sleep(0.05)


def _in_group(proc: Path, pgid: int) -> bool:
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is the state: a zombie is gone, only not yet reaped
    return fields[0] != "Z" and int(fields[2]) == pgid


def transcript(text: str) -> Iterator[tuple[str, list[str]]]:
    """(command, lines shown under it) for each ``$ `` line of a console block."""
    command: str | None = None
    shown: list[str] = []
    for line in text.split("\n"):
        if line.startswith("$ "):
            if command is not None:
                yield command, shown
            command, shown = line[2:], []
        elif command is not None and line.strip():
            shown.append(line)
    if command is not None:
        yield command, shown


def output_matches(shown: Sequence[str], got: Sequence[str]) -> bool:
    """Whether ``got`` is ``shown`` line by line; ``...`` in a line is any text, and a line
    that is only ``...`` is any number of lines."""
    if not shown:
        return not got
    head, rest = shown[0], shown[1:]
    if head.strip() == "...":
        return any(output_matches(rest, got[k:]) for k in range(len(got) + 1))
    if not got:
        return False
    pattern = ".*".join(fnmatch.translate(part)[4:-3] for part in head.split("..."))
    return bool(re.fullmatch(pattern, got[0].rstrip())) and output_matches(rest, got[1:])


def shown_outcomes(block: Block) -> set[tuple[str, int, str]] | None:
    """(host, port, state) of a json block that shows jsonl probe lines, else None."""
    rows: set[tuple[str, int, str]] = set()
    for line in block.text.splitlines():
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except ValueError:
            return None
        if not isinstance(row, dict) or not {"host", "port", "state"} <= row.keys():
            return None
        rows.add((row["host"], row["port"], row["state"]))
    return rows or None


def printed_outcomes(stdout: str) -> set[tuple[str, int, str]]:
    rows: set[tuple[str, int, str]] = set()
    for line in stdout.splitlines():
        try:
            row: Any = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and {"host", "port", "state"} <= row.keys():
            rows.add((row["host"], row["port"], row["state"]))
    return rows


# ---- running the blocks of a page ----------------------------------------------------------

def env_here() -> dict[str, str]:
    """This checkout's commands first: its package (PYTHONPATH) and this interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH"))
                                        if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    for noisy in ("FORCE_COLOR", "CLICOLOR_FORCE"):
        env.pop(noisy, None)
    return env


def scratch(tmp_path: Path) -> Path:
    """A working directory that looks like the repository root to a snippet."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "inventory", work / "inventory")
    return work


def failures(ran: Ran) -> list[str]:
    """What is wrong with a block's run: a status, a traceback, an error line."""
    if ran.status != 0:
        return [ran.explain()]
    text = ran.stdout + ran.stderr
    if "Traceback (most recent call last)" in text:
        return [f"a traceback:\n{ran.explain()}"]
    errors = [line for line in ran.stderr.splitlines() if "error:" in line.lower()]
    if errors and ran.block.lang != "console":
        return [f"error lines on stderr {errors}:\n{ran.explain()}"]
    return []


def run_section(blocks: Sequence[Block], session: Session,
                installer: Session | None = None) -> list[str]:
    """Runs blocks in order, as a reader follows them; returns every failure.

    Install steps run in ``installer`` (the fresh-machine walk, whose ``pip`` needs the
    package index); without one they are not run, as the project is installed already,
    and only the extras they name become importable.
    """
    found: list[str] = []
    previous: Ran | None = None
    extras: list[str] = []
    try:
        for block in blocks:
            if block.kind == "install":
                if installer is not None:
                    found.extend(failures(installer.run(block)))
                else:
                    extras.extend(extras_of(block.install_args or []))
                    session.blocked = blocked_modules(extras)
                continue
            outcomes = shown_outcomes(block) if block.lang == "json" else None
            if outcomes is not None and previous is not None and previous.block.lang == "sh":
                missing = outcomes - printed_outcomes(previous.stdout)
                if missing:
                    found.append(f"{block.where} shows {sorted(missing)}, which "
                                 f"{previous.block.where} did not print:\n{previous.stdout}")
            ran = session.run(block)
            if block.kind == "run":
                found.extend(failures(ran))
            previous = ran
    finally:
        session.close()
    return found


# ---- what a fresh install has -----------------------------------------------------------------

def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str, extras: set[str]) -> str | None:
    """The distribution a requirement names when it applies here (a light PEP 508 reading:
    an ``extra ==`` marker applies only for the extras asked for; other markers are taken
    as true, which can only let more modules through)."""
    name, _, marker = spec.partition(";")
    wanted = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
    if wanted and not any(_norm(w) in extras for w in wanted):
        return None
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
    return _norm(found.group(1)) if found else None


def fresh_install(extras: Sequence[str] = ()) -> set[str]:
    """The distributions ``pip install -e .[extras]`` brings, from this checkout's
    pyproject.toml and the installed distributions' own requirements."""
    import importlib.metadata as md

    todo = _pyproject_list("dependencies")
    for extra in extras:
        todo.extend(_pyproject_list(extra))
    have: set[str] = {"nornir-portscan", "pip", "setuptools"}
    while todo:
        name = _requirement(todo.pop(), set())
        if name is None or name in have:
            continue
        have.add(name)
        try:
            todo.extend(md.requires(name) or [])
        except md.PackageNotFoundError:
            pass
    return have


def _pyproject_list(key: str) -> list[str]:
    """The strings of ``key = [...]`` in pyproject.toml (the dependencies, or one extra):
    the file keeps them as one-level lists of quoted strings, which is all this reads."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(key)}\s*=\s*\[(?P<items>[^\]]*)\]", text, re.M)
    if found is None:
        raise LookupError(f"pyproject.toml has no list {key!r}")
    return re.findall(r'"([^"]+)"', found.group("items"))


def blocked_modules(extras: Sequence[str] = ()) -> dict[str, str]:
    """Top-level modules installed here that a fresh ``pip install -e .`` would not bring:
    module -> the distribution(s) it comes from."""
    import importlib.metadata as md

    allowed = fresh_install(extras)
    blocked: dict[str, str] = {}
    for module, dists in md.packages_distributions().items():
        if module.startswith("_") or module in sys.stdlib_module_names:
            continue
        if not any(_norm(d) in allowed for d in dists):
            blocked[module] = ", ".join(sorted(set(dists)))
    return blocked


def hidden_distributions(blocked: dict[str, str]) -> list[str]:
    """The distributions behind ``blocked`` modules, normalised."""
    return sorted({_norm(d.strip()) for dists in blocked.values() for d in dists.split(",")})


def extras_of(args: Sequence[str]) -> list[str]:
    """The project extras named by ``pip install`` arguments such as ``-e '.[dask]'``."""
    found: list[str] = []
    for arg in args:
        for group in re.findall(r"\.\[([\w,-]+)\]", arg):
            found.extend(g.strip() for g in group.split(","))
    return found
