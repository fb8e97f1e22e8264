"""The suite's tiers (tests/tiers.py): markers come from what a test reaches and starts,
and a test that starts a program its markers do not admit fails."""

from __future__ import annotations

import subprocess

import dask_procs
import netns
import pytest
import tiers

pytest_plugins = ["pytester"]

def test_pyproject_registers_the_tiers_markers_in_the_same_words(
        pytestconfig: pytest.Config) -> None:
    registered = dict(line.split(": ", 1) for line in pytestconfig.getini("markers")
                      if line.split(":")[0] in tiers.MARKERS)
    assert registered == tiers.MARKERS
    assert "--strict-markers" in pytestconfig.getini("addopts")


def test_the_helpers_that_build_namespaces_and_clusters_are_tagged() -> None:
    # (looked up by name: named here, they would put this test in their tiers)
    assert tiers.reached(vars(netns)["NetNS"]) == {"netns"}
    assert tiers.reached(vars(netns)["build_lab"]) == {"netns"}
    assert tiers.reached(vars(dask_procs)["DaskProcesses"]) == {"cluster"}
    assert tiers.reached(vars(dask_procs)["dask_lab"]) == {"cluster"}


def _uses_a_namespace_through_a_helper() -> None:
    netns.NetNS("x")


def _starts_a_program() -> None:
    subprocess.run(["true"], check=True)


def _names_prometheus() -> None:
    _starts_a_program()
    print("/usr/bin/prometheus")


def _calls_all() -> None:
    _uses_a_namespace_through_a_helper()
    _names_prometheus()


#: looked up by name, so that this file's tests do not reach them themselves
SAMPLES = {f.__name__: f for f in (_uses_a_namespace_through_a_helper, _starts_a_program,
                                   _names_prometheus, _calls_all)}


def test_what_a_function_reaches_through_the_test_modules_helpers() -> None:
    assert tiers.reached(SAMPLES["_uses_a_namespace_through_a_helper"]) == {"netns"}
    assert tiers.reached(SAMPLES["_starts_a_program"]) == {"subprocess"}
    assert tiers.reached(SAMPLES["_names_prometheus"]) == {"subprocess", "server"}
    assert tiers.reached(SAMPLES["_calls_all"]) == {"netns", "subprocess", "server"}
    assert tiers.reached(test_pyproject_registers_the_tiers_markers_in_the_same_words) == set()


@pytest.mark.parametrize(("command", "need"), [
    ("ip netns add npt1", {"netns"}),
    ("ip netns exec npt1 python3 -m nornir_portscan scan 127.0.0.1", {"netns"}),
    ("ip netns exec npt1 python3 -m dask scheduler --host 127.0.0.1", {"cluster"}),
    ("ip netns exec npt1 /usr/bin/prometheus --config.file=p.yml", {"netns"}),
    ("python3 -m nornir_portscan run --cluster local:2", {"cluster"}),
    ("/usr/bin/chromium --headless", {"netns", "cluster", "server", "subprocess"}),
    # what a namespace runs is judged by its program, not by the words of its arguments
    ("ip netns exec npt1 python3 -c import_prometheus_client", {"netns"}),
    ("python3 -m nornir_portscan scan 127.0.0.1", {"netns", "cluster", "server", "subprocess"}),
])
def test_what_a_started_program_requires(command: str, need: set[str]) -> None:
    assert tiers.required(command.split()) == need


CONFTEST = """
from tiers import (pytest_collection_modifyitems, pytest_configure, pytest_runtest_call,
                   pytest_runtest_setup)
import pytest
from netns import NetNS

@pytest.fixture
def namespace_maker():
    return lambda: NetNS("t")
"""

TESTS = """
import subprocess

def test_uses_the_fixture(namespace_maker):
    pass

def test_starts_a_program_plainly():
    subprocess.run(["true"], check=True)

def test_starts_a_program_the_collection_cannot_see():
    getattr(__import__("sub" + "process"), "run")(["true"], check=True)

def test_starts_nothing():
    pass
"""


def test_markers_follow_fixtures_and_code_and_an_unseen_start_fails(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    pytester.makeini("[pytest]\nmarkers =\n" + "".join(
        f"    {name}: {words}\n" for name, words in tiers.MARKERS.items()))
    fast = pytester.runpytest("-m", tiers.FAST, "-p", "no:cacheprovider")
    # the fixture's namespace and the plain start took their tests out of the fast tier;
    # the hidden start ran there and failed, naming what it started
    fast.assert_outcomes(passed=1, failed=1, deselected=2)
    fast.stdout.fnmatch_lines(["*test_starts_a_program_the_collection_cannot_see*",
                               "*this test started 'true' but carries none of the markers*"])
    netns = pytester.runpytest("-m", "netns", "--collect-only", "-q", "-p", "no:cacheprovider")
    netns.stdout.fnmatch_lines(["test_inner.py::test_uses_the_fixture", "*1/4 tests*"])
