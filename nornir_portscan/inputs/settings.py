"""Scan settings, declared once: every way of setting a scan's timeout (and the rest)
derives from one entry of ``SETTINGS``.

A setting reaches a scan from four sources: a command-line flag, a nornir host's
inventory data (under ``portscan``, at host, group, defaults or subnet level), a task
argument (``portscan``, ``aportscan``), a Python argument (``scan``, ``plan_scan``); the
scope guards also from the nornir config (``user_defined.portscan``). Written by hand in
each place, the copies drifted (``recheck`` reached only ``scan``; the reuse key of a
pre-submitted scan forgot fields). So each setting is one ``Setting`` here, and:

- ``cli/common.add_setting_options`` makes the flags of ``scan``, ``run`` and ``monitor``
  (flag, metavar, help and default text from the entry);
- ``plugins/tasks/options`` accepts the ``host`` settings as inventory keys and task
  arguments, and the ``config`` ones as keys of ``user_defined.portscan``;
- ``engine/core/plan.plan_scan`` takes every setting as a keyword and validates it;
- ``ScanOptions.key`` (when a pre-submitted scan may be reused) is the ``per="scan"``
  settings' values, and ``scan_identity`` (what a resumed scan must match) those of them
  that can change an outcome (``decides``);
- the reports' ``options`` record names every setting given.

Each entry has ONE parser: it takes a value from any source (a command-line string, a
YAML value, a Python argument) and returns the typed value, or raises ``SpecError``
saying what is wrong with it. The message names neither the value nor where it came
from: each caller wraps it with its own context (``argument --timeout: '0': ...``,
``portscan.timeout = 0 (inventory data of group 'core' in groups.yaml): ...``,
``timeout=0: ...``). A string is read as the command line would read it, so YAML's
``timeout: "2"`` is two seconds, as ``--timeout 2`` is; a switch takes only true or false
(a quoted ``"false"`` would be a trap). ``None`` means "not given" everywhere: the
setting's ``default`` applies, or, in a nornir run, the next inventory layer.

Adding a setting is one entry in ``SETTINGS`` (with a valid non-default ``example``, which
the tests use to check that it reaches the reuse key, the flags and the inventory). Then
give it its typed field in ``engine/core/plan.ScanSettings`` and read that
(``plan.settings.name``) in the code that acts on it (or a ``JobOptions`` field filled in
``plan_scan`` when the scheduler needs it), and add a row to the options
tables of docs/cli.md (and docs/inventory.md for a ``host`` setting), which
tests/test_settings.py checks. An output option that is not part of what is scanned (a
report file, a resume file) is not a setting: it stays a flag of its command.

This module is imported at every start of the command line: it keeps to the standard
library's lightest parts (``ipaddress`` only when a network is parsed).
"""

# No ``from __future__ import annotations`` here: NamedTuple would compile each field's
# annotation string at every start of the command line (0.5 ms of its 1 ms).
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple

from ..errors import SpecError

#: Scans over this many addresses are refused unless the limit is raised explicitly.
DEFAULT_MAX_ADDRESSES = 65536

Per = Literal["scan", "engine"]


class Setting(NamedTuple):
    """One scan setting and everything every source needs to know about it."""

    #: The Python keyword, task argument, inventory key and report field.
    name: str
    #: What the flag does, as ``--help`` says it (the default is added from ``default_text``).
    help: str
    #: The one parser and validator: a value from any source -> the typed value, or
    #: ``SpecError`` with the problem alone (callers name the value and its source).
    parse: Callable[[Any], Any]
    #: A valid value other than the default (the tests give it through every source).
    example: Any
    #: The value when no source gives one; None lets the engine decide (adaptive timeout).
    default: Any = None
    #: How --help and the docs say the default ("adapts to measured RTT").
    default_text: str = ""
    #: Command-line flags of ``scan``, ``run`` and ``monitor``; () for Python only.
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    #: For a flag that takes no value: the value it sets (``--no-discovery``: False).
    flag_value: Any = None
    #: The flag may be repeated; its values add up (and add to the config's list).
    repeat: bool = False
    #: "scan": part of the plan, the reuse key and the scan's identity. "engine": the
    #: engine's, shared by every scan a nornir run feeds it (``run --rate`` caps the run).
    per: Per = "scan"
    #: A nornir host may set it: inventory data under ``portscan`` and task arguments.
    host: bool = False
    #: Its key in the nornir config's ``user_defined.portscan`` (run-wide), if any.
    config: str | None = None
    #: It can change an outcome, so a resumed scan must have the journal's value
    #: (``scan_identity``). False for what only paces, places or guards a scan (a rate per
    #: worker, where the shards run, the size guard): a scan resumed at a gentler rate or
    #: on a cluster is the same scan.
    decides: bool = True


