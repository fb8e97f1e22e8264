"""What the command line's subcommands share: exit statuses, one-line errors, the flags
of the scan settings (derived from inputs/settings.py) and the options of the report's
file (which ``outfile.py`` writes)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from ..errors import PortscanError, SpecError
from ..inputs.settings import SETTINGS, Setting

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
HELP_WIDTH = 78  # --help's own text (description, epilog), as argparse wraps an 80-column terminal


class Interrupted(Exception):
    """SIGTERM, turned into something the scan loop unwinds from like Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise Interrupted()


@contextlib.contextmanager
def interrupts_let_go() -> Iterator[None]:
    """While a nornir run goes on: Ctrl-C and SIGTERM also let go every host task that
    waits for its scan (``engine/io/service.stop_waiting``). nornir's threaded runner
    joins its threads before an interrupt of the thread that queues the hosts unwinds,
    and the host tasks waited for their probes: a run interrupted in its first second
    waited for every probe to time out. Outcomes already in are still reported."""
    import signal
    import threading

    from ..engine.io.service import resume_waiting, stop_waiting

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield  # signals go to the main thread; an ignored Ctrl-C stays ignored
        return

    def on_int(signum: int, frame: object) -> NoReturn:
        stop_waiting()
        raise KeyboardInterrupt

    def on_term(signum: int, frame: object) -> NoReturn:
        stop_waiting()
        raise Interrupted()

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    resume_waiting()  # an earlier run's interrupt in this process is over
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:  # waiting stays stopped: an interrupt that broke a join leaves tasks running
        for signum, handler in before.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def collector_paused_for(cluster: str | None) -> Iterator[None]:
    """The collector paused while a run builds its hosts' Results and its report
    (plugins/common/collector.py). A ``cluster`` run keeps it: Dask's client runs in this
    process then, and what it leaves behind is not the run's few objects."""
    from ..plugins.common.collector import collector_paused as paused

    with contextlib.nullcontext() if cluster is not None else paused():
        yield


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
    """One-line errors, ending with where the options are listed; abbreviated options
    refused (``--port`` for ``--ports`` would be a guess, and a typo silently taken as
    another option is worse).

    argparse prints its whole usage block before a usage error: nine lines for ``run``,
    the one that matters last. Every other mistake is one line (exit status 2), so a
    usage error is too, and it names the ``--help`` that shows the usage.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        commands = next((a for a in self._actions
                         if isinstance(a, argparse._SubParsersAction)), None)
        if commands is not None and message.endswith(f"required: {commands.metavar}"):
            # `nornir-portscan` alone: name the commands, not the metavar of the usage line
            message = f"a command is required: {', '.join(commands.choices)}"
        fail(f"{message}; see {self.prog} --help")


#: The options that take the port list; a second word after them is a port list split.
PORT_FLAGS = ("-p", "--ports")


class _SubcommandParser(_Parser):
    """A subcommand's parser that refuses what it does not know itself.

    argparse hands a subcommand's unknown options back to the top-level parser, whose
    error then names the top-level parser: the user typed ``scan --bogus`` and deserves
    ``scan``'s help.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        given = _port_values(words)
        if len(given) > 1:  # argparse keeps the last; nmap refuses it, and so do we
            listed = ",".join(v.strip(",") for _, v in given)
            self.error(f"-p given {len(given)} times (ports are one comma-separated list: "
                       f"-p {listed})")
        parsed, extras = super().parse_known_args(words, namespace)
        if extras:
            hint = self._hint(extras) or _ports_hint(words, extras)
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed, extras

    def _hint(self, extras: Sequence[str]) -> str:
        """The option a mistyped or abbreviated one probably meant."""
        known = [o for action in self._actions for o in action.option_strings]
        for word in extras:
            if not word.startswith("-"):
                continue
            word = word.partition("=")[0]
            near = [o for o in known if o.startswith(word)] or _close(
                word, known, n=1)
            if near:
                return f" (did you mean {near[0]}?)"
        return ""


