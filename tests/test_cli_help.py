"""The command line's own contract: help for every option, no abbreviations, the right usage.

Each check runs ``python -m nornir_portscan`` as a user would, except the walk over every
option, which reads the parser the command line builds (a subprocess could not list them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from nornir_portscan.cli import build_parser

SUBCOMMANDS = ("scan", "run", "monitor", "audit")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args],
                          capture_output=True, text=True, timeout=60)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_subcommand_is_tested_here() -> None:
    assert set(subparsers()) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help(name: str) -> None:
    parser = subparsers()[name]
    missing = [action.option_strings or [action.dest] for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []
    assert not parser.allow_abbrev


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_has_description_examples_exit_statuses_and_choices(name: str) -> None:
    done = cli(name, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"usage: nornir-portscan {name} ")
    parser = subparsers()[name]
    assert parser.description and parser.description.split()[0] in text
    examples = text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0]
    assert sum(line.strip().startswith(f"nornir-portscan {name}")
               for line in examples.splitlines()) >= 3
    statuses = text.split("\nexit status:\n", 1)[1]
    codes = {int(m) for m in re.findall(r"^  (\d+) ", statuses, flags=re.M)}
    assert codes == ({0, 2, 3, 130} if name == "scan" else {0, 1, 2, 3, 130})
    if name == "monitor":
        return  # metrics only: no --format
    # every format is named in --format's help, not hidden behind a metavar
    fmt = next(a for a in parser._actions if "--format" in a.option_strings)
    assert fmt.choices
    flat = " ".join(text.split())
    assert all(choice in flat.split("--format FORMAT", 2)[-1] for choice in fmt.choices)


@pytest.mark.parametrize(("args", "meant"), [
    (["scan", "127.0.0.1", "--port", "22"], "--ports"),
    (["scan", "127.0.0.1", "--ret", "0"], "--retries"),
    (["run", "--conf", "inventory/config.yaml"], "--config"),
    (["run", "--fail-on", "--no-progress"], "--fail-on-change"),
])
def test_abbreviations_are_refused_with_the_subcommands_usage(args: list[str],
                                                              meant: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing was scanned under a guessed option
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"usage: nornir-portscan {args[0]} ")
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nornir-portscan: error: unrecognized arguments: ")
    assert args[-2] in last and f"(did you mean {meant}?)" in last


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_an_unknown_option_shows_the_subcommands_usage(name: str) -> None:
    args = [name, "127.0.0.1", "--bogus"] if name == "scan" else [name, "--bogus"]
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"usage: nornir-portscan {name} ")
    assert done.stderr.strip().splitlines()[-1] == (
        "nornir-portscan: error: unrecognized arguments: --bogus")


def test_an_unknown_option_before_the_subcommand_shows_the_top_level_usage() -> None:
    done = cli("--bogus", "scan", "127.0.0.1")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: nornir-portscan [-h]")
