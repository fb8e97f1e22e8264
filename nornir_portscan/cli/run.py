"""``nornir-portscan run``: a nornir inventory's scan for people who do not write Python.

It builds nornir from a config (or an inventory directory), runs the
``portscan`` task on every (filtered) host, renders the run document and maps
the outcome to an exit status a CI job can gate on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from ..errors import PortscanError
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    PORTS_FORMS,
    Interrupted,
    add_output_options,
    add_progress_options,
    add_setting_options,
    add_subcommand,
    collector_paused_for,
    configure_engine,
    given_settings,
    host_settings,
    interrupts_let_go,
    journal_path,
    run_settings_into,
    settings_record,
)
from .inventory import DEFAULT_CONFIG, problem_lines
from .outfile import output_stream

if TYPE_CHECKING:
    from ..plugins.common.shapes import HostResult
    from ..report.document import HostEntry

RUN_FORMATS = ("table", "json", "jsonl", "csv", "junit", "nmap-xml", "html")


RUN_EXITS = ((EXIT_OK, "every host was scanned and every expectation holds"),
             (EXIT_VIOLATION, "an expectation was violated, a host's probes could not all be "
                              "made, or (--fail-on-change) something changed since the "
                              "baseline"))


def add_run_parser(sub: Any) -> None:
    r = add_subcommand(
        sub, "run", summary="scan a nornir inventory (default: ./inventory, loopback only)",
        description="Scan every host of a nornir inventory with the ports and expectations "
                    "of its inventory data, report per host (open ports, violated "
                    "expectations, what changed since a baseline) and exit with a status "
                    "a CI job can gate on.",
        examples=(("nornir-portscan run", "the shipped inventory/config.yaml"),
                  ("nornir-portscan run -i inventory --filter groups__contains=loopback",
                   "an inventory directory, the hosts of one group"),
                  ("nornir-portscan run --format junit -o report.xml", "for a CI test view"),
                  ("nornir-portscan run --save audit.json", "keep this run ..."),
                  ("nornir-portscan run --baseline audit.json --fail-on-change",
                   "... and gate on what moved"),
                  ("nornir-portscan run --format json -o audit.json --resume",
                   "a long audit that a crash does not lose: the same command continues it")),
        exits=RUN_EXITS)
    add_inventory_options(r, "run")
    r.add_argument("-p", "--ports",
                   help=f"ports for every host, overriding inventory data: {PORTS_FORMS}")
    add_setting_options(r, "run", lambda s: s.config is None)
    add_output_options(r, RUN_FORMATS)
    r.add_argument("-q", "--quiet", action="store_true",
                   help="for cron: print nothing unless something needs a person (a "
                        "violation, a host that failed, a change with --fail-on-change, an "
                        "error); the report still goes to -o FILE and --save FILE, and to "
                        "stdout only then")
    r.add_argument("--save", metavar="FILE", help="also save the run as JSON (a later --baseline)")
    r.add_argument("--baseline", metavar="FILE", help="compare with a run saved by --save")
    r.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when the scan differs from the baseline")
    add_progress_options(r, "progress bar")


def add_inventory_options(p: argparse.ArgumentParser, command: str) -> None:
    """Where the inventory comes from, its run-wide settings (the scope guards of the
    config's ``user_defined.portscan``) and which of its hosts to scan (run and monitor)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("-c", "--config", metavar="FILE",
                     help=f"nornir config file (default: {DEFAULT_CONFIG})")
    src.add_argument("-i", "--inventory", metavar="DIR",
                     help="directory with hosts/groups/defaults/subnets.yaml")
    add_setting_options(p, command, lambda s: s.config is not None)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep hosts matching a nornir F() filter, e.g. groups__contains=core")


def _load_baseline(path: str) -> Mapping[str, Any]:
    """``--baseline FILE``, read and checked once for every host (plugins/tasks/baseline.py):
    a bad file is one line, not the same failure on each host."""
    from ..plugins.tasks.baseline import BaselineError, read_baseline

    try:
        return read_baseline(path)
    except BaselineError as exc:
        raise PortscanError(f"baseline {path} {exc}") from None