def _close(word: str, known: list[str], n: int) -> list[str]:
    import difflib  # here: only a mistyped option needs it

    return difflib.get_close_matches(word, known, n=n)


def _port_values(words: Sequence[str]) -> list[tuple[int, str]]:
    """(index, value) of each ``-p``/``--ports`` value in ``words``, in any of argparse's
    spellings: ``-p 22``, ``-p22``, ``--ports=22``, ``--ports 22``."""
    found = []
    for i, word in enumerate(words):
        if word == "--":
            break
        if word in PORT_FLAGS and i + 1 < len(words):
            found.append((i + 1, words[i + 1]))
        elif word.startswith("--ports="):
            found.append((i, word.partition("=")[2]))
        elif word.startswith("-p") and not word.startswith("--") and len(word) > 2:
            found.append((i, word[2:]))
    return found


def _ports_hint(words: Sequence[str], extras: Sequence[str]) -> str:
    """``-p 22 80``: argparse took 22 as the ports and has no place for 80. Ports are one
    word, comma-separated; say so, with the list the user probably meant."""
    given = _port_values(words)
    if not given:
        return ""
    index, value = given[-1]
    after = []
    for word in words[index + 1:]:  # the words right after the value that are left over
        if word not in extras or word.startswith("-"):
            break
        after.append(word)
    if not after:
        return ""
    joined = ",".join(part for part in (w.strip(",") for w in [value, *after]) if part)
    return f" (ports are one comma-separated list: -p {joined})"


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


#: The subcommands that scan a nornir inventory: a host's data and the config's
#: ``user_defined.portscan`` set the settings there too, and the flags override them.
INVENTORY_COMMANDS = frozenset({"run", "monitor"})


def _setting_help(s: Setting, command: str) -> str:
    """The flag's help: the setting's own, what it overrides in a nornir run, its default."""
    text, default = s.help, f"default: {s.default_text}"
    if command in INVENTORY_COMMANDS:
        if s.config:
            default = (f"{'adds to' if s.repeat else 'replaces'} the nornir config's "
                       f"portscan.{s.config}; {default}")
        elif s.host:
            text += f"; for every host, over its inventory data portscan.{s.name}"
            default = f"default: inventory data, else {s.default_text}"
        elif s.per == "engine":
            text += "; for the whole run, whose hosts share one engine"
    return f"{text} ({default})".replace("%", "%%")


def _flag_type(s: Setting) -> Callable[[str], Any]:
    """The setting's own parser, its problem named with the flag and the value.

    A bad value is bad input, one line like any other (``main`` prints it), not a usage
    error: a ``PortscanError`` passes through argparse, which would print the usage.
    """
    def parse(text: str) -> Any:
        try:
            return s.parse(text)
        except SpecError as exc:
            raise PortscanError(f"argument {s.flags[0]} {text!r}: {exc}") from None
    return parse


def add_setting_options(p: argparse.ArgumentParser, command: str,
                        which: Callable[[Setting], bool] = lambda s: True) -> None:
    """A flag for each setting of the table that has one (and that ``which`` keeps), in
    table order. Not given, a flag's value is None: the setting's default applies, or in a
    nornir run, the inventory's value."""
    for s in SETTINGS:
        if not s.flags or not which(s):
            continue
        if s.flag_value is not None:
            p.add_argument(*s.flags, dest=s.name, action="store_const", const=s.flag_value,
                           default=None, help=_setting_help(s, command))
        else:
            p.add_argument(*s.flags, dest=s.name, type=_flag_type(s), metavar=s.metavar,
                           action="append" if s.repeat else "store", default=None,
                           help=_setting_help(s, command))


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Each flagged setting's parsed value (a repeated flag's values joined), None where
    the flag was not given."""
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if s.flags:
            value = getattr(args, s.name, None)
            if s.repeat and value is not None:
                value = tuple(item for part in value for item in part)
            out[s.name] = value
    return out


def settings_record(values: Mapping[str, Any], given_only: bool) -> dict[str, Any]:
    """The settings for a report's ``options`` record, by name (lists for tuples): those
    given, or with ``given_only`` False every flag's, its default where not given."""
    out: dict[str, Any] = {}
    for s in SETTINGS:
        value = values.get(s.name)
        if value is None:
            if given_only or not s.flags:
                continue
            value = s.default
        out[s.name] = list(value) if isinstance(value, tuple) else value
    return out


