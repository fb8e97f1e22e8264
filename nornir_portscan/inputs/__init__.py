"""What to scan and how: target and port specifications and the scan settings, parsed and
validated before any packet.

Imports here stay light: the command line reads the settings table (``settings.py``) at
every start, and must not pay for the target parser's imports (socket, selectors) to print
its ``--version``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ports import parse_ports
    from .targets import Target, TargetItem, TargetSpec, parse_target, parse_targets

__all__ = ["Target", "TargetItem", "TargetSpec", "parse_ports", "parse_target", "parse_targets"]


def __getattr__(name: str) -> Any:
    if name == "parse_ports":
        from .ports import parse_ports
        return parse_ports
    if name in __all__:
        from . import targets
        return getattr(targets, name)
    raise AttributeError(name)