def _one_line(exc: BaseException) -> str:
    """An exception as one line: YAML errors (PyYAML's or nornir's ruamel.yaml) as file,
    line and problem, anything else with its whitespace squeezed."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem and hasattr(mark, "line"):
        name = getattr(mark, "name", None)
        where = f"{name}: " if name else ""
        return (f"{where}line {mark.line + 1}, column {mark.column + 1}: malformed YAML: "
                f"{' '.join(str(problem).split())}")
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _filter_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _nornir(args: argparse.Namespace) -> Any:
    """nornir from the chosen source (every key checked: cli/inventory.py), filtered."""
    from nornir.core.filter import F

    from .inventory import load_nornir

    nr = load_nornir(args.config, args.inventory)
    if not nr.inventory.hosts:
        raise PortscanError(f"no hosts to scan: the inventory from "
                            f"{args.inventory or args.config or DEFAULT_CONFIG} has none")
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PortscanError(f"--filter {item!r} must look like KEY=VALUE")
        nr = nr.filter(F(**{key: _filter_value(value)}))
    try:
        hosts = nr.inventory.hosts
    except Exception as exc:  # a filter nornir cannot apply to these hosts
        raise PortscanError(f"--filter {' '.join(args.filter)}: {_one_line(exc)}") from None
    if not hosts:
        raise PortscanError(f"no hosts to scan: --filter {' '.join(args.filter)} leaves none")
    return nr


class _Collector:
    """Keeps each host's Result as it completes, so an interrupted run still reports."""

    def __init__(self) -> None:
        from ..engine.core.errors import Abandoned  # here: `scan` builds this module's parser

        self.abandoned = Abandoned
        self.results: dict[str, Any] = {}

    def task_started(self, task: Any) -> None: ...

    def task_completed(self, task: Any, result: Any) -> None: ...

    def task_instance_started(self, task: Any, host: Any) -> None: ...

    def task_instance_completed(self, task: Any, host: Any, result: Any) -> None:
        if isinstance(result[0].exception, self.abandoned):
            return  # let go by an interrupt: the report shows the host as not scanned
        # no lock: a dict's item assignment is atomic, as is the copy the run takes (a
        # lock each of a big run's hosts takes in turn costs it more than its Result)
        self.results[host.name] = result[0]

    def subtask_instance_started(self, task: Any, host: Any) -> None: ...

    def subtask_instance_completed(self, task: Any, host: Any, result: Any) -> None: ...


def _collect_finished(running: Any, collector: _Collector, task_args: dict[str, Any]) -> None:
    """After an interrupt, the Results of hosts whose scans finished before it but whose
    tasks had not run (still queued for the runner, or behind a slow host in a runner that
    keeps inventory order). Waits stay stopped after an interrupt,
    so the same run once more hands over what finished and lets go of the rest at once,
    starting no scan (plugins/tasks/runs.py); the collector keeps the Results it has."""
    from nornir.core.processor import Processors

    from ..plugins.tasks import portscan

    running.processors = Processors([collector])  # the bar has stopped
    try:
        running.run(task=portscan, raise_on_error=False, **task_args)
    except (KeyboardInterrupt, Interrupted):
        pass  # a second interrupt: report what is in
    except Exception:  # those hosts stay "not scanned", as before this pass: the report
        pass  # of what is in must still be written


def _error_line(name: str, r: Any) -> str:
    """A failed host's message as one line: nornir keeps a crashed task's traceback as its
    result, which must reach neither the report nor the terminal."""
    exc = r.exception
    text = r.result if isinstance(r.result, str) else ""
    if exc is not None and not isinstance(exc, PortscanError) and (
            not text or "Traceback" in text or "\n" in text.strip()):
        return f"host {name!r}: {type(exc).__name__}: {_one_line(exc)}"
    return " ".join((text or str(exc or "failed")).split())


def _host_entry(name: str, r: Any) -> HostEntry:
    result: HostResult | str | None = r.result  # the task's dict, or why it failed
    if isinstance(result, dict):
        return {"failed": bool(r.failed), "error": None, "result": result,
                "changed": bool(r.changed), "diff": r.diff or ""}
    return {"failed": True, "error": _error_line(name, r), "result": None}


