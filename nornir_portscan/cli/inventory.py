"""``run``'s nornir: a config (or an inventory directory) checked key by key, then loaded.

nornir reads a config file leniently: an unknown top-level key is ignored, a wrong
type or an unknown option surfaces as a Python error ("'list' object has no attribute
'get'", "__init__() got an unexpected keyword argument"), and SimpleInventory skips a
named group or defaults file that does not exist. A CI gate built on that can pass
because something was skipped. So every key is checked here first, against nornir's
own declarations (its Config classes' Parameters, each plugin's signature), and each
problem is one line naming the config file, the key and the value.

nornir is then built the way ``InitNornir`` builds it, one step at a time, so that a
problem is blamed on the part that has it (the runner is not "the inventory").
SimpleInventory's files are read with PortscanInventory's checks (``SimpleFiles``).

Imports beyond the standard library happen in the functions: ``scan`` builds the same
parser and must not pay for nornir.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OptionError, PortscanError

DEFAULT_CONFIG = Path("inventory") / "config.yaml"
INVENTORY_FILES = {"host_file": "hosts.yaml", "group_file": "groups.yaml",
                   "defaults_file": "defaults.yaml", "subnet_file": "subnets.yaml"}
#: The entry point group of each kind of nornir plugin a config names. (nornir keeps all
#: kinds in one table: its runner lookup would hand back an inventory plugin.)
PLUGIN_GROUPS = {"inventory": "nornir.plugins.inventory", "runner": "nornir.plugins.runners",
                 "transform_function": "nornir.plugins.transform_function"}
#: Runner options that count workers: nornir's threaded runner fails on 0 only mid-run.
_WORKER_OPTIONS = frozenset({"num_workers"})


def _squeeze(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- what nornir's config may hold, read from nornir itself -----------------------------


def config_sections() -> dict[str, dict[str, type]]:
    """Each config section and its keys' types, from nornir's Config classes."""
    from nornir.core import configuration as conf

    out: dict[str, dict[str, type]] = {}
    for name, hint in typing.get_type_hints(conf.Config.__init__).items():
        section = next((arm for arm in typing.get_args(hint) or (hint,)
                        if isinstance(arm, type) and hasattr(arm, "Parameters")), None)
        if section is not None:
            out[name] = {key: p.type for key, p in vars(section.Parameters).items()
                         if isinstance(p, conf.Parameter)}
    return out


_KINDS = ((bool, "true or false"), (int, "a whole number"), (float, "a number"),
          (str, "a string"), (list, "a list"), (dict, "a mapping"), (type(None), "null"))


def _brief(value: Any) -> str:
    """A value as written, cut visibly when long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown(value: Any) -> str:
    from ..plugins.inventory.subnets import yaml_kind

    return f"{yaml_kind(value)} {_brief(value)}" if value is not None else "null"


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits a type annotation; None when the annotation is beyond us."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(value, arm) for arm in typing.get_args(hint)]
        return True if True in verdicts else None if None in verdicts else False
    if origin is not None:
        hint = origin
    if hint is type(None) or hint is None:
        return value is None
    if not isinstance(hint, type):
        return None
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    if hint in (dict, Mapping):
        return isinstance(value, dict)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    hint = typing.get_origin(hint) or hint
    return next((name for typ, name in _KINDS if hint is typ), getattr(hint, "__name__",
                                                                       str(hint)))