def configure_engine(values: Mapping[str, Any]) -> None:
    """Give the process's shared engine the per-engine settings given (``run``,
    ``monitor``); a rate of 0 lifts the cap, as it does for one scan."""
    engine = {s.name: values[s.name] or None for s in SETTINGS
              if s.per == "engine" and values.get(s.name) is not None}
    if engine:
        from ..engine.io.service import shared_engine  # here: scan starts without it

        shared_engine().configure(**engine)


def host_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The given settings a nornir host may also set, as task arguments (they override
    its inventory data)."""
    return {s.name: values[s.name] for s in SETTINGS
            if s.host and values.get(s.name) is not None}


def run_settings_into(user_defined: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Write the given run-wide settings (the scope guards) into a nornir config's
    ``user_defined.portscan``: a repeated flag adds to the config's list, another replaces
    the config's value."""
    section = dict(user_defined.get("portscan") or {})
    for s in SETTINGS:
        value = values.get(s.name)
        if s.config is None or value is None:
            continue
        if s.repeat:
            old = section.get(s.config) or []
            value = [*([old] if isinstance(old, str) else old), *value]
        section[s.config] = value
        user_defined["portscan"] = section


PORTS_FORMS = "22,80,443 | 1-1024 | all | ssh,https | top100 | top1000, mixed with commas"


def add_output_options(p: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    # default None: settle_format tells "not given" from "--format table"
    p.add_argument("--format", choices=formats, default=None, metavar="FORMAT",
                   help=f"report format: {', '.join(formats)} (default: table)")
    p.set_defaults(formats=tuple(formats))
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the report to FILE, complete or not at all (default: stdout); "
                        "the summary line then goes to stderr")
    p.add_argument("--resume", action="store_true",
                   help="keep a journal beside FILE (FILE.journal) as the scan goes: if it "
                        "is killed, the same command again probes only what is left, and "
                        "FILE ends up as a whole scan's; needs -o FILE")
    p.add_argument("--all-ports", action="store_true",
                   help="list every probed port in json documents; by default an address's "
                        "most common state (not open) is given once, as 'extraports'")


#: What a report file's name says it holds, when its format was not given.
_SUFFIX_FORMATS = {".json": ("json",), ".jsonl": ("jsonl",), ".ndjson": ("jsonl",),
                   ".csv": ("csv",), ".html": ("html",), ".htm": ("html",),
                   ".xml": ("junit", "nmap-xml")}


def settle_format(args: argparse.Namespace) -> None:
    """``--format`` not given: the table, unless ``-o FILE``'s name says otherwise.

    ``-o audit.json`` without ``--format json`` used to fill audit.json with the table, for
    the next tool to choke on. Guessing the format from the name would be a guess (and
    ``.xml`` is two formats), so the name is only checked: a name that promises another
    format is refused, naming the option that makes it so.
    """
    if getattr(args, "format", "") is not None:
        return
    args.format = "table"
    output = getattr(args, "output", None)
    if not output or output == "-":
        return
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in _SUFFIX_FORMATS:
        return
    meant = [f for f in _SUFFIX_FORMATS[suffix] if f in args.formats]
    if not meant:
        fail(f"-o {output}: {args.command} writes no {suffix[1:]} report (--format "
             f"{', '.join(args.formats)}); add --format table to write the table there")
    options = " or ".join(f"--format {f}" for f in meant)
    fail(f"-o {output}: the report would be a table, not what {suffix} says; add "
         f"{options} (or --format table to keep the table)")


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