# ---- the parsers: each raises SpecError(problem), never naming the value --------------------


def _number(value: Any, integral: bool) -> float | None:
    """A number from a number or a command-line string; None when it is neither."""
    if isinstance(value, str):
        try:
            return int(value) if integral else float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
        return None
    try:
        return value if integral else float(value)
    except OverflowError:  # an int too large for a float
        return None


def _checked(problem: str, integral: bool, ok: Callable[[float], bool]
             ) -> Callable[[Any], Any]:
    """A parser of numbers that ``ok`` accepts; ``problem`` says what they must be."""
    def parse(value: Any) -> Any:
        number = _number(value, integral)
        if number is None or not ok(number):
            raise SpecError(problem)
        return number
    return parse


seconds = _checked("must be a number of seconds greater than 0", False,
                   lambda v: 0 < v < math.inf)
seconds_or_zero = _checked("must be a number of seconds, 0 or more", False,
                           lambda v: 0 <= v < math.inf)
count = _checked("must be a whole number, 0 or more", True, lambda v: v >= 0)
positive_count = _checked("must be a whole number, 1 or more", True, lambda v: v >= 1)
rate = _checked("must be a number of probes per second, 0 (no cap) or more", False,
                lambda v: 0 <= v < math.inf)


def switch(value: Any) -> bool:
    """True or false, and nothing that merely looks like it (``"false"`` is a string)."""
    if not isinstance(value, bool):
        raise SpecError("must be true or false")
    return value


#: Compiled on first use (``re`` caches it): the command line starts without it.
_CLUSTER = (r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})"
            r"|local:([0-9]{1,3})")


def cluster_address(value: Any) -> str:
    """A Dask scheduler (``tcp://HOST:PORT``) or ``local:N`` workers here, as given."""
    text = value.strip() if isinstance(value, str) else ""
    match = re.fullmatch(_CLUSTER, text)
    if match is None:
        raise SpecError("must be tcp://HOST:PORT or local:N")
    port, workers = match.group(2), match.group(3)
    if port is not None and not 0 < int(port) < 65536:
        raise SpecError(f"port {port} is out of range 1-65535")
    if workers is not None and not 0 < int(workers) <= 64:
        raise SpecError("local workers must be 1-64")
    return text


def networks(value: Any) -> tuple[str, ...]:
    """Addresses or networks (one, or a list), each checked; as given, stripped."""
    import ipaddress  # here: the command line starts without it

    one = isinstance(value, str)
    items = [value] if one else value
    if isinstance(items, (Mapping, bytes)) or not isinstance(items, Iterable):
        raise SpecError("must be a network or a list of networks")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SpecError(f"must be a network or a list of networks, not {item!r:.40}")
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            # one value is named by the caller; an item of a list is named here
            raise SpecError(f"{'' if one else repr(item) + ' '}is not a valid address or "
                            f"network") from None
        out.append(item.strip())
    return tuple(out)


# ---- the table --------------------------------------------------------------------------------

