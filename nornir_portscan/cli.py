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
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, NoReturn

from . import __version__
from .errors import PortscanError

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SCAN_FORMATS = ("table", "jsonl", "json", "csv")


class Interrupted(Exception):
    """SIGTERM, turned into something the scan loop unwinds from like Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise Interrupted()


def fail(message: str) -> NoReturn:
    print(f"nornir-portscan: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        fail(message)


@contextmanager
def output_stream(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file beside ``path`` renamed into place when done.

    The rename happens after partial results too, so an interrupted scan never
    leaves a half-written file, only a complete file with fewer rows.
    """
    if path is None or path == "-":
        yield sys.stdout
        return
    if os.path.exists(path) and not os.path.isfile(path):
        # a device or FIFO (/dev/null, a pipe): never rename over it
        with open(path, "w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".portscan-", dir=directory)
        # mkstemp makes 0600; a report gets the mode any new file would (0666 less umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(tmp, path)
    except BaseException:
        # a crash before the writer finished: keep nothing rather than a torn file
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _rate(text: str) -> float:
    value = 0.0 if text == "0" else _positive_float(text)
    return value


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nornir-portscan",
                     description="Fast, exact TCP connect scans, standalone or over a "
                                 "nornir inventory.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("scan", help="scan targets given on the command line")
    s.add_argument("targets", nargs="+", metavar="TARGET",
                   help="addresses, CIDR networks, ranges (127.0.0.1-20, 127.0.0-3.1-254), "
                        "hostnames")
    s.add_argument("-p", "--ports", default="top100",
                   help="22,80,443 | 1-1024 | all | ssh,https | top100 | top1000 (default top100)")
    s.add_argument("--exclude", action="append", default=[], metavar="TARGET",
                   help="targets to leave out (repeatable)")
    s.add_argument("--exclude-file", action="append", default=[], metavar="FILE",
                   help="file of targets to leave out, one per line, # comments")
    s.add_argument("--allow", action="append", default=[], metavar="NETWORK",
                   help="refuse any target outside these networks (repeatable)")
    s.add_argument("--max-hosts", type=_positive_int, default=None, metavar="N",
                   help="refuse scans over N addresses (default 65536)")
    add_engine_options(s)
    s.add_argument("--format", choices=SCAN_FORMATS, default="table")
    s.add_argument("-o", "--output", metavar="FILE", help="write the report here (default stdout)")
    from .cli_run import add_run_parser

    add_run_parser(sub, add_engine_options)
    return parser


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="fixed per-try timeout in seconds (default: adapts to measured RTT)")
    p.add_argument("--retries", type=_count, metavar="N",
                   help="tries after the first for silent ports "
                        "(default: as deep as loss requires)")
    p.add_argument("--concurrency", type=_count, metavar="N",
                   help="probes in flight at most (default: from the open-file limit)")
    p.add_argument("--rate", type=_rate, metavar="N",
                   help="probes per second at most; 0 for no cap (default: no cap on loopback, "
                        "10000 beyond it)")
    p.add_argument("--no-discovery", dest="discovery", action="store_false",
                   help="probe every port of every host, even hosts that answer nothing")
    p.add_argument("--banners", action="store_true",
                   help="read what open ports send first (SSH, FTP, SMTP greetings)")


def cmd_scan(args: argparse.Namespace) -> int:
    from .engine.api import ScanStats, plan_scan, stream_plan
    from .engine.scheduler import EngineError
    from .report import ScanSummary, writer_for
    from .spec.scope import DEFAULT_MAX_ADDRESSES, read_target_file

    try:
        exclude = list(args.exclude)
        for path in args.exclude_file:
            exclude.extend(read_target_file(path))
        plan = plan_scan(args.targets, args.ports, exclude=exclude, timeout=args.timeout,
                         retries=args.retries, concurrency=args.concurrency or None,
                         rate=args.rate, discovery=args.discovery, banners=args.banners,
                         allowed=args.allow,
                         max_addresses=(DEFAULT_MAX_ADDRESSES if args.max_hosts is None
                                        else args.max_hosts))
    except (PortscanError, ValueError) as exc:
        fail(str(exc))
    options: dict[str, Any] = {"targets": args.targets, "ports": args.ports,
                               "exclude": args.exclude, "timeout": args.timeout,
                               "retries": args.retries, "concurrency": plan.concurrency,
                               "rate": plan.rate, "discovery": args.discovery,
                               "banners": args.banners}
    summary = ScanSummary(options=options)
    status = EXIT_OK
    started = time.monotonic()
    color = args.output in (None, "-") and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    with output_stream(args.output) as stream:
        writer = writer_for(args.format, stream, color=color)
        stats = ScanStats()
        try:
            for outcomes, runs in stream_plan(plan, stats, runs=True):
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
    if args.format != "table" or args.output not in (None, "-"):
        print(summary.line(), file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = build_parser().parse_args(argv)
    from .cli_run import cmd_run

    handlers = {"scan": cmd_scan, "run": cmd_run}
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


if __name__ == "__main__":
    raise SystemExit(main())
