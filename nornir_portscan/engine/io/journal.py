"""The resume journal: an append-only file of decided outcomes, kept beside a report.

A scan (or a nornir run) that keeps a journal can be killed at any moment, SIGKILL and
power loss included, and continued: what the journal holds is reported as it was decided,
and only the rest is probed (``core/resume.py``). The file is a header (the journal's
kind and its sections, each a plan's identity and index) and frames of outcomes
(``core/records.py``), each with its length and checksum, so a frame cut short by a crash
costs only that frame.

Durability without slowing the scan: ``record`` only encodes and queues; a thread writes
what is queued every ``FLUSH_INTERVAL`` (a SIGKILL loses at most that much) and makes it
durable (``fdatasync``) at most every ``SYNC_INTERVAL`` (a power loss loses at most about
that much more, plus one sync's time).

One journal has sections: a scan has one (key ``""``), a nornir run one per nornir host,
each with its own plan. A Dask client can use the same calls: ``record`` a batch, ask
``section(key).decided`` what is decided, keep its own bookkeeping as ``note`` records.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import stat
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any

from ...errors import PortscanError
from ..core.decided import DecidedPairs
from ..core.errors import EngineError
from ..core.identity import Identity, describe, differences, scan_identity
from ..core.outcome import PortRun, ProbeOutcome
from ..core.plan import ScanPlan
from ..core.records import (
    DONE,
    HEADER,
    MAGIC,
    NEED_MORE,
    NOTE,
    OUTCOMES,
    SECTION,
    Batch,
    Damaged,
    LoadReport,
    decode_batch,
    encode_batch,
    frame,
    json_payload,
    parse_frame,
    read_frames,
    read_json,
)
from ..core.resume import needs_spec

FORMAT = "nornir-portscan journal"
VERSION = 1
#: Seconds between writes of what was recorded: what a SIGKILL can lose at most.
FLUSH_INTERVAL = 0.25
#: Seconds between syncs to the disk: with ``FLUSH_INTERVAL``, what a power loss can lose.
SYNC_INTERVAL = 1.0
#: Bytes read at a time while loading.
_CHUNK = 1 << 22
#: Outcomes a ``Recorder`` gathers before it encodes them as one frame.
_RECORDER_BATCH = 2048

class JournalMismatch(PortscanError):
    """The journal was written for another scan: resuming it would mix two scans."""

    def __init__(self, path: str, items: list[str], detail: str) -> None:
        self.items = items
        super().__init__(f"{path} was written for a different scan: {detail}; rerun the "
                         f"command that wrote it, or delete it to start over")


class JournalUnusable(PortscanError):
    """The journal cannot be opened or read: another user's file, a link, not a journal."""


class JournalError(EngineError):
    """The journal cannot be written any more (a disk error) while the scan goes on."""


def journal_beside(report: str) -> str:
    """The journal of a report file: in its directory, named after it."""
    return f"{report}.journal"


@dataclass
class Section:
    """One plan's part of a journal."""

    key: str
    id: int
    identity: Identity
    decided: DecidedPairs
    done: bool = False  # every outcome of the plan was recorded (a run's host finished)
    replayed: list[ProbeOutcome] | None = None  # kept when loading asked for it