def _write(path: str | None, render: Any, durable: bool = False) -> None:
    with output_stream(path, durable=durable) as stream:
        render(stream)


def _check_ports(ports: str | None) -> None:
    """``--ports`` applies to every host: a bad value is one line, not one per host."""
    if ports is None:
        return
    from ..inputs.ports import parse_ports

    try:
        parse_ports(ports)
    except PortscanError as exc:
        raise PortscanError(f"argument --ports {ports!r}: {exc}") from None


def _stop_progress(processor: Any) -> None:
    """An interrupted run never reaches ``task_completed``: stop the bar ourselves, or the
    terminal is left without its cursor."""
    bar = getattr(processor, "_progress", None)
    if bar is not None:
        try:
            bar.stop()
        except Exception:  # drawing must never cost the report
            pass


def _scan_failed(r: Any) -> bool:
    """A failed host whose scan could not run (not one whose input was invalid)."""
    return not (isinstance(r.exception, PortscanError) or r.exception is None)


def _open_journal(args: argparse.Namespace, nr: Any, task_args: dict[str, Any]) -> Any:
    """With --resume, the run's journal beside -o FILE, checked against every host before
    anything runs: another run's journal is refused (exit 2) and left as it is."""
    path = journal_path(args)
    if path is None:
        return None
    from ..plugins.tasks.portscan import open_run_journal

    journal = open_run_journal(nr, path, **task_args)
    lost = journal.loaded.warning(journal.path)
    if lost:
        print(lost, file=sys.stderr)
    if journal.loaded.outcomes and not args.quiet:
        done = sum(s.done for s in journal.sections.values())
        print(f"resuming from {journal.path}: {journal.loaded.outcomes} probes were decided "
              f"before ({done} of {len(journal.sections)} hosts finished)", file=sys.stderr)
    return journal