class _Config:
    """One config document, and the place errors name (``config.yaml: runner.plugin``)."""

    def __init__(self, where: str, doc: dict[str, Any]) -> None:
        self.where, self.doc = where, doc

    def fail(self, key: str, problem: str) -> PortscanError:
        return PortscanError(f"{self.where}: {key}: {problem}" if key else
                             f"{self.where}: {problem}")

    def check(self) -> None:
        sections = config_sections()
        allowed = sorted([*sections, "user_defined"])
        for key, value in self.doc.items():
            if key not in allowed:
                raise self.fail("", f"unknown key {key!r} (value {_brief(value)}); allowed: "
                                    f"{', '.join(allowed)}")
        for name, keys in sections.items():
            if name in self.doc:
                self._section(name, keys)
        self._user_defined()

    def _section(self, name: str, keys: dict[str, type]) -> None:
        body = self.doc[name]
        if not isinstance(body, dict):
            raise self.fail(name, f"expected a mapping of {', '.join(keys)}, got "
                                  f"{_shown(body)}")
        for key, value in body.items():
            at = f"{name}.{key}"
            if key not in keys:
                raise self.fail(name, f"unknown key {key!r} (value {_brief(value)}); "
                                      f"allowed: {', '.join(keys)}")
            if value is None:
                raise self.fail(at, f"null is no value here: expected {_describe(keys[key])}; "
                                    f"leave the key out for nornir's default")
            if not _fits(value, keys[key]):
                raise self.fail(at, f"expected {_describe(keys[key])}, got {_shown(value)}")
            if keys[key] is list and not all(isinstance(v, str) for v in value):
                raise self.fail(at, f"expected a list of names, got {_shown(value)}")
        ssh_config = body.get("config_file") if name == "ssh" else None
        if ssh_config is not None:  # a path named must exist, as every other in the config
            from ..plugins.inventory.subnets import missing_file

            problem = missing_file(Path(ssh_config).expanduser())
            if problem is not None:
                raise self.fail(f"{name}.config_file", problem)
        level = body.get("level") if name == "logging" else None
        if level is not None and not _a_logging_level(level):
            raise self.fail(f"{name}.level", f"unknown logging level {_brief(level)}; "
                                             f"allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL")

    def _user_defined(self) -> None:
        from ..plugins.tasks.options import check_config_section

        body = self.doc.get("user_defined", {})
        if not isinstance(body, dict):
            raise self.fail("user_defined", f"expected a mapping, got {_shown(body)}")
        try:
            check_config_section(body.get("portscan"))
        except ConfigError as exc:
            raise self.fail(exc.key, exc.problem) from None


# ---- plugins: registered under the right kind, given options they take ------------------


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, frozenset[str]]:
    """Plugin names per kind, from the entry points (read once: it scans every package)."""
    from importlib.metadata import entry_points

    found = entry_points()
    return {kind_of: frozenset(ep.name for ep in found.select(group=group))
            for kind_of, group in PLUGIN_GROUPS.items()}


_registered: set[int] = set()


def _register(register: Any) -> None:
    """nornir's auto_register, once per register and process (each reads every package)."""
    if id(register) not in _registered:
        register.auto_register()
        _registered.add(id(register))


def _plugin(config: _Config, kind_of: str, key: str, name: str, register: Any) -> Any:
    """The plugin a config names, from the entry points of its own kind."""
    _register(register)
    installed = _installed()
    others = set().union(*(names for k, names in installed.items() if k != kind_of))
    found = register.available.get(name)
    if found is None or (name not in installed[kind_of] and name in others):
        what = {"inventory": "an inventory plugin", "runner": "a runner plugin",
                "transform_function": "a transform function"}[kind_of]
        raise config.fail(key, f"{name!r} is not {what} installed here; installed: "
                               f"{', '.join(sorted(installed[kind_of])) or 'none'}")
    return found


def _a_logging_level(level: str) -> bool:
    import logging  # here: `scan` loads this module for its parser, and needs no logging

    return isinstance(logging.getLevelName(level.upper()), int)


def _check_options(config: _Config, key: str, plugin: str, target: Callable[..., Any],
                   options: Any, skip: int = 0) -> None:
    """Options against the plugin's own signature: names, required ones, simple types."""
    if not isinstance(options, dict):
        raise config.fail(key, f"expected a mapping of {plugin}'s options, got "
                               f"{_shown(options)}")
    import inspect  # here: a run's config check needs it, `scan` does not

    try:
        params = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        return  # a plugin whose signature cannot be read: nornir will tell
    init = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # annotations naming what is not importable here
        hints = {}
    takes = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in takes]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for name, value in options.items():
            if name not in names:
                raise config.fail(key, f"unknown option {name!r} (value {_brief(value)}) for "
                                       f"{plugin}; allowed: {', '.join(names) or 'none'}")
    for p in takes:
        if p.name not in options:
            if p.default is p.empty:
                raise config.fail(key, f"{plugin} needs the option {p.name!r}")
            continue
        value = options[p.name]
        hint = hints.get(p.name)
        if hint is not None and _fits(value, hint) is False:
            raise config.fail(f"{key}.{p.name}", f"expected {_describe(hint)}, got "
                                                 f"{_shown(value)}")
        if p.name in _WORKER_OPTIONS and isinstance(value, int) and value < 1:
            raise config.fail(f"{key}.{p.name}", f"must be 1 or more, got {value!r}")