def _sync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """An open journal: its sections, a queue of frames to write, the thread that writes.

    ``recorded`` holds every section the file declares (header and section frames);
    ``sections`` those claimed by a plan of this process. A run's host claimed late
    (``add_section``) gets what loading kept aside for it."""

    def __init__(self, path: str, fd: int, kind: str, exact: bool = False) -> None:
        self.path = path
        self.fd = fd
        self.kind = kind
        #: the file's sections must be exactly the plans' (a command line's run: the same
        #: hosts), checked once the file is read
        self.exact = exact
        self.recorded: dict[str, dict[str, Any]] = {}
        self.in_file: set[str] = set()  # keys the file declares
        self.sections: dict[str, Section] = {}
        self.loaded = LoadReport()
        self._data_start = 0
        self._next_id = 0
        self._aside: dict[int, list[Batch]] = {}  # outcomes of sections not claimed yet
        self._done_ids: set[int] = set()
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._fd_lock = threading.Lock()  # who closes the file: close(), or a sync under way
        self._syncing = False
        self._fd_closed = False
        self._queue: list[bytes] = []
        self._recorders: list[Recorder] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self.wrote = False  # recorded anything since it was read
        self._new = False  # created by this process, its directory not synced yet
        self.closed = False

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, kind: str, plans: Mapping[str, ScanPlan],
             exact: bool = False) -> Journal:
        """The journal at ``path`` for these plans (key -> plan): created when there is none,
        else checked (``JournalMismatch`` when a plan's scan differs from its section's;
        with ``exact``, also when the file's sections are not the plans'). Call ``replay``
        or ``load`` next: they read the outcomes."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return cls._create(path, kind, plans)
        except OSError as exc:
            reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise JournalUnusable(f"cannot open the journal {path}: {reason}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise JournalUnusable(f"the journal {path} is not a regular file")
            if info.st_uid != os.geteuid():
                raise JournalUnusable(f"the journal {path} belongs to another user: not read")
            header, end = _read_header(fd)
            if header is None:
                if end >= 0:  # empty, or a header cut short: killed while creating it
                    os.close(fd)
                    os.unlink(path)
                    return cls._create(path, kind, plans)
                raise JournalUnusable(f"{path} is damaged at its start or is no journal: "
                                      f"delete it to start over")
            journal = cls(path, fd, kind, exact)
            journal._data_start = end
            for item in _header_sections(path, kind, header):
                journal._declare(item, in_file=True)
            for key, plan in plans.items():
                journal._claim(key, plan, declare=False)
            return journal
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _create(cls, path: str, kind: str, plans: Mapping[str, ScanPlan]) -> Journal:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o666)
        except OSError as exc:
            raise JournalUnusable(f"cannot create the journal {path}: {exc.strerror}") from None
        journal = cls(path, fd, kind)
        for key, plan in plans.items():
            journal._claim(key, plan)
        header = {"format": FORMAT, "version": VERSION, "kind": kind,
                  "sections": list(journal.recorded.values())}
        journal._queue.clear()  # the header declares them all
        journal.in_file = set(journal.recorded)
        try:
            _write_all(fd, frame(HEADER, json_payload(header)))
        except OSError as exc:
            os.close(fd)
            raise JournalUnusable(f"cannot write the journal {path}: {exc.strerror}") from None
        journal._data_start = os.lseek(fd, 0, os.SEEK_END)
        journal._new = True  # its first sync (off the scan's path) syncs its directory too
        return journal

    def _declare(self, item: Mapping[str, Any], in_file: bool = False) -> None:
        """A section the file declares (its header or a section frame), or one to add."""
        self.recorded[item["key"]] = dict(item)
        self._next_id = max(self._next_id, item["id"] + 1)
        if in_file:
            self.in_file.add(item["key"])

    def _claim(self, key: str, plan: ScanPlan, declare: bool = True) -> Section:
        """A plan takes its section: checked against the file's, or declared anew (by the
        header of a new journal, or a section frame; ``declare`` False leaves a new one's
        id to ``load``, which may still find it declared further on)."""
        identity = scan_identity(plan)
        item = self.recorded.get(key)
        if item is not None:
            _check(self.path, key, item["identity"], identity)
            section = Section(key, item["id"], identity, _index(plan))
        else:
            section = Section(key, -1, identity, _index(plan))
            if declare:
                self._declare_new(section)
        self.sections[key] = section
        return section

    def _declare_new(self, section: Section) -> None:
        section.id = self._next_id
        self._next_id += 1
        self._declare(_declaration(section))
        self._queue.append(frame(SECTION, json_payload(_declaration(section))))

    # ---- loading ------------------------------------------------------------------------

    def load(self, keep: bool = False) -> LoadReport:
        """``replay`` to the end: what the file holds is only indexed (and kept with
        ``keep``)."""
        for _ in self.replay(keep):
            pass
        return self.loaded

    def replay(self, keep: bool = False) -> Iterator[tuple[str, list[ProbeOutcome],
                                                           list[PortRun]]]:
        """Read every frame after the header, giving (key, outcomes, runs) of each claimed
        section in the order recorded, each pair once; its decided pairs are set as they
        come (``keep`` also keeps the outcomes in ``Section.replayed``). A damaged frame is
        skipped; a frame cut short at the end is cut off, so new ones follow good ones.
        Sections no plan claimed yet keep theirs aside for ``add_section``. Read it to the
        end before recording anything."""
        report = self.loaded
        if keep:
            for section in self.sections.values():
                section.replayed = []
        by_id = {s.id: s for s in self.sections.values() if s.id >= 0}
        known = {item["id"] for item in self.recorded.values()}
        good_end = self._data_start
        os.lseek(self.fd, self._data_start, os.SEEK_SET)
        read = functools.partial(os.read, self.fd, _CHUNK)
        for kind, payload, end in read_frames(read, self._data_start, report):
            good_end = end
            try:
                if kind == OUTCOMES:
                    batch = decode_batch(payload)
                    owner = by_id.get(batch.section)
                    if owner is not None:
                        new, new_runs = self._replay(owner, batch.outcomes, batch.runs)
                        if new or new_runs:
                            yield owner.key, new, new_runs
                    elif batch.section in known:
                        self._aside.setdefault(batch.section, []).append(batch)
                    else:
                        raise Damaged("outcomes of a section never declared")
                elif kind == SECTION:
                    item = read_json(payload)
                    if not _is_declaration(item) or item["key"] in self.recorded:
                        raise Damaged("a section frame that makes no sense")
                    claimed = self.sections.get(item["key"])
                    if claimed is not None:  # claimed by this run's plan: the same scan?
                        _check(self.path, item["key"], item["identity"], claimed.identity)
                        claimed.id = item["id"]
                        by_id[claimed.id] = claimed
                    self._declare(item, in_file=True)
                    known.add(item["id"])
                elif kind == DONE:
                    done = read_json(payload)
                    if isinstance(done, int):
                        if done in by_id:
                            by_id[done].done = True
                        self._done_ids.add(done)
                elif kind == NOTE:
                    report.notes.append(read_json(payload))
            except Damaged:
                report.damaged += 1
        if self.exact:
            _same_hosts(self.path, self.in_file, set(self.sections))
        if report.torn:
            os.ftruncate(self.fd, good_end)
            os.fsync(self.fd)
        os.lseek(self.fd, 0, os.SEEK_END)
        for section in self.sections.values():
            if section.id < 0:  # a plan the file never named: declared after what is there
                self._declare_new(section)
                if keep:
                    section.replayed = []

    def _replay(self, section: Section, outcomes: list[ProbeOutcome],
                runs: list[PortRun]) -> tuple[list[ProbeOutcome], list[PortRun]]:
        """Index a batch read back; the part of it not seen before."""
        decided = section.decided
        new = decided.add(outcomes)
        new_runs = [part for part in map(decided.add_run, runs) if part is not None]
        self.loaded.outcomes += len(new) + sum(len(r.ports) for r in new_runs)
        if section.replayed is not None:
            section.replayed.extend(new)
            for run in new_runs:
                section.replayed.extend(run.outcomes())
        return new, new_runs

    # ---- sections -----------------------------------------------------------------------

    def section(self, key: str = "") -> Section:
        return self.sections[key]

    def add_section(self, key: str, plan: ScanPlan, keep: bool = True) -> Section:
        """A plan this process did not name when it opened the journal (a nornir run's
        host outside the run's first batch): checked against the file, given the outcomes
        loading kept aside for it, or declared anew."""
        with self._lock:
            section = self.sections.get(key)
            if section is not None:
                _check(self.path, key, section.identity, scan_identity(plan))
                return section
            section = self._claim(key, plan)
            if keep:
                section.replayed = []
            for batch in self._aside.pop(section.id, []):
                self._replay(section, batch.outcomes, batch.runs)
            section.done = section.id in self._done_ids
        self._put(b"")
        return section

    # ---- recording ----------------------------------------------------------------------

    def record(self, key: str, outcomes: list[ProbeOutcome],
               runs: list[PortRun] | tuple[()] = ()) -> None:
        """Queue decided outcomes of section ``key``; written within ``FLUSH_INTERVAL``."""
        if not outcomes and not runs:
            return
        self._put(frame(OUTCOMES, encode_batch(self.sections[key].id, outcomes, list(runs))))

    def record_encoded(self, payload: bytes) -> None:
        """Queue a batch another process encoded (``encode_batch`` with the section's id):
        a shard worker makes its records in parallel, the scan's parent only queues them."""
        self._put(frame(OUTCOMES, payload))

    def recorder(self, key: str) -> Recorder:
        """Where outcomes decided one at a time go (``Recorder``)."""
        recorder = Recorder(self.sections[key].id)
        with self._lock:
            self._recorders.append(recorder)
        self._put(b"")
        return recorder

    def mark_done(self, key: str, recorder: Recorder | None = None) -> None:
        """Every outcome of the section is recorded (those of ``recorder`` too): a resume
        takes the section's outcomes as they are, without looking at its plan."""
        section = self.sections[key]
        section.done = True
        with self._lock:
            if recorder is not None:
                self._queue.extend(recorder.frames())
                self._recorders.remove(recorder)
            self._queue.append(frame(DONE, json_payload(section.id)))
        self._put(b"")

    def note(self, obj: Any) -> None:
        """A record of the caller's own (JSON), given back by ``load`` in ``loaded.notes``."""
        self._put(frame(NOTE, json_payload(obj)))

    def _put(self, data: bytes) -> None:
        if self._error is not None:
            raise JournalError(f"cannot write the journal {self.path}: "
                               f"{self._error.strerror}")
        with self._lock:
            if data:
                self._queue.append(data)
                self.wrote = True
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._write_loop,
                                                name="portscan-journal", daemon=True)
                self._thread.start()
                _live.add(self)

    def _write_loop(self) -> None:
        """Write what is queued every FLUSH_INTERVAL; sync at most every SYNC_INTERVAL."""
        synced = monotonic()
        dirty = False
        while not self._stop.wait(FLUSH_INTERVAL):
            try:
                dirty = self._write_queued() or dirty
                if dirty and monotonic() - synced >= SYNC_INTERVAL and not self.closed:
                    self._sync()
                    synced, dirty = monotonic(), False
            except OSError as exc:
                self._error = exc
                return

    def _sync(self) -> None:
        """fdatasync (and a new journal's directory). The writer thread's sync may outlive
        a ``close(sync=False)``: the file is then closed here, when the sync is done."""
        with self._fd_lock:
            if self._fd_closed:
                return
            self._syncing = True
        try:
            os.fdatasync(self.fd)
            if self._new:  # a new file's name is durable once its directory is synced
                _sync_dir(self.path)
                self._new = False
        finally:
            with self._fd_lock:
                self._syncing = False
                if self._fd_closed:
                    os.close(self.fd)

    def _write_queued(self) -> bool:
        with self._writing:  # one writer at a time: frames land whole, in queue order
            with self._lock:
                for recorder in self._recorders:
                    self._queue.extend(recorder.frames())
                queued, self._queue = self._queue, []
            if queued:
                _write_all(self.fd, b"".join(queued))
        return bool(queued)

    def flush(self, sync: bool = True) -> None:
        """Write (and sync) everything recorded so far."""
        try:
            self._write_queued()
            if sync:
                self._sync()
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}"
                               ) from None

    def close(self, sync: bool = True) -> None:
        """Stop the writer, write what is left (and sync it: a stop the run will continue
        from; a finished run whose report is about to be made durable need not), close the
        file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None and sync:
            self._thread.join()  # (without sync: never wait for a sync under way)
        try:
            if self._error is None:
                self.flush(sync)
        finally:
            with self._fd_lock:
                self._fd_closed = True
                if not self._syncing:
                    os.close(self.fd)
            _forget(self)

    def remove(self) -> None:
        """The work is safely elsewhere (the report is in place and synced): the journal
        goes. (Should a power loss undo the unlink, a resume finds everything decided.)"""
        self.close(sync=False)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Recorder:
    """Outcomes of one section decided one at a time (a nornir host's scan on the shared
    engine hands them out singly). ``add`` only appends (thread-safe, no lock); the
    journal's writer takes them every ``FLUSH_INTERVAL``, so none waits long."""

    __slots__ = ("add", "pending", "section")

    def __init__(self, section: int) -> None:
        self.section = section
        self.pending: deque[ProbeOutcome] = deque()
        self.add = self.pending.append

    def frames(self) -> list[bytes]:
        """What was added since the last call, as frames (called under the journal's lock)."""
        pending = self.pending
        taken = [pending.popleft() for _ in range(len(pending))]
        return [frame(OUTCOMES, encode_batch(self.section, taken[i:i + _RECORDER_BATCH]))
                for i in range(0, len(taken), _RECORDER_BATCH)]


