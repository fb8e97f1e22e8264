"""``nornir-portscan scan``: targets from the command line, one report of every probe."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import PortscanError
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PORTS_FORMS,
    Interrupted,
    add_output_options,
    add_progress_options,
    add_setting_options,
    add_subcommand,
    fail,
    given_settings,
    journal_path,
    settings_record,
)
from .outfile import output_stream

if TYPE_CHECKING:
    from ..engine.core.plan import ScanPlan
    from ..engine.io.journal import Journal

SCAN_FORMATS = ("table", "jsonl", "json", "csv")
DEFAULT_PORTS = "top100"


SCAN_EXITS = ((EXIT_OK, "the scan completed, whatever the ports' states (never 1: only "
                        "'run' checks expectations)"),)


def add_scan_parser(sub: Any) -> None:
    s = add_subcommand(
        sub, "scan", summary="scan targets given on the command line or in a file",
        description="TCP connect scan of the targets named on the command line or in files "
                    "(-iL). The table "
                    "lists every host: open ports with their services, then the hosts "
                    "without an open port (as address ranges); an unreachable address or an "
                    "unresolved name is never hidden. jsonl, json and csv have one row per "
                    "probe.",
        examples=(("nornir-portscan scan 127.0.0.1", "the top100 ports of one address"),
                  ("nornir-portscan scan 127.0.0.0/29 -p 22,80,443", "three ports, a network"),
                  ("nornir-portscan scan localhost -p all --banners",
                   "every port, and what services say first"),
                  ("nornir-portscan scan 127.0.0.1-20 --format jsonl -o scan.jsonl",
                   "one JSON line per probe"),
                  ("nornir-portscan scan -iL targets.txt -p 22,443",
                   "the targets of a file, one a line"),
                  ("nornir-portscan scan 127.0.0.0/24 -p all -o audit.jsonl --format jsonl "
                   "--resume", "a long scan that a crash does not lose: the same command "
                               "again continues it")),
        exits=SCAN_EXITS)
    s.add_argument("targets", nargs="*", metavar="TARGET",
                   help="addresses, CIDR networks, ranges (127.0.0.1-20, 127.0.0-3.1-254), "
                        "hostnames")
    s.add_argument("-iL", "--targets-file", action="append", default=[], metavar="FILE",
                   help="file of targets, one or more per line as on the command line, "
                        "# comments; - reads standard input (repeatable)")
    s.add_argument("-p", "--ports", default=DEFAULT_PORTS,
                   help=f"ports to probe: {PORTS_FORMS} (default: {DEFAULT_PORTS})")
    s.add_argument("--exclude", action="append", default=[], metavar="TARGET",
                   help="targets to leave out (repeatable)")
    s.add_argument("--exclude-file", action="append", default=[], metavar="FILE",
                   help="file of targets to leave out, one per line, # comments")
    add_setting_options(s, "scan")
    add_output_options(s, SCAN_FORMATS)
    s.add_argument("-q", "--quiet", action="store_true",
                   help="no summary line and no resume note on stderr: only warnings (what "
                        "could not be probed) and errors")
    add_progress_options(s, "progress bar of outcomes (only with --cluster)")


def cmd_scan(args: argparse.Namespace) -> int:
    from ..engine.api import plan_scan
    from ..inputs.scope import read_target_file

    try:
        targets = list(args.targets)
        for path in args.targets_file:
            listed = read_target_file(path)
            if not listed:
                where = "standard input" if path == "-" else path
                fail(f"{where}: no targets in it (one a line, # comments)")
            targets.extend(listed)
        if not targets:
            fail("no targets: name them on the command line or in a file (-iL FILE); "
                 "see nornir-portscan scan --help")
        exclude = list(args.exclude)
        for path in args.exclude_file:
            exclude.extend(read_target_file(path))
        plan = plan_scan(targets, args.ports, exclude=exclude, **given_settings(args))
    except (PortscanError, ValueError) as exc:
        fail(str(exc) + _port_as_target_hint(args.targets, args.ports))
    if plan.cluster is not None:
        from .cluster import close_clients, cluster_client, with_progress

        # before any output (and before a journal is made): exit 2 without Dask, 3 unanswered
        cluster_client(plan.cluster)
        journal = open_journal(args, plan)
        try:
            # the bar counts what is left: a resumed scan's journal is replayed first
            return _scan(args, plan, lambda batches: with_progress(
                batches, plan.spec.count() * len(plan.ports) - _decided(journal),
                sys.stderr.isatty() if args.progress is None else args.progress), journal)
        finally:
            close_clients()
    return _scan(args, plan, lambda batches: batches, open_journal(args, plan))


def open_journal(args: argparse.Namespace, plan: ScanPlan) -> Journal | None:
    """With --resume, the scan's journal beside -o FILE: created, or opened to continue
    (another scan's journal is refused, exit 2, and left as it is)."""
    path = journal_path(args)
    if path is None:
        return None
    from ..engine.api import open_journal as open_scan_journal

    return open_scan_journal(path, plan)


def _decided(journal: Journal | None) -> int:
    if journal is None:
        return 0
    from ..engine.api import SCAN

    return journal.section(SCAN).decided.count


def _scan(args: argparse.Namespace, plan: ScanPlan,
          wrap: Callable[[Iterator[Any]], Iterable[Any]],
          journal: Journal | None = None) -> int:
    from ..engine.api import ScanStats, replay, stream_plan
    from ..engine.core.errors import EngineError
    from ..engine.io.local import seeded
    from ..report import ScanSummary, writer_for

    # the seed it probes with, drawn if not given: the report's options.seed replays the scan
    plan = seeded(plan)
    options: dict[str, Any] = {"targets": args.targets, "ports": args.ports,
                               "exclude": args.exclude,
                               **({"targets_file": args.targets_file}
                                  if args.targets_file else {}),
                               **settings_record({**given_settings(args),
                                                  "seed": plan.settings.seed},
                                                 given_only=False)}
    summary = ScanSummary(options=options, port_count=len(plan.ports),
                          ports_label=ports_label(args.ports, len(plan.ports)))
    status = EXIT_OK
    started = time.monotonic()
    color = args.output in (None, "-") and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    with output_stream(args.output, durable=journal is not None) as stream:
        writer = writer_for(args.format, stream, color=color, all_ports=args.all_ports,
                            ports_per_host=len(plan.ports))
        stats = ScanStats()
        try:
            if journal is not None:
                for outcomes, runs in replay(journal, runs=True):
                    summary.add(outcomes, runs)
                    writer.write(outcomes, runs)
                _resuming(journal, summary.total, len(plan.ports) * plan.spec.count(),
                          args.quiet)
            for outcomes, runs in wrap(stream_plan(plan, stats, runs=True, journal=journal)):
                summary.add(outcomes, runs)
                writer.write(outcomes, runs)
        except (KeyboardInterrupt, Interrupted):
            summary.interrupted = True
            status = EXIT_INTERRUPTED
        except EngineError as exc:
            # the machine could not run the scan (no sockets at all): keep what was decided
            print(f"nornir-portscan: error: {exc}", file=sys.stderr)
            summary.interrupted = True
            status = EXIT_FAILED
        summary.elapsed = time.monotonic() - started
        summary.connects = stats.connects
        writer.finish(summary)
        if journal is not None:
            # all it holds is written before the report is; synced unless the report,
            # complete, is made durable instead (and the journal then goes)
            journal.close(sync=status != EXIT_OK)
    if journal is not None and status == EXIT_OK:
        journal.remove()  # the report is complete and in place: nothing to continue
    for warning in (stats.resolver_warning(), summary.warning()):
        if warning:
            print(warning, file=sys.stderr)
    if (not args.quiet or status != EXIT_OK) and (args.format != "table"
                                                  or args.output not in (None, "-")):
        print(summary.line(), file=sys.stderr)
    return status


def _resuming(journal: Journal, decided: int, planned: int, quiet: bool = False) -> None:
    """One line on stderr: what a resumed scan found (and anything its journal lost)."""
    lost = journal.loaded.warning(journal.path)
    if lost:
        print(lost, file=sys.stderr)
    if decided and not quiet:
        print(f"resuming from {journal.path}: {decided} of at most {planned} probes were "
              f"decided before", file=sys.stderr)


def _port_as_target_hint(targets: list[str], ports: str) -> str:
    """``scan -p 22 80 127.0.0.1``: argparse took 80 for a target. A bare number is never
    one (an address has dots or colons), so it was meant as a port."""
    strays = [t.strip(",") for t in targets if t.strip(",").isdigit()]
    if not strays:
        return ""
    given = [] if ports == DEFAULT_PORTS else [ports.strip(",")]
    return f" (ports are one comma-separated list: -p {','.join([*given, *strays])})"


def ports_label(spec: str, count: int) -> str:
    """``top100 (100 ports)`` when the ports were named rather than listed (a list such as
    ``top100``, a service, ``all``): a reader cannot tell from the table what was probed."""
    if not any(c.isalpha() for c in spec) and spec.strip() != "-":
        return ""
    text = f"{spec} ({count} port{'s' if count != 1 else ''}"
    if spec == DEFAULT_PORTS:
        text += ", the default: -p all for every port"
    return text + ")"
