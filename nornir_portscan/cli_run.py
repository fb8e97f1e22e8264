"""``nornir-portscan run``: a nornir inventory's scan for people who do not write Python.

It builds nornir from a config (or an inventory directory), runs the
``portscan`` task on every (filtered) host, renders the run document and maps
the outcome to an exit status a CI job can gate on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from .errors import PortscanError

RUN_FORMATS = ("table", "json", "jsonl", "csv", "junit", "nmap-xml", "html")
DEFAULT_CONFIG = Path("inventory") / "config.yaml"
INVENTORY_FILES = {"host_file": "hosts.yaml", "group_file": "groups.yaml",
                   "defaults_file": "defaults.yaml", "subnet_file": "subnets.yaml"}


def add_run_parser(sub: Any, add_engine_options: Any) -> None:
    r = sub.add_parser("run", help="scan a nornir inventory (default: ./inventory, loopback only)")
    src = r.add_mutually_exclusive_group()
    src.add_argument("-c", "--config", metavar="FILE",
                     help=f"nornir config file (default: {DEFAULT_CONFIG})")
    src.add_argument("-i", "--inventory", metavar="DIR",
                     help="directory with hosts/groups/defaults/subnets.yaml")
    r.add_argument("--allow", action="append", default=[], metavar="NETWORK",
                   help="refuse any target outside these networks (adds to the config's "
                        "portscan.allowed_networks)")
    r.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep hosts matching a nornir F() filter, e.g. groups__contains=core")
    r.add_argument("-p", "--ports", help="ports for every host (overrides inventory data)")
    add_engine_options(r)
    r.set_defaults(discovery=None)
    r.add_argument("--format", choices=RUN_FORMATS, default="table")
    r.add_argument("-o", "--output", metavar="FILE", help="write the report here (default stdout)")
    r.add_argument("--save", metavar="FILE", help="also save the run as JSON (a later --baseline)")
    r.add_argument("--baseline", metavar="FILE", help="compare with a run saved by --save")
    r.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when the scan differs from the baseline")
    r.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    r.add_argument("--no-progress", dest="progress", action="store_false")


def _load_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise PortscanError(f"cannot read baseline {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PortscanError(f"baseline {path} is not JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise PortscanError(f"baseline {path} is not a saved run (a JSON object)")
    return data


def _filter_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _nornir(args: argparse.Namespace) -> Any:
    """InitNornir from the chosen source; any failure is one line naming the file."""
    from nornir import InitNornir
    from nornir.core.filter import F

    logging = {"enabled": False}
    try:
        if args.inventory:
            base = Path(args.inventory)
            if not base.is_dir():
                raise PortscanError(f"inventory directory {base} does not exist")
            options = {k: str(base / v) for k, v in INVENTORY_FILES.items() if (base / v).exists()}
            if "host_file" not in options and "subnet_file" not in options:
                raise PortscanError(f"{base} has neither hosts.yaml nor subnets.yaml")
            nr = InitNornir(inventory={"plugin": "PortscanInventory", "options": options},
                            logging=logging)
        else:
            config = Path(args.config) if args.config else DEFAULT_CONFIG
            if not config.is_file():
                hint = "" if args.config else " (run from the project's top folder, or give -c/-i)"
                raise PortscanError(f"config file {config} not found{hint}")
            nr = InitNornir(config_file=str(config), logging=logging)
    except PortscanError:
        raise
    except Exception as exc:  # nornir, yaml and plugin errors: one line, no traceback
        where = args.inventory or args.config or DEFAULT_CONFIG
        raise PortscanError(f"cannot load the inventory from {where}: {exc}") from None
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PortscanError(f"--filter {item!r} must look like KEY=VALUE")
        nr = nr.filter(F(**{key: _filter_value(value)}))
    if not nr.inventory.hosts:
        raise PortscanError("no hosts to scan (the inventory or the filters leave none)")
    return nr


class _Collector:
    """Keeps each host's Result as it completes, so an interrupted run still reports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[str, Any] = {}

    def task_started(self, task: Any) -> None: ...

    def task_completed(self, task: Any, result: Any) -> None: ...

    def task_instance_started(self, task: Any, host: Any) -> None: ...

    def task_instance_completed(self, task: Any, host: Any, result: Any) -> None:
        with self.lock:
            self.results[host.name] = result[0]

    def subtask_instance_started(self, task: Any, host: Any) -> None: ...

    def subtask_instance_completed(self, task: Any, host: Any, result: Any) -> None: ...


def _host_entry(r: Any) -> dict[str, Any]:
    if isinstance(r.result, dict):
        return {"failed": bool(r.failed), "error": None, "result": r.result,
                "changed": bool(r.changed), "diff": r.diff or ""}
    return {"failed": True, "error": str(r.result or r.exception), "result": None}


def _write(path: str | None, render: Any) -> None:
    from .cli import output_stream

    with output_stream(path) as stream:
        render(stream)


def cmd_run(args: argparse.Namespace) -> int:
    from .cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, Interrupted
    from .plugins.tasks import portscan
    from .report import render_document
    from .report.document import finish_document, new_document
    from .report.run_table import render, render_rows

    nr = _nornir(args)
    if args.allow:
        from .spec.scope import parse_networks

        parse_networks(args.allow)  # a bad network is a usage error before anything runs
        section = nr.config.user_defined.setdefault("portscan", {})
        section["allowed_networks"] = [*(section.get("allowed_networks") or []), *args.allow]
    if args.rate is not None or args.concurrency:
        from .engine.service import shared_engine

        shared_engine().configure(concurrency=args.concurrency or None,
                                  rate=args.rate or None)
    baseline = _load_json(args.baseline) if args.baseline else None
    task_args: dict[str, Any] = {"ports": args.ports, "timeout": args.timeout,
                                 "retries": args.retries, "discovery": args.discovery,
                                 "banners": args.banners or None, "baseline": baseline}
    task_args = {k: v for k, v in task_args.items() if v is not None}
    options = {"config": args.config, "inventory": args.inventory, "filter": args.filter,
               **{k: v for k, v in task_args.items() if k != "baseline"},
               "baseline": args.baseline}
    collector = _Collector()
    processors: list[Any] = [collector]
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if progress:
        from .plugins.processors import ProgressProcessor

        processors.append(ProgressProcessor(transient=True))
    doc = new_document(options)
    started = time.monotonic()
    interrupted = False
    try:
        nr.with_processors(processors).run(task=portscan, **task_args)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    with collector.lock:
        for name, r in sorted(collector.results.items()):
            doc["hosts"][name] = _host_entry(r)
    finish_document(doc, time.monotonic() - started, interrupted)
    color = args.output in (None, "-") and sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def report(stream: IO[str]) -> None:
        if args.format == "table":
            render(doc, stream, color=color)
        elif args.format in ("jsonl", "csv"):
            render_rows(doc, stream, args.format)
        else:
            render_document(args.format, doc, stream)

    _write(args.output, report)
    if args.save:
        _write(args.save, lambda s: s.write(json.dumps(doc, indent=2, default=str) + "\n"))
    if interrupted:
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # worker threads may still be waiting on the engine
    if any(e["failed"] and e["result"] is None for e in doc["hosts"].values()):
        for e in doc["hosts"].values():
            if e["result"] is None:
                print(f"nornir-portscan: error: {e['error']}", file=sys.stderr)
        return EXIT_USAGE
    if doc["summary"].get("violations") or any(e["failed"] for e in doc["hosts"].values()):
        return EXIT_VIOLATION
    if args.fail_on_change and any(e.get("changed") for e in doc["hosts"].values()):
        return EXIT_VIOLATION
    return EXIT_OK
