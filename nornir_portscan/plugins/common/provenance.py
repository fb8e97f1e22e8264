"""Where an inventory element, or a value in its data, was written: (file, entry).

The subnet inventory (plugins/inventory/subnets.py) records it on the elements it makes;
the tasks' option checks (plugins/tasks/options.py) read it to name the file entry of a
bad value. Neither plugin imports the other: both come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (file, entry): where an inventory element, or a value in its data, was written.
Origin = tuple[str, str]


def sourced(element: Any, origin: Origin) -> Any:
    """``element``, marked as written at ``origin``, with no part of its data filled from
    elsewhere yet."""
    element.origin = origin
    element.filled = {}
    return element


def origin_of(element: object, path: Sequence[str] = ()) -> Origin | None:
    """Where ``element.data`` at ``path`` (a key path) was written, or None when a plugin
    other than the subnet inventory made the element.

    A known host covered by a subnet gets the subnet's data where it has none of its
    own: those parts name the subnet entry, the rest the host's entry.
    """
    filled: dict[tuple[str, ...], Origin] = getattr(element, "filled", None) or {}
    for end in range(len(path), 0, -1):
        origin = filled.get(tuple(path[:end]))
        if origin is not None:
            return origin
    found: Origin | None = getattr(element, "origin", None)
    return found


def written_data(defaults: object) -> list[tuple[Origin, Any]] | None:
    """The ``data`` of every entry of the files, as written: hosts, groups, defaults and
    subnet entries, including values no host ends up with (a subnet's value a known host
    overrides, a group no host is in). None when another plugin made the inventory."""
    found: list[tuple[Origin, Any]] | None = getattr(defaults, "written", None)
    return found