SETTINGS: tuple[Setting, ...] = (
    Setting("allowed", "refuse any target outside these networks (repeatable); a name that "
            "resolves outside them is not probed", networks, ("127.0.0.0/8",), default=(),
            default_text="any", flags=("--allow",), metavar="NETWORK", repeat=True,
            config="allowed_networks"),
    Setting("max_addresses", "refuse a scan whose targets cover over N addresses",
            positive_count, 256, default=DEFAULT_MAX_ADDRESSES,
            default_text=str(DEFAULT_MAX_ADDRESSES), flags=("--max-hosts",), metavar="N",
            config="max_addresses", decides=False),
    Setting("timeout", "fixed per-try timeout in seconds", seconds, 2.0,
            default_text="adapts to measured RTT", flags=("--timeout",), metavar="S",
            host=True),
    Setting("retries", "tries after the first for silent ports", count, 1,
            default_text="as deep as loss requires", flags=("--retries",), metavar="N",
            host=True),
    # 1 or more: 0 was read as "the default" once, which a user took for "no limit"
    Setting("concurrency", "probes in flight at most", positive_count, 64,
            default_text="from the open-file limit", flags=("--concurrency",), metavar="N",
            per="engine"),
    Setting("rate", "probes per second at most; 0 for no cap", rate, 500.0,
            default_text="no cap on loopback, 10000 beyond it", flags=("--rate",),
            metavar="N", per="engine"),
    Setting("worker_rate", "probes per second at most from each vantage point: each "
            "--cluster worker's shards together (the cluster's total is N x workers, still "
            "capped by --rate if given), or this process on a local scan; 0 for no cap",
            rate, 500.0, default_text="none", flags=("--worker-rate",), metavar="N",
            host=True, decides=False),
    Setting("discovery", "probe every port of every host, even hosts that answer nothing",
            switch, False, default=True, default_text="discovery on",
            flags=("--no-discovery",), flag_value=False, host=True),
    Setting("banners", "read what open ports send first (SSH, FTP, SMTP greetings)", switch,
            True, default=False, default_text="off", flags=("--banners",), flag_value=True,
            host=True),
    Setting("banner_wait", "seconds an open port's socket is kept for its banner", seconds,
            0.5, default=1.0, default_text="1"),
    Setting("recheck", "extra seconds at most to re-probe silent hosts of networks whose "
            "ICMP rejects are rate-limited; 0 for none", seconds_or_zero, 0.0,
            default_text="10% of the scan, at least 2", flags=("--recheck",), metavar="S",
            host=True),
    Setting("cluster", "run the scan's shards on a Dask cluster: tcp://HOST:8786, or "
            "local:N for N worker processes here (needs 'nornir-portscan[dask]')",
            cluster_address, "local:2", default_text="this machine", flags=("--cluster",),
            metavar="ADDR", host=True, decides=False),
    # the order is not the outcome: a scan resumed with another seed is the same scan
    Setting("seed", "key of the probe order and the shard layout: the same scan with the "
            "same seed probes in the same order (the report's options.seed replays one)",
            count, 12345, default_text="drawn at random, recorded in the report",
            flags=("--seed",), metavar="N", host=True, decides=False),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
#: Part of the plan, the reuse key and the scan's identity.
PER_SCAN: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.per == "scan")
#: What a nornir host may set (inventory data, task arguments), in table order.
PER_HOST: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.host)
#: What the nornir config's ``user_defined.portscan`` may set, run-wide.
PER_RUN: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.config)
#: The per-scan settings that can change an outcome: a resumed scan must match them.
IDENTITY: tuple[Setting, ...] = tuple(s for s in PER_SCAN if s.decides)


def settle(given: Mapping[str, Any], settings: Iterable[Setting] = SETTINGS
           ) -> dict[str, Any]:
    """Every setting's value: the given one parsed, else its default (None is not given).

    The ``SpecError`` names the setting as a Python argument (``timeout=0: ...``): callers
    with better context (a flag, a file entry) parse their values first.
    """
    values: dict[str, Any] = {}
    for s in settings:
        value = given.get(s.name)
        if value is None:
            values[s.name] = s.default
            continue
        try:
            values[s.name] = s.parse(value)
        except SpecError as exc:
            raise SpecError(f"{s.name}={value!r:.80}: {exc}") from None
    return values


def scan_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """The per-scan settings' values in table order (defaults for those not in ``values``):
    a scan made with any other value is another scan."""
    return tuple(values.get(s.name, s.default) for s in PER_SCAN)


def scan_identity(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the settings that can change an outcome (``IDENTITY``) as a plain,
    JSON-ready dict (lists for tuples), in table order, defaults for those not in
    ``values``: what a journal's scan must match for a resume to continue it.
    ``ScanPlan.settings`` holds the values."""
    return {s.name: list(v) if isinstance(v := values.get(s.name, s.default), tuple) else v
            for s in IDENTITY}