def cmd_run(args: argparse.Namespace) -> int:
    from ..engine.shards.forkserver import serving

    # the fork server before the inventory: see forkserver.py
    with serving(), collector_paused_for(args.cluster):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import logging  # here: `scan` builds this module's parser and should not pay for these

    from ..plugins.tasks import portscan
    from ..report import render_document
    from ..report.document import compact_document, finish_document, new_document
    from ..report.run_table import render, summary_line

    # nornir logs a crashed task's traceback; with its logging off, Python's last-resort
    # handler would print it on stderr. The Result keeps the error, reported in one line.
    logging.getLogger("nornir").addHandler(logging.NullHandler())
    _check_ports(args.ports)
    settings = given_settings(args)  # each parsed by its flag: a bad value was exit 2
    if args.cluster is not None:
        from .cluster import cluster_client

        cluster_client(args.cluster)  # exit 2 without Dask, 3 when it does not answer
    nr = _nornir(args)
    run_settings_into(nr.config.user_defined, settings)
    configure_engine(settings)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    # reports that list every probe (csv, jsonl, junit, nmap-xml, html) get every port with
    # its own rtt, as before; json and --save are folded below unless --all-ports
    full = args.all_ports or args.format not in ("table", "json")
    task_args: dict[str, Any] = {**host_settings(settings), "baseline": baseline,
                                 "all_ports": full}
    if args.ports is not None:
        task_args["ports"] = args.ports
    journal = _open_journal(args, nr, task_args)
    if journal is not None:
        task_args["resume"] = journal.path
    # the seed of every host whose inventory sets none, drawn if not given: the report's
    # options.seed replays the run (--seed, as a task argument, also overrides the inventory)
    from ..engine.io.local import default_seed, draw_seed

    seed = settings.get("seed")
    if seed is None:
        seed = draw_seed()
    options = {"config": args.config, "inventory": args.inventory, "filter": args.filter,
               "ports": args.ports, **settings_record({**settings, "seed": seed},
                                                      given_only=True),
               "baseline": args.baseline}
    options = {k: v for k, v in options.items() if v is not None}
    collector = _Collector()
    processors: list[Any] = [collector]
    tty = sys.stderr.isatty()
    progress = None
    if args.progress if args.progress is not None else (tty and not args.quiet):
        from ..plugins.processors import ProgressProcessor

        # on a terminal the bar goes away at the end; in a log, its last state stays
        progress = ProgressProcessor(transient=tty)
        processors.append(progress)
    doc = new_document(options)
    if baseline is not None:
        doc["baseline"] = {"file": args.baseline, "started": baseline.get("started")}
    started = time.monotonic()
    interrupted = False
    running = nr.with_processors(processors)  # the run's batch is this object's
    try:
        # core.raise_on_error would end the run at the first failed host, report unwritten
        with default_seed(seed), interrupts_let_go():
            running.run(task=portscan, raise_on_error=False, **task_args)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        _stop_progress(progress)
        with default_seed(seed):
            _collect_finished(running, collector, task_args)
    except Exception as exc:  # the runner itself (its config), not a host: one line
        where = args.inventory or args.config or DEFAULT_CONFIG
        raise PortscanError(f"cannot run the inventory from {where}: "
                            f"{type(exc).__name__}: {_one_line(exc)}") from None
    if args.cluster is not None:
        from .cluster import close_clients

        close_clients()
    results = collector.results.copy()  # one C call: pool threads may still add (Ctrl-C)
    for name in sorted(nr.inventory.hosts):
        r = results.get(name)
        # a host the run never reached: the reports show it as not scanned
        doc["hosts"][name] = (_host_entry(name, r) if r is not None
                              else {"failed": False, "error": None, "result": None})
    finish_document(doc, time.monotonic() - started, interrupted)
    color = args.output in (None, "-") and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    broken = {name: r for name, r in results.items() if not isinstance(r.result, dict)}
    # --quiet: what a person must read (cron mails any output) is known before writing
    loud = not args.quiet or interrupted or _needs_a_person(doc, broken, args.fail_on_change)

    def report(stream: IO[str]) -> None:
        if args.format == "table":
            render(doc, stream, color=color)
        else:
            if args.format == "json" and not args.all_ports:
                compact_document(doc)
            render_document(args.format, doc, stream)

    if loud or args.output not in (None, "-"):
        _write(args.output, report, durable=journal is not None)
    if loud and (args.format != "table" or args.output not in (None, "-")):
        print(summary_line(doc), file=sys.stderr)  # stdout holds only the report
    from ..engine.io.service import shared_engine  # started by the run's first task

    silent = shared_engine().resolver_warning()
    if silent:
        print(silent, file=sys.stderr)
    if args.save:
        from ..report.json_ import render as render_json

        if not args.all_ports:
            compact_document(doc)
        _write(args.save, lambda s: render_json(doc, s), durable=journal is not None)
    if journal is not None:
        if not interrupted and not any(_scan_failed(r) for r in broken.values()):
            journal.remove()  # the report is complete and in place: nothing to continue
        else:
            journal.close()  # everything recorded is on disk before anything exits
    if interrupted:
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # worker threads may still be waiting on the engine
    lines, bad_input = problem_lines(
        nr, {name: (str(doc["hosts"][name]["error"]), r.exception) for name, r in broken.items()})
    for line in lines:
        print(f"nornir-portscan: error: {line}", file=sys.stderr)
    if bad_input:
        return EXIT_USAGE  # some input is invalid: a host's, or data no host used
    if broken:
        return EXIT_FAILED  # the scan itself could not run
    return EXIT_VIOLATION if _needs_a_person(doc, {}, args.fail_on_change) else EXIT_OK


def _needs_a_person(doc: Mapping[str, Any], broken: Mapping[str, Any],
                    fail_on_change: bool) -> bool:
    """A host that failed, a violated expectation, or (``fail_on_change``) a change: what
    makes ``run`` exit non-zero, and ``--quiet`` speak."""
    hosts = doc["hosts"].values()
    return bool(broken or doc["summary"].get("violations") or any(e["failed"] for e in hosts)
                or (fail_on_change and any(e.get("changed") for e in hosts)))
