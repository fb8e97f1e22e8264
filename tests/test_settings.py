"""Scan settings declared once (inputs/settings.py): every source of a setting derives from
its one entry, so none can be forgotten in one place.

Each test walks the table rather than naming settings, so a setting added to the table is
checked here without a line of this file changing: it gets its flags, its inventory key,
its task argument, its place in the reuse key and the options record, and its one parser
refuses a bad value through every source with the same words.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import closed_port, init_nornir, listening, write_yaml_files
from nornir.core.inventory import Host

from nornir_portscan.cli import build_parser
from nornir_portscan.cli.common import INVENTORY_COMMANDS, given_settings
from nornir_portscan.engine.core.plan import ScanSettings, plan_scan
from nornir_portscan.errors import ConfigError, InventoryError, PortscanError, SpecError
from nornir_portscan.inputs.settings import (
    BY_NAME,
    PER_HOST,
    PER_RUN,
    PER_SCAN,
    SETTINGS,
    Setting,
    scan_identity,
    settle,
)
from nornir_portscan.plugins.tasks import portscan
from nornir_portscan.plugins.tasks.options import (
    CONFIG_KEYS,
    KEYS,
    ScanOptions,
    check_config_section,
    resolve_options,
)

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("scan", "run", "monitor")
#: Refused by every parser of the table, from any source (no setting is a free string).
JUNK = "junk-value"


def ids(settings: tuple[Setting, ...]) -> list[str]:
    return [s.name for s in settings]


def parsed(s: Setting) -> Any:
    return s.parse(s.example)


def subparser(command: str) -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parser: argparse.ArgumentParser = action.choices[command]
            return parser
    raise AssertionError("no subcommands")


def cli_words(s: Setting, value: Any) -> list[str]:
    """The command line that gives ``value`` (a parsed value) to a setting."""
    if s.flag_value is not None:
        return [s.flags[0]] if value == s.flag_value else []
    items = value if s.repeat else [value]
    return [word for item in items for word in (s.flags[0], str(item))]


def host(data: dict[str, Any] | None = None) -> Host:
    return Host("h", hostname="127.0.0.1", data={"portscan": data} if data else {})


# ---- the table itself ------------------------------------------------------------------------


def test_the_table_is_well_formed() -> None:
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names)
    flags = [f for s in SETTINGS for f in s.flags]
    assert len(set(flags)) == len(flags)
    assert all(s.per in ("scan", "engine") for s in SETTINGS)
    # what a host or the run's config sets is part of the scan, never the shared engine's
    assert all(s.per == "scan" for s in (*PER_HOST, *PER_RUN))
    assert not [s for s in SETTINGS if s.host and s.config]
    for s in SETTINGS:
        assert s.help and (s.default_text or not s.flags), s.name
        assert s.metavar or s.flag_value is not None or not s.flags, s.name


def test_the_plans_typed_settings_are_the_table() -> None:
    """``ScanSettings`` (what a plan's code reads, typed) has one field per setting, in table
    order, with the table's default: a row added without its field fails here."""
    fields = dataclasses.fields(ScanSettings)
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    assert [f.default for f in fields] == [s.default for s in SETTINGS]
    assert dict(ScanSettings()) == settle({})


@pytest.mark.parametrize("s", SETTINGS, ids=ids(SETTINGS))
def test_each_setting_reaches_its_typed_field_in_the_plan(s: Setting) -> None:
    """A setting given to plan_scan is in the plan's typed field, parsed by its one parser
    (the command line's string form too), and the same value by name."""
    for given in (s.example, *([str(s.example)] if isinstance(s.example, (int, float))
                               and not isinstance(s.example, bool) else [])):
        plan = plan_scan("127.0.0.1", "22", **{s.name: given})
        assert getattr(plan.settings, s.name) == parsed(s) == plan.settings[s.name]
        assert type(getattr(plan.settings, s.name)) is type(parsed(s))


@pytest.mark.parametrize("s", SETTINGS, ids=ids(SETTINGS))
def test_each_parser_takes_its_example_and_its_own_output(s: Setting) -> None:
    value = parsed(s)
    assert value != s.default, "the example must differ from the default"
    assert s.parse(value) == value  # parsing twice (the CLI, then plan_scan) changes nothing
    if s.flag_value is None and s.flags:  # the command line's string means the same
        words = cli_words(s, value)[1::2]
        assert s.parse(words if s.repeat else words[0]) == value
    with pytest.raises(SpecError) as info:
        s.parse(JUNK)
    assert JUNK not in str(info.value), "the caller names the value, not the parser"


# ---- one parser, every source: the same words whichever way the value came in ----------------


@pytest.mark.parametrize("s", SETTINGS, ids=ids(SETTINGS))
def test_a_bad_value_is_refused_by_its_one_parser_through_every_source(s: Setting,
                                                                        ) -> None:
    with pytest.raises(SpecError) as info:
        s.parse(JUNK)
    problem = str(info.value)
    # Python: plan_scan / scan
    bad: dict[str, Any] = {s.name: JUNK}
    with pytest.raises(SpecError) as api:
        plan_scan("127.0.0.1", "22", **bad)
    assert str(api.value) == f"{s.name}={JUNK!r}: {problem}"
    # the command line, on every subcommand
    if s.flags and s.flag_value is None:
        for command in COMMANDS:
            args = ["127.0.0.1"] if command == "scan" else []
            with pytest.raises(PortscanError) as flag:
                build_parser().parse_args([command, *args, s.flags[0], JUNK])
            assert str(flag.value) == f"argument {s.flags[0]} {JUNK!r}: {problem}"
    # a host's inventory data and its task arguments
    if s.host:
        with pytest.raises(InventoryError) as data:
            resolve_options(host({s.name: JUNK}), {"ports": "22"})
        assert str(data.value) == (f"host 'h': portscan.{s.name} = {JUNK!r} (inventory data "
                                   f"of host 'h'): {problem}")
        with pytest.raises(PortscanError) as arg:
            resolve_options(host(), {"ports": "22", s.name: JUNK})
        assert str(arg.value) == f"host 'h': argument {s.name}={JUNK!r}: {problem}"
    # the nornir config's user_defined.portscan
    if s.config:
        with pytest.raises(ConfigError) as config:
            check_config_section({s.config: JUNK})
        assert str(config.value) == (f"nornir config user_defined.portscan.{s.config}: "
                                     f"{problem}, got {JUNK!r}")


def test_a_setting_that_is_not_a_hosts_says_where_it_belongs() -> None:
    not_hosts = [s for s in SETTINGS if not s.host]
    assert not_hosts
    for s in not_hosts:
        with pytest.raises(InventoryError, match=rf"portscan\.{s.name} = .*unknown key: "
                                                 rf"{s.name} is "):
            resolve_options(host({s.name: s.example}), {"ports": "22"})
        with pytest.raises(PortscanError, match=rf"argument {s.name}=.*unknown argument: "):
            resolve_options(host(), {"ports": "22", s.name: s.example})


def test_an_unknown_setting_of_plan_scan_is_a_type_error_naming_the_known_ones() -> None:
    with pytest.raises(TypeError, match=r"timeot; known: allowed, max_addresses, timeout"):
        plan_scan("127.0.0.1", "22", timeot=2)


# ---- where each source's keys come from --------------------------------------------------------


def test_inventory_keys_and_config_keys_are_the_tables() -> None:
    assert [k for k in KEYS if k in BY_NAME] == [s.name for s in PER_HOST]
    assert "recheck" in KEYS and "cluster" in KEYS
    assert list(CONFIG_KEYS) == [s.config for s in PER_RUN]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flagged_setting_is_a_flag_of_every_subcommand(command: str) -> None:
    parser = subparser(command)
    actions = {a.dest: a for a in parser._actions}
    for s in SETTINGS:
        if not s.flags:
            assert s.name not in actions
            continue
        action = actions[s.name]
        assert tuple(action.option_strings) == s.flags
        assert action.default is None  # not given: the default, or the inventory's value
        assert action.help and s.help.replace("%", "%%") in action.help
        if command in INVENTORY_COMMANDS and s.host:
            assert f"portscan.{s.name}" in action.help
        if s.config and command in INVENTORY_COMMANDS:
            assert f"portscan.{s.config}" in action.help


@pytest.mark.parametrize("command", COMMANDS)
def test_each_flag_gives_its_settings_value(command: str) -> None:
    args = ["127.0.0.1"] if command == "scan" else []
    words = [w for s in SETTINGS if s.flags for w in cli_words(s, parsed(s))]
    given = given_settings(build_parser().parse_args([command, *args, *words]))
    assert given == {s.name: parsed(s) for s in SETTINGS if s.flags}
    nothing = given_settings(build_parser().parse_args([command, *args]))
    assert nothing == {s.name: None for s in SETTINGS if s.flags}


# ---- the reuse key, the scan's identity --------------------------------------------------------


@pytest.mark.parametrize("s", PER_SCAN, ids=ids(PER_SCAN))
def test_every_per_scan_setting_changes_the_reuse_key(s: Setting) -> None:
    """A pre-submitted scan made with another value of any per-scan setting is not reused."""
    base = ScanOptions(targets=("127.0.0.1",), ports=(22,))
    other = ScanOptions(targets=("127.0.0.1",), ports=(22,), settings={s.name: parsed(s)})
    assert base.key != other.key
    assert base.key == ScanOptions(targets=("127.0.0.1",), ports=(22,),
                                   settings={s.name: s.default}).key
    plan = other.make_plan()
    assert plan.settings[s.name] == parsed(s)
    # a setting that can change an outcome makes another scan for a resume; one that only
    # paces, places or guards it does not (a journal resumed at a gentler rate continues)
    assert (scan_identity(plan.settings) != scan_identity(base.make_plan().settings)) \
        == s.decides


def test_targets_ports_and_excludes_change_the_reuse_key_too() -> None:
    base = ScanOptions(targets=("127.0.0.1",), ports=(22,))
    for other in (ScanOptions(targets=("127.0.0.2",), ports=(22,)),
                  ScanOptions(targets=("127.0.0.1",), ports=(23,)),
                  ScanOptions(targets=("127.0.0.1",), ports=(22,), exclude=("127.0.0.9",))):
        assert other.key != base.key


def test_the_scans_identity_is_a_plain_dict_of_every_deciding_setting() -> None:
    plan = plan_scan("127.0.0.1", "22", **{s.name: s.example for s in SETTINGS})
    identity = scan_identity(plan.settings)
    assert list(identity) == [s.name for s in PER_SCAN if s.decides]
    assert {"timeout", "retries", "discovery", "recheck"} <= set(identity)
    assert not {"worker_rate", "cluster", "max_addresses"} & set(identity)
    assert json.loads(json.dumps(identity)) == identity  # JSON types only
    assert identity == scan_identity(settle({s.name: s.example for s in PER_SCAN}))
    assert scan_identity({}) == {s.name: list(s.default) if isinstance(s.default, tuple)
                                 else s.default for s in PER_SCAN if s.decides}


# ---- a host's settings reach its plan from inventory data and task arguments ------------------


@pytest.mark.parametrize("s", PER_HOST, ids=ids(PER_HOST))
def test_every_host_setting_reaches_the_plan_from_data_and_from_arguments(s: Setting) -> None:
    from_data = resolve_options(host({s.name: s.example}), {"ports": "22"})
    from_argument = resolve_options(host(), {"ports": "22", s.name: s.example})
    for options in (from_data, from_argument):
        assert options.plan is not None and options.plan.settings[s.name] == parsed(s)
        assert options.key != resolve_options(host(), {"ports": "22"}).key
    # the argument wins over the data, and null in the data is "not given"
    over = resolve_options(host({s.name: s.example}), {"ports": "22", s.name: s.default})
    assert over.settings[s.name] == s.default or s.default is None
    assert resolve_options(host({s.name: None}), {"ports": "22"}).settings[s.name] == s.default


def test_recheck_reaches_the_engines_options_from_inventory_data() -> None:
    """recheck once reached only ``scan``: the job options the scheduler reads now carry
    it from a host's data (0: no re-probes), and from the nornir config's layers."""
    zero = resolve_options(host({"recheck": 0}), {"ports": "22"}).plan
    default = resolve_options(host(), {"ports": "22"}).plan
    assert zero is not None and zero.options.recheck == 0.0
    assert default is not None and default.options.recheck is None


def test_the_runs_guards_reach_every_hosts_plan() -> None:
    run = {"allowed": ("127.0.0.0/8",), "max_addresses": 16}
    options = resolve_options(host(), {"ports": "22"}, run=run)
    assert options.plan is not None
    assert options.plan.settings["allowed"] == ("127.0.0.0/8",)
    assert options.plan.max_addresses == 16
    with pytest.raises(InventoryError, match="over the limit of 16"):
        resolve_options(host({"targets": ["127.0.0.0/27"]}), {"ports": "22"}, run=run)


# ---- real scans: the task takes every host setting as an argument ---------------------------


def test_the_task_takes_recheck_and_refuses_an_unknown_argument(tmp_path: Path) -> None:
    with listening() as port:
        shut = closed_port()
        nr = init_nornir(write_yaml_files(tmp_path, hosts=json.dumps(
            {"a": {"hostname": "127.0.0.1"}})))
        result = nr.run(task=portscan, ports=[port, shut], recheck=0, timeout=1.0, retries=0)
        r = result["a"][0]
        assert not r.failed, r.result
        assert r.result["open"] == {"127.0.0.1": [port]}
        bad = nr.run(task=portscan, ports=[port], recheck=-1, on_failed=True)["a"][0]
        assert bad.failed and bad.result == (
            "host 'a': argument recheck=-1: must be a number of seconds, 0 or more")
        typo = nr.run(task=portscan, ports=[port], rechek=0, on_failed=True)["a"][0]
        assert typo.failed and typo.result.startswith(
            "host 'a': argument rechek=0: unknown argument; allowed: ports, targets")


# ---- the reports' options record ----------------------------------------------------------------


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_scans_options_record_names_every_flagged_setting() -> None:
    port = closed_port()
    done = cli("scan", "127.0.0.1", "-p", str(port), "--format", "json", "--recheck", "0",
               "--allow", "127.0.0.0/8", "--max-hosts", "4")
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["options"]
    assert list(options) == ["targets", "ports", "exclude",
                             *(s.name for s in SETTINGS if s.flags)]
    assert options["recheck"] == 0.0 and options["cluster"] is None
    assert options["allowed"] == ["127.0.0.0/8"] and options["max_addresses"] == 4
    assert options["discovery"] is True and options["timeout"] is None  # defaults


def test_runs_options_record_names_the_settings_given(tmp_path: Path) -> None:
    port = closed_port()
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yaml").write_text(
        f"a: {{hostname: 127.0.0.1, data: {{portscan: {{ports: [{port}]}}}}}}\n")
    done = cli("run", "-i", "inv", "--format", "json", "--recheck", "0", "--retries", "1",
               "--max-hosts", "8", "--no-discovery", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["options"]
    # the seed is recorded given or not: the one the run drew, which replays it
    seed = options.pop("seed")
    assert isinstance(seed, int) and seed >= 0
    assert options == {"inventory": "inv", "filter": [], "max_addresses": 8, "retries": 1,
                       "discovery": False, "recheck": 0.0}


# ---- the docs say what the table says --------------------------------------------------------


def doc_table(path: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading`` in a docs page."""
    return doc_table_in((REPO / "docs" / path).read_text(encoding="utf-8"), heading)


def test_engine_md_declares_the_table_as_the_code_does() -> None:
    rows = doc_table("engine.md", "## Scan settings")
    assert [r[0] for r in rows] == [f"`{s.name}`" for s in SETTINGS]
    for row, s in zip(rows, SETTINGS, strict=True):
        assert (f"`{s.flags[0]}" in row[1]) if s.flags else row[1].startswith("none"), row
        assert row[2] == ("yes" if s.host else "no"), row
        assert row[3] == (f"`{s.config}`" if s.config else "no"), row
        assert row[4] == s.per, row


@pytest.mark.parametrize("command", ["scan", "run"])
def test_cli_md_has_a_row_for_every_flag(command: str) -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split(f"\n## `{command}`\n", 1)[1]
    first_cells = " ".join(r[0] for r in doc_table_in(section, "### Options"))
    missing = [f for s in SETTINGS for f in s.flags if f"`{f}" not in first_cells]
    assert not missing, f"docs/cli.md's {command} options table lacks {missing}"
    monitor = (REPO / "docs" / "monitor.md").read_text(encoding="utf-8").split(
        "\n## Options\n", 1)[1].split("\n|", 1)[0]
    assert not [f for s in SETTINGS for f in s.flags if f"`{f}`" not in monitor]


def doc_table_in(text: str, heading: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in text.split(f"\n{heading}\n", 1)[1].splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[2:]  # without the header and its rule


def test_inventory_md_has_a_row_for_every_portscan_key() -> None:
    rows = doc_table("inventory.md", "## Data under `portscan`")
    documented = {name for r in rows for name in r[0].replace("`", "").split(", ")}
    assert set(KEYS) <= documented, set(KEYS) - documented
