"""The ``nornir-portscan`` command line.

Exit status: 0 the scan completed, 1 an expectation failed (``run``), 2 bad
usage or input (one line naming the value, never a traceback), 3 the scan
could not run (the machine cannot open sockets at all), 130 interrupted
(what was scanned is still written, to a file only by rename).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PortscanError
from .audit import add_audit_parser
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Interrupted,
    _on_sigterm,
    _Parser,
    _SubcommandParser,
    fail,
    settle_format,
)
from .monitor import add_monitor_parser
from .run import add_run_parser, cmd_run
from .scan import add_scan_parser, cmd_scan

__all__ = ["build_parser", "console", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nornir-portscan",
                     description="Fast, exact TCP connect scans, standalone or over a "
                                 "nornir inventory.",
                     epilog="examples:\n"
                            "  nornir-portscan scan 127.0.0.1\n"
                            "  nornir-portscan run\n"
                            "  nornir-portscan scan --help    # options, examples and exit "
                            "statuses of one command")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_SubcommandParser)
    add_scan_parser(sub)
    add_run_parser(sub)
    add_monitor_parser(sub)
    add_audit_parser(sub)
    return parser


def cmd_monitor(args: argparse.Namespace) -> int:
    """The daemon lives in its own module: ``scan`` and ``run`` start without its HTTP
    server and Prometheus imports."""
    from .monitor_daemon import run_monitor

    return run_monitor(args)


def cmd_audit(args: argparse.Namespace) -> int:
    """In its own module, loaded when used: ``scan`` starts without the audit's parts."""
    from .audit import cmd_audit as audit

    return audit(args)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = build_parser().parse_args(argv)  # a bad setting's value: PortscanError
    except PortscanError as exc:
        fail(str(exc))
    settle_format(args)
    handlers = {"scan": cmd_scan, "run": cmd_run, "monitor": cmd_monitor,
                "audit": cmd_audit}
    try:
        return handlers[args.command](args)
    except PortscanError as exc:
        fail(str(exc))
    except BrokenPipeError:
        # a consumer such as `head` went away: not an error of the scan
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (KeyboardInterrupt, Interrupted):
        return EXIT_INTERRUPTED


def console() -> int:
    """The program itself (the ``nornir-portscan`` script, ``python -m nornir_portscan``):
    ``main``, then an exit that does not walk the heap once more. The interpreter's last
    collections visit every object still alive, only for the process to hand all its
    memory back anyway: 80 ms at the end of a run of 4,094 hosts. ``gc.freeze`` puts them
    out of the collections' reach; a process that calls ``main`` and goes on (a test, a
    runbook) keeps its collector as it was."""
    import gc

    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    raise SystemExit(console())