# ---- the two sources of an inventory ------------------------------------------------------


def _read_config(path: Path, named: bool) -> _Config:
    from ..plugins.inventory.subnets import load_yaml_mapping, missing_file

    problem = missing_file(path)
    if problem is not None:
        if path.is_dir():
            raise PortscanError(f"config file {path} is a directory: give the config file in "
                                f"it with -c, or an inventory directory with -i")
        if path.is_symlink():
            raise PortscanError(f"config file {problem}")
        hint = "" if named else " (run from the project's top folder, or give -c/-i)"
        raise PortscanError(f"config file {path} not found{hint}")
    doc = load_yaml_mapping(path, "utf-8", expected="a mapping of nornir settings "
                                                    "(inventory, runner, ...)")
    if doc is None:
        raise PortscanError(f"{path}: the config file is empty: expected a mapping of nornir "
                            f"settings, at least inventory")
    config = _Config(str(path), doc)
    config.check()
    return config


def _directory_config(base: Path) -> _Config:
    if not base.exists():
        raise PortscanError(f"inventory directory {base} does not exist")
    if not base.is_dir():
        raise PortscanError(f"{base} is a file, not an inventory directory: give the directory "
                            f"that holds hosts.yaml (or subnets.yaml), or a config file with -c")
    options = {k: str(base / v) for k, v in INVENTORY_FILES.items()
               if (base / v).exists() or (base / v).is_symlink()}  # a broken link is named
    if "host_file" not in options and "subnet_file" not in options:
        raise PortscanError(f"{base} has neither hosts.yaml nor subnets.yaml")
    return _Config(str(base), {"inventory": {"plugin": "PortscanInventory",
                                             "options": options}})


def _load_inventory(config: _Config, inv: Any, plugin: Any, transform: Any,
                    from_directory: bool) -> Any:
    """The inventory plugin's hosts, transformed; each failure blamed on its part."""
    from nornir.plugins.inventory.simple import SimpleInventory

    from ..plugins.inventory.subnets import SimpleFiles

    maker = SimpleFiles if plugin is SimpleInventory else plugin
    try:
        inventory = maker(**inv.options).load()
    except OptionError as exc:
        raise (PortscanError(exc.problem) if from_directory else
               config.fail(f"inventory.options.{exc.option}", exc.problem)) from None
    except PortscanError:
        raise  # the plugin's own message names file, entry and key
    except Exception as exc:  # another plugin's failure: blame that plugin
        raise config.fail("inventory", f"inventory plugin {inv.plugin!r} could not load: "
                                       f"{_squeeze(exc)}") from None
    if transform is not None:
        for host in inventory.hosts.values():
            try:
                transform(host, **inv.transform_function_options)
            except Exception as exc:
                raise config.fail("inventory.transform_function",
                                  f"{inv.transform_function!r} failed on host {host.name!r}: "
                                  f"{_squeeze(exc)}") from None
    return inventory


