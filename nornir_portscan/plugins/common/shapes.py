"""The shapes of what the ``portscan`` task leaves in ``Result.result``, as TypedDicts.

The Result is a plain dict (``print_result``, ``json.dump`` and a later run's
``baseline=`` read it as is), so its keys were checked by nobody: a key renamed
where the Result is built broke a report, not the type check. These declarations
are what the builders (plugins/tasks/result.py, ports.py) write and the reports
(report/) read; the run document around them is declared in report/document.py.

Almost every key is optional (``total=False``): documents read back from JSON may
come from an older release, and every reader already treats a missing key as
absent. Port keys are ints in memory and strings after JSON (``PortKey``).
"""

from __future__ import annotations

from typing import TypedDict

#: A port number as a dict key: int in memory, str once a document went through JSON.
PortKey = int | str


class _PortRequired(TypedDict):
    state: str  # open, closed, filtered, unreachable, error (engine/core/outcome.py)


class PortEntry(_PortRequired, total=False):
    """One probed port. A port folded into ``extraports`` has only state and reason;
    the reason is missing from a port an older document gave as a bare state."""

    reason: str | None
    rtt_ms: float | None
    attempts: int
    banner: str
    worker: str  # a cluster scan: the vantage point that probed it


class Extraports(TypedDict):
    """The address's most common (state, reason), given once (plugins/common/ports.py)."""

    state: str
    reason: str | None  # a document's extraports is checked for state and count only
    count: int


class TargetEntry(TypedDict, total=False):
    """One scanned address: its listed ports, and those folded into ``extraports``."""

    status: str  # up, down, unreachable
    name: str | None
    ports: dict[PortKey, PortEntry]
    extraports: Extraports
    scanned: str  # beside extraports: which ports were probed, as ``1-1024,8080``
    anomaly: str  # engine/core/anomaly.py: all-open, syn-proxy
    open: list[int]  # ``scan --format json`` only


class Diff(TypedDict, total=False):
    """What moved since the baseline (plugins/tasks/result.py ``diff``)."""

    opened: dict[str, list[int]]
    closed: dict[str, list[int]]
    appeared: list[str]
    vanished: list[str]


class HostResult(TypedDict, total=False):
    """``Result.result`` of one nornir host's ``portscan`` task."""

    targets: dict[str, TargetEntry]
    open: dict[str, list[int]]
    summary: dict[str, int]  # state -> ports
    violations: list[str]
    errors: list[str]  # probes that could not be made at all (a name that did not resolve)
    expect: dict[str, list[int]]  # what was checked: open, closed, not_open, ...
    elapsed_s: float
    diff: Diff
    # the wait_for_ports task (plugins/tasks/wait.py)
    waited_s: float
    rounds: int
    never_open: dict[str, list[int]]
