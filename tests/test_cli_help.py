"""The command line's own contract: help for every option, no abbreviations, the right usage.

Each check runs ``python -m nornir_portscan`` as a user would, except the walk over every
option, which reads the parser the command line builds (a subprocess could not list them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nornir_portscan.cli import build_parser

SUBCOMMANDS = ("scan", "run", "monitor", "audit")
CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


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


@pytest.mark.parametrize(("args", "extras", "meant"), [
    (["scan", "127.0.0.1", "--port", "22"], "--port 22", "--ports"),
    (["scan", "127.0.0.1", "--ret", "0"], "--ret 0", "--retries"),
    (["run", "--conf", "inventory/config.yaml"], "--conf inventory/config.yaml", "--config"),
    (["run", "--fail-on", "--no-progress"], "--fail-on", "--fail-on-change"),
])
def test_abbreviations_are_refused_in_one_line_naming_the_option_meant(
        args: list[str], extras: str, meant: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing was scanned under a guessed option
    assert done.stderr == (f"nornir-portscan: error: unrecognized arguments: "
                           f"{extras} (did you mean {meant}?); "
                           f"see nornir-portscan {args[0]} --help\n")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_an_unknown_option_is_one_line_naming_the_subcommands_help(name: str) -> None:
    args = [name, "127.0.0.1", "--bogus"] if name == "scan" else [name, "--bogus"]
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr == ("nornir-portscan: error: unrecognized arguments: --bogus; "
                           f"see nornir-portscan {name} --help\n")


def test_an_unknown_option_before_the_subcommand_names_the_top_level_help() -> None:
    done = cli("--bogus", "scan", "127.0.0.1")
    assert done.returncode == 2
    assert done.stderr.startswith("nornir-portscan: error: ")
    assert done.stderr.endswith("; see nornir-portscan --help\n")
    assert done.stderr.count("\n") == 1


def test_no_command_names_the_commands() -> None:
    done = cli()
    assert done.returncode == 2
    assert done.stderr == ("nornir-portscan: error: a command is required: scan, run, monitor, "
                           "audit; see nornir-portscan --help\n")


@pytest.mark.parametrize("args", [
    ["scan"],                                     # a required argument missing
    ["scan", "127.0.0.1", "--format", "xml"],     # a choice that is not one
    ["scan", "127.0.0.1", "--timeout"],           # an option without its value
    ["run", "-c", "a.yaml", "-i", "inv"],         # options that exclude each other
])
def test_every_usage_error_is_one_line(args: list[str]) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("nornir-portscan: error: ")
    assert done.stderr.endswith(f"; see nornir-portscan {args[0]} --help\n")


@pytest.mark.parametrize(("args", "meant"), [
    (["scan", "127.0.0.1", "-p", "22", "80"], "-p 22,80"),
    (["scan", "127.0.0.1", "-p", "22,", "80", "443"], "-p 22,80,443"),
    (["scan", "127.0.0.1", "--ports=22", "80", "--format", "csv"], "-p 22,80"),
    (["scan", "127.0.0.1", "-p22", "80"], "-p 22,80"),
    (["run", "-p", "ssh", "https"], "-p ssh,https"),
    (["monitor", "-p", "22", "830"], "-p 22,830"),
    # after the ports, argparse takes 80 for a target: a bare number never is one
    (["scan", "-p", "22", "80", "127.0.0.1"], "-p 22,80"),
])
def test_ports_split_by_a_space_get_the_comma_separated_list(args: list[str],
                                                             meant: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"(ports are one comma-separated list: {meant})" in done.stderr


@pytest.mark.parametrize(("args", "meant"), [
    (["scan", "127.0.0.1", "-p", "22", "-p", "80"], "-p 22,80"),
    (["run", "--ports=22", "-p80,443"], "-p 22,80,443"),
    (["monitor", "-p", "22", "--ports", "830"], "-p 22,830"),
])
def test_ports_given_twice_are_refused_not_overridden(args: list[str], meant: str) -> None:
    """argparse keeps the last -p: 22 would silently go unscanned. nmap refuses it too."""
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr == ("nornir-portscan: error: -p given 2 "
                           f"times (ports are one comma-separated list: {meant}); see "
                           f"nornir-portscan {args[0]} --help\n")


def test_a_word_left_over_elsewhere_gets_no_ports_hint() -> None:
    done = cli("scan", "127.0.0.1", "-p", "22", "--format", "csv", "extra")
    assert done.returncode == 2
    assert "comma-separated" not in done.stderr  # not right after the ports


def _named(option: str, text: str) -> bool:
    """``option`` appears in ``text`` as itself, not as a prefix of a longer option."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def _synopsis(name: str) -> str:
    """The lines of docs/cli.md's synopsis (its first block) for one subcommand."""
    block = CLI_MD.read_text(encoding="utf-8").split("```text\n", 1)[1].split("```", 1)[0]
    commands = re.split(r"^(?=nornir-portscan )", block, flags=re.M)
    return next(c for c in commands if c.startswith(f"nornir-portscan {name} "))


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_cli_md_names_every_option_of_every_subcommand(name: str) -> None:
    """README says every option is in docs/cli.md: each of the parser's options (but -h) is
    in the synopsis line of its subcommand, and in the subcommand's section (a row of its
    options table, or for monitor, the sentence naming run's options it takes)."""
    text = CLI_MD.read_text(encoding="utf-8")
    section = text.split(f"\n## `{name}`\n", 1)[1].split("\n## ", 1)[0]
    synopsis = _synopsis(name)
    actions = [a.option_strings for a in subparsers()[name]._actions
               if a.option_strings and "--help" not in a.option_strings]
    assert actions
    # the synopsis shows one spelling of each (-p for --ports), the section every one
    assert [a for a in actions if not any(_named(o, synopsis) for o in a)] == []
    assert [o for a in actions for o in a if not _named(o, section)] == []