# ---- helpers -----------------------------------------------------------------------------

def _index(plan: ScanPlan) -> DecidedPairs:
    return DecidedPairs(needs_spec(plan), plan.ports)


def _declaration(section: Section) -> dict[str, Any]:
    return {"key": section.key, "id": section.id, "identity": section.identity,
            "positions": section.decided.positions, "ports": section.decided.width}


def _check(path: str, key: str, recorded: Mapping[str, str], now: Mapping[str, str]) -> None:
    items = differences(recorded, now)
    if items:
        where = f"host {key!r}: " if key else ""
        raise JournalMismatch(path, items, where + describe(recorded, now, items))


def _same_hosts(path: str, recorded: set[str], now: set[str]) -> None:
    extra, missing = sorted(recorded - now), sorted(now - recorded)
    if not extra and not missing:
        return

    def names(keys: list[str]) -> str:
        return ", ".join(map(repr, keys[:3])) + (" and more" if len(keys) > 3 else "")

    parts = []
    if extra:
        parts.append(f"it has {names(extra)}, which this run does not scan")
    if missing:
        parts.append(f"this run also scans {names(missing)}")
    raise JournalMismatch(path, ["hosts"], f"hosts differ ({'; '.join(parts)})")


def _is_declaration(item: Any) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("key"), str)
            and isinstance(item.get("id"), int) and item["id"] >= 0
            and isinstance(item.get("identity"), dict))


