"""The journal's records: framing and the encoding of outcome batches, as pure functions.

A journal is a sequence of frames::

    magic (2 bytes, A5 4A)  kind (1)  length (u32 LE)  CRC-32 of kind, length and payload
    (u32 LE)  payload (length bytes)

so a frame cut short by a crash, or damaged, is found (its length or checksum does not
hold) and only that frame is lost: ``read_frames`` looks for the next magic whose frame
checks (it is handed a read function: the file is the I/O side's).

Outcome batches are columns, not pickles: a journal lives beside a report, perhaps in a
shared directory, and reading it must never run code. Columns also keep the cost per
outcome low (the journal must not slow a scan measurably): hosts and reasons are text
joined by newlines (an address, a validated hostname and a reason never hold one), ports,
states, attempts and round-trip times are packed arrays, and the rare names and banners
are JSON. Everything read back is checked: a frame whose columns disagree is damaged.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from .outcome import PortRun, PortState, ProbeOutcome, outcome_from_fields

MAGIC = b"\xa5\x4a"
_HEAD = struct.Struct("<2scII")  # magic, kind, length, crc
HEAD_SIZE = _HEAD.size
#: A frame larger than this is damage, not data (a batch is a few hundred kilobytes).
MAX_PAYLOAD = 64 << 20

HEADER, SECTION, OUTCOMES, DONE, NOTE = b"H", b"S", b"O", b"D", b"N"
KINDS = frozenset({HEADER, SECTION, OUTCOMES, DONE, NOTE})

STATES: tuple[PortState, ...] = tuple(PortState)
_STATE_CODE: dict[PortState, int] = {state: i for i, state in enumerate(STATES)}
_STATE_OF: dict[str, PortState] = {state.value: state for state in STATES}
#: section, outcomes, runs, flags, and the lengths of hosts, reasons, names, extras, states
_BATCH = struct.Struct("<HIIBIIIII")
_HAS_NAMES, _HAS_BANNERS, _HAS_WORKERS = 1, 2, 4
_host, _port, _state, _reason = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)
_rtt, _attempts, _name, _banner = itemgetter(4), itemgetter(5), itemgetter(6), itemgetter(7)
_worker = itemgetter(8)
_NAN = math.nan


class Damaged(ValueError):
    """A frame whose checksum held but whose content does not make sense."""


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame, ready to append."""
    head = kind + struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return MAGIC + head + struct.pack("<I", crc) + payload


NEED_MORE, BAD = 0, -1


def parse_frame(buf: bytes | bytearray | memoryview, pos: int,
                ) -> tuple[int, bytes, memoryview | None]:
    """The frame at ``pos``: (its end, kind, payload); (NEED_MORE, b"", None) when ``buf``
    ends first, (BAD, b"", None) when no frame starts there."""
    if len(buf) - pos < HEAD_SIZE:
        return NEED_MORE, b"", None
    magic, kind, length, crc = _HEAD.unpack_from(buf, pos)
    if magic != MAGIC or kind not in KINDS or length > MAX_PAYLOAD:
        return BAD, b"", None
    end = pos + HEAD_SIZE + length
    if end > len(buf):
        return NEED_MORE, b"", None
    view = memoryview(buf)
    payload = view[pos + HEAD_SIZE:end]
    if zlib.crc32(payload, zlib.crc32(view[pos + 2:pos + 7])) != crc:
        return BAD, b"", None
    return end, kind, payload


