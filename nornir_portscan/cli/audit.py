"""``nornir-portscan audit``: compare a source of truth (Nautobot) with what listens.

Read the scope's records in bulk, scan the scope's networks with the engine (the same plan,
rate, resume and cluster as ``scan``), judge the outcomes (``sot/audit.py``), report in any
format of ``run``, and with ``--apply`` write back what was learnt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..errors import PortscanError
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VIOLATION,
    PORTS_FORMS,
    Interrupted,
    add_output_options,
    add_progress_options,
    add_setting_options,
    add_subcommand,
    fail,
    given_settings,
    settings_record,
)
from .outfile import output_stream

if TYPE_CHECKING:
    from ..sot.source import SourceOfTruth

FORMATS = ("table", "json", "jsonl", "csv", "junit", "nmap-xml", "html")
DEFAULT_PORTS = "top100"
DEFAULT_TOKEN_ENV = "NAUTOBOT_TOKEN"
DEFAULT_STATUS = "Active"

AUDIT_EXITS = ((EXIT_OK, "no finding: the source of truth matches what listens"),
               (EXIT_VIOLATION, "findings (each names the object to fix)"))
AUDIT_COMMON = (
    (2, "bad usage or input (no scope, no token, a bad network): one line, never a "
        "traceback"),
    (EXIT_FAILED, "the source of truth is unreachable or refused the token (one line naming "
                  "the URL and the HTTP status), or the scan could not run"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM): what was scanned is still reported"),
)


def add_audit_parser(sub: Any) -> None:
    a = add_subcommand(
        sub, "audit", summary="compare Nautobot's addresses and services with what listens",
        description="Read the IP addresses, devices, virtual machines and services that "
                    "Nautobot documents in a scope, scan the scope, and report the "
                    "differences: undocumented-service, missing-service, unknown-host, "
                    "silent-address, each naming the Nautobot object to fix. Only the "
                    "scope is probed. Without --apply nothing is written (the report "
                    "says what --apply would change).",
        examples=(("nornir-portscan audit --nautobot http://127.0.0.1:8080 --prefix "
                   "127.80.0.0/24", "one network (the API token in NAUTOBOT_TOKEN)"),
                  ("nornir-portscan audit --nautobot URL --tag audited --format junit "
                   "-o audit.xml", "the prefixes tagged 'audited', as a CI test view"),
                  ("nornir-portscan audit --nautobot URL --location dc1 --apply",
                   "record last-seen dates and unknown hosts in Nautobot")),
        exits=AUDIT_EXITS, common=AUDIT_COMMON)
    a.add_argument("--nautobot", metavar="URL",
                   help="the Nautobot server, e.g. https://nautobot.example.net (default: "
                        "the environment variable NAUTOBOT_URL)")
    a.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME",
                   help=f"environment variable holding the API token (default: "
                        f"{DEFAULT_TOKEN_ENV}); a token is never a flag's value")
    a.add_argument("--prefix", action="append", default=[], metavar="CIDR",
                   help="a network to audit (repeatable)")
    a.add_argument("--location", action="append", default=[], metavar="NAME",
                   help="audit Nautobot's prefixes at this location (repeatable)")
    a.add_argument("--tag", action="append", default=[], metavar="NAME",
                   help="audit Nautobot's prefixes with this tag (repeatable)")
    a.add_argument("-p", "--ports", default=DEFAULT_PORTS,
                   help=f"ports probed on every address besides the documented ones, to find "
                        f"what is not documented: {PORTS_FORMS} (default: {DEFAULT_PORTS})")
    a.add_argument("--apply", nargs="?", const="addresses", choices=("addresses", "services"),
                   default=None, metavar="services",
                   help="write to Nautobot: portscan_last_seen on addresses seen alive, "
                        "unknown hosts as IP addresses tagged portscan-discovered; "
                        "'--apply services' also creates the undocumented services "
                        "(default: a dry run)")
    a.add_argument("--discovered-status", default=DEFAULT_STATUS, metavar="NAME",
                   help=f"status of the IP addresses --apply creates (default: "
                        f"{DEFAULT_STATUS})")
    add_setting_options(a, "scan")
    add_output_options(a, FORMATS)
    add_progress_options(a, "progress bar of outcomes (only with --cluster)")


def _source(args: argparse.Namespace) -> SourceOfTruth:
    from ..sot.nautobot import NautobotSource, missing_extra

    why = missing_extra()
    if why:
        fail(why)
    token = os.environ.get(args.token_env, "")
    if not token.strip():
        fail(f"no API token: set the environment variable {args.token_env} "
             f"(or name another with --token-env)")
    url = (args.nautobot or os.environ.get("NAUTOBOT_URL") or "").strip()
    if not url:
        fail("audit needs --nautobot URL (or the environment variable NAUTOBOT_URL)")
    if not url.startswith(("http://", "https://")):
        fail(f"--nautobot {url!r}: must be an http:// or https:// URL")
    return NautobotSource(url, token.strip())


def cmd_audit(args: argparse.Namespace) -> int:
    from ..engine.api import plan_scan
    from ..inputs.ports import parse_ports
    from ..inputs.settings import networks
    from ..sot.model import Scope
    from ..sot.source import SotUnavailable

    try:
        scope = Scope(networks(args.prefix) if args.prefix else (), tuple(args.location),
                      tuple(args.tag))
        extra = parse_ports(args.ports)
    except (PortscanError, ValueError) as exc:
        fail(f"{exc}")
    if not scope:
        fail("audit needs a scope: --prefix CIDR, --location NAME or --tag NAME (nothing "
             "outside it is probed)")
    settings = given_settings(args)
    source = _source(args)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    try:
        snapshot = source.read(scope)
    except SotUnavailable as exc:
        print(f"nornir-portscan: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    seconds["read"] = time.monotonic() - started
    from ..sot.audit import audit_ports

    try:
        plan = plan_scan(list(snapshot.networks), audit_ports(snapshot, extra), **settings)
    except (PortscanError, ValueError) as exc:
        fail(str(exc))
    from ..engine.io.local import seeded

    plan = seeded(plan)  # the seed it probes with, drawn if not given, goes in the report
    options = {"nautobot": source.url, "prefix": list(scope.prefixes),
               "location": list(scope.locations), "tag": list(scope.tags),
               "ports": args.ports, "apply": args.apply,
               "discovered_status": args.discovered_status,
               **settings_record({**settings, "seed": plan.settings.seed}, given_only=False)}
    return _audit(args, source, snapshot, plan, options, seconds)


def _audit(args: argparse.Namespace, source: SourceOfTruth, snapshot: Any, plan: Any,
           options: dict[str, Any], seconds: dict[str, float]) -> int:
    from ..engine.api import ScanStats, replay, stream_plan
    from ..engine.core.errors import EngineError
    from ..report.audit import AuditReport, Probes, render
    from ..sot.audit import Sightings, changes, find, watched
    from ..sot.source import SotUnavailable
    from .scan import open_journal

    seen = Sightings(watch=watched(snapshot))
    keep = Probes(snapshot.addresses) if args.format in ("junit", "nmap-xml", "html") else None
    status = EXIT_OK
    interrupted = False
    journal = None
    if plan.cluster is not None:
        from .cluster import cluster_client

        cluster_client(plan.cluster)  # exit 2 without Dask, 3 unanswered: before any probe
    journal = open_journal(args, plan)
    started = time.monotonic()
    try:
        if journal is not None:
            for outcomes, runs in replay(journal, runs=True):
                seen.add(outcomes, runs)
                if keep is not None:
                    keep.add(outcomes, runs)
        for outcomes, runs in stream_plan(plan, ScanStats(), runs=True, journal=journal):
            seen.add(outcomes, runs)
            if keep is not None:
                keep.add(outcomes, runs)
    except (KeyboardInterrupt, Interrupted):
        interrupted, status = True, EXIT_INTERRUPTED
    except EngineError as exc:
        print(f"nornir-portscan: error: {exc}", file=sys.stderr)
        interrupted, status = True, EXIT_FAILED
    finally:
        if plan.cluster is not None:
            from .cluster import close_clients

            close_clients()
    seconds["scan"] = time.monotonic() - started
    findings = find(snapshot, seen)
    import datetime as _dt  # here: `scan` builds this module's parser

    today = _dt.date.today().isoformat()
    todo = changes(snapshot, findings, seen, today, services=args.apply == "services")
    applied = None
    if args.apply and not interrupted:
        started = time.monotonic()
        try:
            applied = source.apply(todo, args.discovered_status)
        except SotUnavailable as exc:
            print(f"nornir-portscan: error: {exc}", file=sys.stderr)
            status = EXIT_FAILED
        seconds["write"] = time.monotonic() - started
    report = AuditReport(source.url, findings, snapshot, options, todo, applied,
                         seen.probes, seconds, interrupted,
                         keep.finish() if keep is not None else {})
    with output_stream(args.output, durable=journal is not None) as stream:
        render(args.format, report, stream)
    if journal is not None:  # complete: the report is in place, nothing to continue
        journal.close(sync=interrupted)
        if not interrupted:
            journal.remove()
    _tell_changes(todo, applied, args.apply)
    if args.format != "table" or args.output not in (None, "-"):
        print(report.line(), file=sys.stderr)
    if status == EXIT_OK and findings:
        status = EXIT_VIOLATION
    return status


def _tell_changes(todo: Any, applied: dict[str, int] | None, mode: str | None) -> None:
    """What --apply wrote, or (a dry run) would write: one line on stderr."""
    services = f", {len(todo.new_services)} services" if mode == "services" else ""
    what = (f"portscan_last_seen={todo.today} on {len(todo.seen)} addresses, "
            f"{len(todo.new_addresses)} new addresses{services}")
    if mode is None:
        print(f"dry run: --apply would write {what}", file=sys.stderr)
    elif applied is not None:
        print(f"applied: {what}", file=sys.stderr)
    for line in todo.skipped:
        print(f"not applied: {line}", file=sys.stderr)
