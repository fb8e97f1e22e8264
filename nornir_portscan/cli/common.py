"""What the command line's subcommands share: exit statuses, one-line errors, option
types, the engine options and options of the report's file (which ``outfile.py``
writes)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
HELP_WIDTH = 78  # --help's own text (description, epilog), as argparse wraps an 80-column terminal


class Interrupted(Exception):
    """SIGTERM, turned into something the scan loop unwinds from like Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise Interrupted()


def fail(message: str) -> NoReturn:
    print(f"nornir-portscan: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


#: What the statuses every subcommand can end with mean; each subcommand adds its own 0 and 1.
EXIT_STATUS_COMMON = (
    (EXIT_USAGE, "bad usage or input: one line on stderr naming the value, never a traceback"),
    (EXIT_FAILED, "the scan could not run (this machine could not open sockets, or the task "
                  "crashed); what was decided is still written"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM): what was scanned is still written"),
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; option help wrapped between words only
    (``nmap-xml`` or ``top100 | top1000`` must not break at a hyphen)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """One-line errors after the usage; abbreviated options refused (``--port`` for
    ``--ports`` would be a guess, and a typo silently taken as another option is worse)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        fail(message)


class _SubcommandParser(_Parser):
    """A subcommand's parser that refuses what it does not know itself.

    argparse hands a subcommand's unknown options back to the top-level parser, whose
    error then shows the top-level usage: the user typed ``scan --bogus`` and deserves
    ``scan``'s usage.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._hint(extras)}")
        return parsed, extras

    def _hint(self, extras: Sequence[str]) -> str:
        """The option a mistyped or abbreviated one probably meant."""
        known = [o for action in self._actions for o in action.option_strings]
        for word in extras:
            if not word.startswith("-"):
                continue
            word = word.partition("=")[0]
            near = [o for o in known if o.startswith(word)] or difflib.get_close_matches(
                word, known, n=1)
            if near:
                return f" (did you mean {near[0]}?)"
        return ""


def add_subcommand(sub: Any, name: str, *, summary: str, description: str,
                   examples: Sequence[tuple[str, str]],
                   exits: Sequence[tuple[int, str]],
                   common: Sequence[tuple[int, str]] = EXIT_STATUS_COMMON
                   ) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with examples and its exit statuses."""
    lines = ["examples:"]
    for cmd, why in examples:
        lines += [f"  # {why}", f"  {cmd}"] if why else [f"  {cmd}"]
    lines += ["", "exit status:"]
    for code, text in [*exits, *common]:
        lines.append(textwrap.fill(text, HELP_WIDTH, initial_indent=f"  {code:<5}",
                                   subsequent_indent=" " * 7))
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=textwrap.fill(description, HELP_WIDTH),
        epilog="\n".join(lines))
    return parser


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


PORTS_FORMS = "22,80,443 | 1-1024 | all | ssh,https | top100 | top1000, mixed with commas"


def add_output_options(p: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    p.add_argument("--format", choices=formats, default="table", metavar="FORMAT",
                   help=f"report format: {', '.join(formats)} (default: table)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the report to FILE, complete or not at all (default: stdout); "
                        "the summary line then goes to stderr")
    p.add_argument("--resume", action="store_true",
                   help="keep a journal beside FILE (FILE.journal) as the scan goes: if it "
                        "is killed, the same command again probes only what is left, and "
                        "FILE ends up as a whole scan's; needs -o FILE")


def journal_path(args: argparse.Namespace) -> str | None:
    """With --resume, where the journal is kept: beside -o FILE, named after it."""
    if not args.resume:
        return None
    output = args.output
    if output in (None, "-") or (os.path.exists(output) and not os.path.isfile(output)):
        fail("--resume needs -o FILE: the journal that lets a scan continue is kept beside "
             "the report")
    from ..engine.io.journal import journal_beside

    return journal_beside(output)


def add_progress_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help=f"a {what} on stderr, even when stderr is not a terminal "
                        "(default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help=f"no {what}, even on a terminal")
