"""The suite's tiers: which tests build namespaces, start Dask, servers or other programs.

``scripts/test --fast`` leaves those tests out, so a marker a test forgot would put a
namespace or a cluster into the fast loop, or hide a fast test from it. The markers are
therefore derived, never written by hand:

- at collection, from what a test reaches: the fixtures it uses (and what they use), the
  helpers its code names, followed through the test modules' own functions and classes.
  A helper tagged with :func:`needs` (``NetNS``, ``dask_lab``, ...) gives its markers; a
  call of ``subprocess`` gives ``subprocess``; the name of a server program
  (``prometheus``, ``chromium``, ...) gives ``server``;
- while it runs, from the programs it starts (an audit hook sees every ``Popen``): a test
  that starts one without a marker that admits it fails, naming the program, so a way
  of starting processes the collection cannot see is caught in the full run.

``conftest.py`` imports the hooks below; ``pyproject.toml`` registers the markers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import nornir_portscan

#: marker -> what it means (pyproject.toml registers the same names, with these words)
MARKERS = {
    "netns": "builds a network namespace (needs root, ip and nft)",
    "cluster": "starts a Dask scheduler, workers or a local cluster",
    "server": "starts a server program (Prometheus, Chromium, ...)",
    "subprocess": "starts other programs (the command line in a fresh interpreter, ip, ...)",
    "slow": "a property test: hundreds of generated examples",
}

#: the markers that keep a test out of ``scripts/test --fast``
HEAVY = tuple(MARKERS)

#: the fast tier's selection, for ``pytest -m``
FAST = " and ".join(f"not {name}" for name in HEAVY)

#: programs that are servers: a test naming one (a path, an argv) starts a server
SERVER_PROGRAMS = ("prometheus", "chromium", "chrome", "dnsmasq", "redis-server",
                   "postgres", "nautobot")

_PROCESS_STARTERS: tuple[Callable[..., Any], ...] = (
    subprocess.run, subprocess.Popen, subprocess.call, subprocess.check_call,
    subprocess.check_output, subprocess.getoutput, subprocess.getstatusoutput,
    os.system, os.popen, os.posix_spawn, os.posix_spawnp, os.execv, os.execvp,
    asyncio.create_subprocess_exec, asyncio.create_subprocess_shell)

_LIBRARY = (*(Path(sysconfig.get_paths()[k]).resolve()
               for k in ("stdlib", "platstdlib", "purelib", "platlib")),
            Path(str(nornir_portscan.__file__)).resolve().parent,
            Path(__file__).resolve())  # this file names subprocess and starts nothing

T = TypeVar("T")


def needs(*markers: str) -> Callable[[T], T]:
    """Tag a helper or fixture function: every test that reaches it gets ``markers``."""
    unknown = set(markers) - set(MARKERS)
    if unknown:
        raise ValueError(f"unknown tier marker(s) {sorted(unknown)}; known: {sorted(MARKERS)}")

    def tag(obj: T) -> T:
        obj.__tiers__ = frozenset(markers)  # type: ignore[attr-defined]
        return obj
    return tag


# ---- at collection: what a test reaches ----------------------------------------------------


def _test_code(filename: str) -> bool:
    """Not the package under test, Python's library or an installed one (those are not
    followed: a test that runs them is judged by what it starts, at run time)."""
    where = Path(filename).resolve()
    return not any(where.is_relative_to(library) for library in _LIBRARY)


def _ours(obj: Any) -> bool:
    code = getattr(obj, "__code__", None)
    return code is not None and _test_code(code.co_filename)


def _strings(code: types.CodeType) -> Iterable[str]:
    for const in code.co_consts:
        if isinstance(const, str):
            yield const
        elif isinstance(const, tuple | frozenset):
            yield from (c for c in const if isinstance(c, str))
        elif isinstance(const, types.CodeType):
            yield from _strings(const)


def _names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _from_text(text: str) -> set[str]:
    found: set[str] = set()
    low = text.lower()
    if any(program in low for program in SERVER_PROGRAMS):
        found.add("server")
    if low == "netns":  # an argv word: ip netns add/exec
        found.add("netns")
    if low == "--cluster":
        found.add("cluster")
    return found


_known: dict[int, frozenset[str]] = {}


def reached(obj: Any, seen: set[int] | None = None) -> set[str]:
    """The tier markers of everything ``obj`` (a function or class) reaches."""
    if id(obj) in _known:
        return set(_known[id(obj)])
    seen = set() if seen is None else seen
    if id(obj) in seen:  # a cycle: what it reaches is being found further up
        return set()
    seen.add(id(obj))
    found = _reached(obj, seen)
    _known[id(obj)] = frozenset(found)  # helpers live as long as their modules
    return found


def _reached(obj: Any, seen: set[int]) -> set[str]:
    tagged = getattr(obj, "__tiers__", None)
    if tagged is not None:
        return set(tagged)
    if any(obj is starter for starter in _PROCESS_STARTERS):
        return {"subprocess"}
    if isinstance(obj, type):
        found: set[str] = set()
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)  # static and class methods
            if _ours(member):
                found |= reached(member, seen)
        return found
    if not _ours(obj):
        return set()
    code: types.CodeType = obj.__code__
    found = set()
    for text in _strings(code):
        found |= _from_text(text)
    namespace: dict[str, Any] = obj.__globals__
    names = set(_names(code))
    # helpers named through their module (``netns.NetNS``): each name may be an attribute
    helpers = [vars(value) for name in names
               if isinstance(value := namespace.get(name), types.ModuleType)
               and _ours_module(value)]
    for name in names:
        for value in (namespace.get(name), *(module.get(name) for module in helpers)):
            if value is not None:
                found |= _one(value, seen)
    return found


def _ours_module(module: types.ModuleType) -> bool:
    where = getattr(module, "__file__", None)
    return isinstance(where, str) and _test_code(where)


def _one(value: Any, seen: set[int]) -> set[str]:
    """What one name a function uses stands for."""
    if value is subprocess or value is asyncio.subprocess:
        return {"subprocess"}
    if isinstance(value, str):
        return _from_text(value) & {"server"}
    if isinstance(value, types.FunctionType | type):
        return reached(value, seen)
    return set()


def _fixture_functions(item: pytest.Item) -> Iterable[Any]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for name in item.fixturenames:  # type: ignore[attr-defined]
        defs = info.name2fixturedefs.get(name, ())
        if defs:
            yield defs[-1].func  # the definition that serves this test


def markers_of(item: pytest.Item) -> set[str]:
    """The tier markers ``item`` gets from its fixtures, its code and its kind."""
    seen: set[int] = set()
    found: set[str] = set()
    for func in _fixture_functions(item):
        found |= reached(func, seen)
    function = getattr(item, "function", None)
    if function is not None:
        found |= reached(function, seen)
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        found.add("slow")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        have = {mark.name for mark in item.iter_markers()}
        for name in sorted(markers_of(item) - have):
            item.add_marker(name)


# ---- while a test runs: what it starts -----------------------------------------------------

_started: list[list[str]] = []


def _watch(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen":
        argv = args[1]
        _started.append([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv]
                        if isinstance(argv, list | tuple) else str(argv).split())
    elif event in ("os.system", "os.posix_spawn", "os.exec"):
        _started.append(str(args[0]).split())


_watching = False


def pytest_configure(config: pytest.Config) -> None:
    global _watching
    if not _watching:  # an audit hook cannot be removed: one per process
        sys.addaudithook(_watch)
        _watching = True


def required(argv: list[str]) -> set[str]:
    """The markers one of which a test that started ``argv`` must carry."""
    inside = argv[:3] == ["ip", "netns", "exec"] or argv[1:4] == ["ip", "netns", "exec"]
    if inside:  # what runs in the namespace: the words after its name
        argv = argv[argv.index("exec") + 2:]
    # python3 -m dask ..., a run or scan with --cluster
    if argv[1:3] == ["-m", "dask"] or "--cluster" in argv:
        return {"cluster"}
    if inside or "netns" in argv[1:2]:  # ip netns add, or anything run inside one
        return {"netns"}
    # any other program (a server too: ``server`` is given at collection, from its name)
    # keeps the test out of the fast tier
    return set(HEAVY) - {"slow"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    _started.clear()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    have = {mark.name for mark in item.iter_markers()}
    missing = [(command, need) for command in _started
               if not (need := required(command)) & have]
    _started.clear()
    if missing:
        argv, need = missing[0]
        command = " ".join(argv)[:200]
        pytest.fail(f"this test started {command!r} but carries none of the markers "
                    f"{sorted(need)}: reach the program through a helper tagged with "
                    f"tiers.needs(...) (netns.NetNS, dask_procs.dask_lab, ...) or tag "
                    f"the helper that starts it", pytrace=False)
    return result