def json_payload(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def read_json(payload: memoryview) -> Any:
    try:
        return json.loads(bytes(payload))
    except (ValueError, UnicodeDecodeError):
        raise Damaged("not JSON") from None


@dataclass
class LoadReport:
    """What loading found: outcomes kept, frames lost to damage, a cut-off end."""

    outcomes: int = 0
    damaged: int = 0  # frames skipped because their checksum or content did not hold
    torn: int = 0  # bytes cut off the end (the last frame, cut short by a crash)
    notes: list[Any] = field(default_factory=list)

    def warning(self, path: str) -> str | None:
        """One line for stderr when anything was lost, else None."""
        parts = []
        if self.damaged:
            parts.append(f"{self.damaged} damaged record{'s' if self.damaged != 1 else ''} "
                         f"skipped")
        if self.torn:
            parts.append("its last record was cut short and is dropped")
        if not parts:
            return None
        return f"warning: journal {path}: {' and '.join(parts)}; those probes are made again"


def read_frames(read: Callable[[], bytes], offset: int,
                report: LoadReport) -> Iterator[tuple[bytes, memoryview, int]]:
    """(kind, payload, end offset) of each good frame of a file, in order: ``read`` gives
    its next bytes (b"" at the end) from ``offset`` on. A stretch that is no good frame is
    skipped up to the next good one and counted in ``report.damaged``; at the end of the
    file it is the last frame, cut short by a crash: ``report.torn`` (its bytes)."""
    buf = bytearray()
    pos = 0
    eof = False
    damage: int | None = None  # where the stretch being skipped began

    def refill() -> None:
        """Drop what is done with (before ``pos``) and append the file's next bytes."""
        nonlocal pos, offset, eof
        del buf[:pos]
        offset += pos
        pos = 0
        chunk = read()
        eof = not chunk
        buf.extend(chunk)

    while True:
        end, kind, payload = parse_frame(buf, pos)
        if end > 0:
            assert payload is not None
            data = bytes(payload)
            payload.release()
            if damage is not None:
                report.damaged += 1
                damage = None
            pos = end
            yield kind, memoryview(data), offset + end
            continue
        if end == NEED_MORE and not eof:
            refill()
            continue
        if pos >= len(buf):  # the end: clean, or inside damage
            if damage is not None:
                report.torn = offset + len(buf) - damage
            return
        # no good frame here (or one that would run past the end): look further on
        if damage is None:
            damage = offset + pos
        found = buf.find(MAGIC, pos + 1)
        pos = found if found >= 0 else len(buf)
        if found < 0 and not eof:
            pos = max(pos - 1, 0)  # a magic split by the chunk's end
            refill()


# ---- outcome batches ----------------------------------------------------------------------

def _packed(kind: str, values: Sequence[Any]) -> bytes:
    """Little-endian numbers (struct packs from a list in C, faster than an array)."""
    return struct.pack(f"<{len(values)}{kind}", *values)


def _unpacked(kind: str, data: memoryview, count: int) -> tuple[Any, ...]:
    fmt = struct.Struct(f"<{count}{kind}")
    if len(data) != fmt.size:
        raise Damaged("a column's length does not match")
    return fmt.unpack(data)


def encode_batch(section: int, outcomes: Sequence[tuple[Any, ...]],
                 runs: Sequence[PortRun] = ()) -> bytes:
    """An outcomes frame's payload: one section's outcomes (``ProbeOutcome``s, or their
    fields as plain tuples, as a shard worker holds them) and port runs."""
    n = len(outcomes)
    hosts = "\n".join(map(_host, outcomes)).encode()
    reasons = "\n".join(map(_reason, outcomes)).encode()
    flags = 0
    names = b""
    if any(map(_name, outcomes)):
        flags |= _HAS_NAMES
        names = "\n".join([name or "" for name in map(_name, outcomes)]).encode()
    extras: dict[str, Any] = {}
    if any(map(_banner, outcomes)):
        flags |= _HAS_BANNERS
        extras["banners"] = [[i, b] for i, b in enumerate(map(_banner, outcomes))
                             if b is not None]
    if any(map(_worker, outcomes)):
        # the cluster worker that probed each (a vantage point): a batch comes from one
        # worker or a few, so the column is kept as spans, [first index, name] each
        flags |= _HAS_WORKERS
        spans: list[list[Any]] = []
        for i, worker in enumerate(map(_worker, outcomes)):
            if not spans or spans[-1][1] != worker:
                spans.append([i, worker])
        extras["workers"] = spans
    run_ports: list[int] = []
    if runs:
        extras["runs"] = [[r.host, r.name, _STATE_CODE[r.state], r.reason, len(r.ports)]
                          + ([r.worker] if r.worker is not None else []) for r in runs]
        for run in runs:
            run_ports.extend(run.ports)
    extra = json_payload(extras) if extras else b""
    states = "\n".join(map(_state, outcomes)).encode()  # a PortState is the str it names
    return b"".join((
        _BATCH.pack(section, n, len(runs), flags, len(hosts), len(reasons), len(names),
                    len(extra), len(states)),
        hosts, reasons, names, extra,
        _packed("H", list(map(_port, outcomes))),
        states,
        _packed("I", list(map(_attempts, outcomes))),
        _packed("d", [_NAN if rtt is None else rtt for rtt in map(_rtt, outcomes)]),
        _packed("H", run_ports)))


class Batch(NamedTuple):
    section: int
    outcomes: list[ProbeOutcome]
    runs: list[PortRun]


def decode_batch(payload: memoryview) -> Batch:
    """``encode_batch``'s inverse; ``Damaged`` when the columns do not agree."""
    if len(payload) < _BATCH.size:
        raise Damaged("short batch")
    (section, n, n_runs, flags, l_hosts, l_reasons, l_names, l_extra,
     l_states) = _BATCH.unpack_from(payload)
    at = _BATCH.size

    def take(size: int) -> memoryview:
        nonlocal at
        part = payload[at:at + size]
        if len(part) != size:
            raise Damaged("short batch")
        at += size
        return part

    try:
        hosts = bytes(take(l_hosts)).decode().split("\n")
        reasons = bytes(take(l_reasons)).decode().split("\n")
        names_blob = bytes(take(l_names)).decode()
        extra = read_json(take(l_extra)) if l_extra else {}
    except UnicodeDecodeError:
        raise Damaged("text that is not UTF-8") from None
    if not n:
        hosts = reasons = []
    if len(hosts) != n or len(reasons) != n or not isinstance(extra, dict):
        raise Damaged("columns of different lengths")
    ports = _unpacked("H", take(2 * n), n)
    try:
        states = [_STATE_OF[text] for text in bytes(take(l_states)).decode().split("\n")] \
            if n else []
    except (KeyError, UnicodeDecodeError):
        raise Damaged("an unknown state") from None
    if len(states) != n:
        raise Damaged("columns of different lengths")
    attempts = _unpacked("I", take(4 * n), n)
    rtts: list[float | None] = [None if math.isnan(x) else x
                                for x in _unpacked("d", take(8 * n), n)]
    names: Any = repeat(None, n)
    if flags & _HAS_NAMES:
        listed = names_blob.split("\n")
        if len(listed) != n:
            raise Damaged("columns of different lengths")
        names = [name or None for name in listed]
    banners: list[str | None] | Any = repeat(None, n)
    if flags & _HAS_BANNERS:
        banners = [None] * n
        for i, text in extra.get("banners", []):
            if not (isinstance(i, int) and 0 <= i < n and isinstance(text, str)):
                raise Damaged("a banner out of place")
            banners[i] = text
    workers: list[str | None] | Any = repeat(None, n)
    if flags & _HAS_WORKERS:
        workers = _workers(extra.get("workers"), n)
    seen: dict[str, str] = {}
    intern = seen.setdefault
    outcomes = list(map(outcome_from_fields, zip(
        [intern(h, h) for h in hosts], ports, states, [intern(r, r) for r in reasons],
        rtts, attempts, names, banners, workers, strict=False)))
    runs = _decode_runs(extra.get("runs", []), n_runs, payload[at:])
    return Batch(section, outcomes, runs)


def _workers(spans: Any, n: int) -> list[str | None]:
    """The workers column from its spans (``[first index, name]``, in order)."""
    if not isinstance(spans, list) or not spans:
        raise Damaged("workers that make no sense")
    column: list[str | None] = []
    for k, span in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) and isinstance(spans[k + 1], list) else n
        if not (isinstance(span, list) and len(span) == 2 and isinstance(span[0], int)
                and span[0] == len(column) and isinstance(end, int) and span[0] < end <= n
                and (span[1] is None or isinstance(span[1], str))):
            raise Damaged("workers that make no sense")
        column.extend([span[1]] * (end - span[0]))
    return column


def _decode_runs(meta: Any, count: int, rest: memoryview) -> list[PortRun]:
    if not isinstance(meta, list) or len(meta) != count:
        raise Damaged("port runs do not match")
    total = 0
    for item in meta:
        if not (isinstance(item, list) and len(item) in (5, 6) and isinstance(item[0], str)
                and (item[1] is None or isinstance(item[1], str))
                and isinstance(item[2], int) and 0 <= item[2] < len(STATES)
                and isinstance(item[3], str) and isinstance(item[4], int) and item[4] >= 0
                and (len(item) == 5 or isinstance(item[5], str))):
            raise Damaged("a port run that makes no sense")
        total += item[4]
    ports = _unpacked("H", rest, total)
    runs: list[PortRun] = []
    at = 0
    for host, name, code, reason, size, *worker in meta:
        runs.append(PortRun(host, name, ports[at:at + size], STATES[code], reason,
                            worker[0] if worker else None))
        at += size
    return runs
