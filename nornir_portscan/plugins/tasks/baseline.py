"""A baseline: a previous scan to compare with, read and checked in one place.

``run --baseline FILE`` and a host's ``portscan.baseline`` (inventory data or task
argument: a dict or a path) both come here, so a file that one accepts the other
accepts too, and both say what is wrong with the same words. Accepted: a Result dict
(``targets``), a run saved by ``--save`` (``hosts`` -> nornir host -> ``result``) and
``scan --format json`` (``hosts`` -> address), compact (``extraports``) or listing
every port as documents did before. The shape is checked before any host uses it: a
baseline every host reads must not fail every host with the same message, nor reach
the comparison with a list where a mapping belongs.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

from ...errors import PortscanError
from ..common.ports import scanned_error


class BaselineError(PortscanError):
    """What is wrong with a baseline, as a phrase the caller puts after its name
    (``baseline audit.json`` / ``portscan.baseline = 'audit.json' (...)``)."""


@functools.lru_cache(maxsize=8)
def _read_json(path: str, mtime_ns: int, size: int) -> Any:
    """Parsed once per file version: every host of a run names the same baseline file."""
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_baseline(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The previous scan saved at ``path``, checked (``BaselineError`` says why not)."""
    try:
        st = os.stat(path)
        value = _read_json(os.path.realpath(path), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise BaselineError(f"cannot be read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"is not JSON: line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # not UTF-8
        raise BaselineError(f"is not JSON: {exc}") from None
    return checked(value)


def load_baseline(value: Any) -> Mapping[str, Any]:
    """A baseline given as a previous scan's dict or as the path of its saved JSON."""
    if isinstance(value, (str, os.PathLike)):
        return read_baseline(value)
    return checked(value)


def checked(value: Any) -> Mapping[str, Any]:
    problem = shape_error(value)
    if problem:
        raise BaselineError(f"is not a saved run: {problem}")
    assert isinstance(value, Mapping)
    return value


def _targets_error(targets: Any, where: str) -> str | None:
    if not isinstance(targets, Mapping):
        return f"{where} must be a mapping of addresses, not {type(targets).__name__}"
    for address, entry in targets.items():
        if not isinstance(entry, Mapping):
            return f"{where}.{address} must be a mapping with 'ports'"
        ports = entry.get("ports")
        if ports is not None and not isinstance(ports, Mapping):
            return f"{where}.{address}.ports must be a mapping of port numbers"
        problem = scanned_error(entry)
        if problem:
            return f"{where}.{address}.{problem}"
    return None


def shape_error(value: Any) -> str | None:
    """Why ``value`` is not a previous scan's shape (a dotted path to the bad part), or
    None when it is one."""
    if isinstance(value, Mapping) and "targets" in value:
        return _targets_error(value["targets"] or {}, "targets")
    hosts = value.get("hosts") if isinstance(value, Mapping) else None
    if not isinstance(hosts, Mapping):
        return ("no 'hosts' mapping (write one with --save; a portscan Result dict has "
                "'targets')")
    for name, entry in hosts.items():
        if not isinstance(entry, Mapping):
            return f"hosts.{name} must be a mapping, not {type(entry).__name__}"
        if "result" in entry:
            result = entry["result"]
            if result is not None and not isinstance(result, Mapping):
                return f"hosts.{name}.result must be a mapping or null"
            if isinstance(result, Mapping):
                problem = _targets_error(result.get("targets") or {},
                                         f"hosts.{name}.result.targets")
                if problem:
                    return problem
        elif "ports" in entry:  # scan --format json: hosts are addresses
            problem = _targets_error({name: entry}, "hosts")
            if problem:
                return problem
    return None