def _header_sections(path: str, kind: str, header: Any) -> list[dict[str, Any]]:
    """The sections a header declares, once it is known to be this kind's journal."""
    if not (isinstance(header, dict) and header.get("format") == FORMAT
            and isinstance(header.get("sections"), list)):
        raise JournalUnusable(f"{path} is not a nornir-portscan journal")
    if header.get("version") != VERSION:
        raise JournalUnusable(f"the journal {path} has version {header.get('version')!r}; this "
                           f"nornir-portscan reads version {VERSION}")
    if header.get("kind") != kind:
        raise JournalMismatch(path, ["kind"], f"it is the journal of a {header.get('kind')}, "
                              f"not of a {kind}")
    items: list[dict[str, Any]] = header["sections"]
    if not all(_is_declaration(item) for item in items):
        raise JournalUnusable(f"{path} is not a nornir-portscan journal (its sections)")
    return items


def _read_header(fd: int) -> tuple[Any, int]:
    """(the header frame's JSON, its end); (None, 0) for an empty file or a header frame
    cut short (nothing can have been recorded after it); (None, -1) for anything else."""
    os.lseek(fd, 0, os.SEEK_SET)
    buf = bytearray()
    while True:
        end, kind, payload = parse_frame(buf, 0)
        if end > 0 and kind == HEADER and payload is not None:
            try:
                return read_json(payload), end
            except Damaged:
                return None, -1
        chunk = os.read(fd, 1 << 16) if end == NEED_MORE else b""
        if not chunk:
            whole = len(buf) >= 3 and bytes(buf[:3]) == MAGIC + HEADER
            return None, 0 if end == NEED_MORE and (whole or bytes(buf) in (b"", MAGIC[:1],
                                                                            MAGIC)) else -1
        buf += chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_open: dict[str, Journal] = {}
