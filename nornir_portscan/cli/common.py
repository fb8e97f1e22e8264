"""What the command line's subcommands share: exit statuses, one-line errors, option
types, the engine options and the output file that appears only complete."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, NoReturn

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
    p.add_argument("--cluster", metavar="ADDR",
                   help="run the scan's shards on a Dask cluster: tcp://HOST:8786, or local:N "
                        "for N worker processes here (needs 'nornir-portscan[dask]')")