def load_nornir(config_file: str | None, directory: str | None) -> Any:
    """nornir for ``run``, from ``-c FILE`` or ``-i DIR``; any problem is one line."""
    from nornir.core import Nornir
    from nornir.core.configuration import Config as NornirConfig
    from nornir.core.plugins.connections import ConnectionPluginRegister
    from nornir.core.plugins.inventory import InventoryPluginRegister, TransformFunctionRegister
    from nornir.core.plugins.runners import RunnersPluginRegister
    from nornir.core.state import GlobalState

    config = (_directory_config(Path(directory)) if directory else
              _read_config(Path(config_file) if config_file else DEFAULT_CONFIG,
                           config_file is not None))
    settings = {k: dict(v) if isinstance(v, dict) else v for k, v in config.doc.items()}
    # `run` reports in its own words: nornir's log would only repeat them
    settings["logging"] = {**settings.get("logging", {}), "enabled": False}
    try:
        nornir_config = NornirConfig.from_dict(**settings)
    except (TypeError, ValueError, SyntaxError) as exc:  # from NORNIR_* environment variables
        raise config.fail("", f"nornir's settings from the environment: {_squeeze(exc)}"
                          ) from None
    inv, run = nornir_config.inventory, nornir_config.runner
    plugin = _plugin(config, "inventory", "inventory.plugin", inv.plugin, InventoryPluginRegister)
    _check_options(config, "inventory.options", inv.plugin, plugin, inv.options)
    transform = None
    if inv.transform_function:
        transform = _plugin(config, "transform_function", "inventory.transform_function",
                            inv.transform_function, TransformFunctionRegister)
        _check_options(config, "inventory.transform_function_options",
                       inv.transform_function, transform, inv.transform_function_options,
                       skip=1)
    elif inv.transform_function_options:
        raise config.fail("inventory.transform_function_options",
                          f"{_brief(inv.transform_function_options)} given without "
                          f"inventory.transform_function: nothing would use them")
    runner_class = _plugin(config, "runner", "runner.plugin", run.plugin, RunnersPluginRegister)
    _check_options(config, "runner.options", run.plugin, runner_class, run.options)
    try:
        runner = runner_class(**run.options)
    except Exception as exc:  # a third-party runner's own check
        raise config.fail("runner", f"runner plugin {run.plugin!r}: {_squeeze(exc)}") from None
    runner = _runner_for_portscan(runner)
    inventory = _load_inventory(config, inv, plugin, transform, from_directory=bool(directory))
    _register(ConnectionPluginRegister)  # as InitNornir does, for tasks that connect
    return Nornir(inventory=inventory, runner=runner, config=nornir_config,
                  data=GlobalState(dry_run=False))


def _runner_for_portscan(runner: Any) -> Any:
    """``PortscanRunner`` (plugins/runner.py) where the config names nornir's threaded
    runner (the default): ``run`` and ``monitor`` run only ``portscan``, whose scans all
    run at once, so a pool of threads would only take turns at building Results (a
    runbook over 4,094 hosts: 1.46 s threaded, 1.12 s on one thread; docs/performance.md).
    ``num_workers`` changes nothing a run reports. Any other runner is used as
    configured."""
    from nornir.plugins.runners import ThreadedRunner

    from ..plugins.runner import PortscanRunner

    return PortscanRunner() if type(runner) is ThreadedRunner else runner


# ---- after the run: one line per problem ---------------------------------------------------


def _hosts_failed(entry: str, hosts: list[str]) -> str:
    if not hosts or (len(hosts) == 1 and entry == f"host {hosts[0]!r}"):
        return ""
    shown = ", ".join(repr(h) for h in hosts[:3])
    more = f" and {len(hosts) - 3} more" if len(hosts) > 3 else ""
    return f" (fails host{'s' if len(hosts) > 1 else ''} {shown}{more})"


def problem_lines(nr: Any, broken: Mapping[str, tuple[str, BaseException | None]]
                  ) -> tuple[list[str], bool]:
    """The run's error lines, and whether any is bad input (not a scan that failed).

    A bad value in a group or a subnet entry fails each of its hosts; it is still one
    problem, so one line, naming the entry and the hosts it failed. Bad ``portscan``
    data no host ran into (a group without hosts, a subnet's value a known host
    overrides) is reported too: it is still bad input.
    """
    from ..plugins.tasks.options import DataError, data_errors

    lines: list[str] = []
    data: dict[str, tuple[DataError, list[str]]] = {}
    bad_input = False
    for name in sorted(broken):
        text, exc = broken[name]
        if isinstance(exc, DataError):
            data.setdefault(exc.where, (exc, []))[1].append(name)
        else:
            lines.append(text)
            bad_input = bad_input or exc is None or isinstance(exc, PortscanError)
    for error in data_errors(nr.inventory):
        data.setdefault(error.where, (error, []))
    lines += [where + _hosts_failed(exc.entry, hosts) for where, (exc, hosts) in data.items()]
    return lines, bad_input or bool(data)
