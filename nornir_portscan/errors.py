"""The project's own exceptions.

Every error a user can cause by what they typed or wrote in a file is a
``PortscanError``: the command line turns it into one line and exit status 2,
so a bad value never shows up as a traceback.
"""

from __future__ import annotations


class PortscanError(Exception):
    """Base of every error caused by input the user controls."""


class SpecError(PortscanError, ValueError):
    """A target or port specification that cannot be parsed or is out of range."""


class ScopeError(PortscanError):
    """A target that the scope guards (allow-list, size limit) refuse to scan."""


class InventoryError(PortscanError):
    """A broken inventory file or host data entry; names file, entry and key."""


class OptionError(InventoryError):
    """A bad option of a plugin (a path that does not exist, a wrong type).

    ``option`` and ``problem`` are kept apart so that the command line can name the
    config file and key it was written as (``config.yaml: inventory.options.group_file``),
    which the plugin itself never sees.
    """

    def __init__(self, plugin: str, option: str, problem: str) -> None:
        super().__init__(f"{plugin} option {option}: {problem}")
        self.plugin, self.option, self.problem = plugin, option, problem


class ConfigError(InventoryError):
    """A bad key of the nornir config; ``key`` is its dotted path (``runner.options``), so
    the command line can name the config file beside it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"nornir config {key}: {problem}")
        self.key, self.problem = key, problem