_open_lock = threading.RLock()
#: Journals with a writer: a process that ends without closing one (a nornir script whose
#: run is over) still writes what it recorded.
_live: weakref.WeakSet[Journal] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for journal in list(_live):
        try:
            journal.close()
        except Exception:  # exiting: nothing better to do with it
            pass


def shared_journal(path: str, kind: str, plans: Mapping[str, ScanPlan],
                   keep: bool = True, reopen: bool = False, exact: bool = False) -> Journal:
    """The process's one open journal at ``path`` (a nornir run's hosts share it), opened
    and loaded on first use; later callers' plans are checked against it, or added. With
    ``reopen`` (a new run begins: what the last one recorded is in the file) an open one is
    closed and read again (if it recorded anything since it was read); one whose file was
    deleted or replaced is never reused."""
    real = os.path.realpath(path)
    with _open_lock:
        journal = _open.get(real)
        if journal is not None and ((reopen and (journal.wrote or journal._recorders))
                                    or not _same_file(journal, path)):
            del _open[real]
            journal.close()
            journal = None
        if journal is None:
            journal = Journal.open(path, kind, plans, exact)
            try:
                journal.load(keep=keep)
            except BaseException:
                journal.close()
                raise
            _open[real] = journal
            return journal
    for key, plan in plans.items():
        journal.add_section(key, plan, keep=keep)
    return journal


def _same_file(journal: Journal, path: str) -> bool:
    try:
        now, mine = os.stat(path), os.fstat(journal.fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _forget(journal: Journal) -> None:
    with _open_lock:
        for real, known in list(_open.items()):
            if known is journal:
                del _open[real]
