"""A journal's sections and what they hold: opening (created, or checked against the
plans that resume it), loading what the file holds, claiming sections late, and turning
decided outcomes into frames for the writer (``writer.py``)."""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...core.decided import DecidedPairs
from ...core.identity import Identity, scan_identity
from ...core.outcome import PortRun, ProbeOutcome
from ...core.plan import ScanPlan
from ...core.records import (
    DONE,
    HEADER,
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
    read_frames,
    read_json,
)
from ...core.resume import needs_spec
from . import registry
from .errors import JournalUnusable, check_hosts, check_identity
from .fileformat import (
    CHUNK,
    FORMAT,
    VERSION,
    header_sections,
    is_declaration,
    read_header,
    write_all,
)
from .writer import Recorder, Writer


@dataclass
class Section:
    """One plan's part of a journal."""

    key: str
    id: int
    identity: Identity
    decided: DecidedPairs
    done: bool = False  # every outcome of the plan was recorded (a run's host finished)
    replayed: list[ProbeOutcome] | None = None  # kept when loading asked for it


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
        self.writer = Writer(path, fd)
        self._lock = self.writer.lock  # a section's frame is queued before its outcomes
        self.closed = False

    @property
    def wrote(self) -> bool:
        """Recorded anything since it was read."""
        return self.writer.wrote

    @property
    def recording(self) -> bool:
        """A ``Recorder`` of it is still taking outcomes."""
        return bool(self.writer.recorders)

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
            header, end = read_header(fd)
            if header is None:
                if end >= 0:  # empty, or a header cut short: killed while creating it
                    os.close(fd)
                    os.unlink(path)
                    return cls._create(path, kind, plans)
                raise JournalUnusable(f"{path} is damaged at its start or is no journal: "
                                      f"delete it to start over")
            journal = cls(path, fd, kind, exact)
            journal._data_start = end
            for item in header_sections(path, kind, header):
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
        journal.writer.queue.clear()  # the header declares them all
        journal.in_file = set(journal.recorded)
        try:
            write_all(fd, frame(HEADER, json_payload(header)))
        except OSError as exc:
            os.close(fd)
            raise JournalUnusable(f"cannot write the journal {path}: {exc.strerror}") from None
        journal._data_start = os.lseek(fd, 0, os.SEEK_END)
        journal.writer.new = True  # its first sync (off the scan's path) syncs its directory
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
            check_identity(self.path, key, item["identity"], identity)
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
        self.writer.queue.append(frame(SECTION, json_payload(_declaration(section))))

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
        read = functools.partial(os.read, self.fd, CHUNK)
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
                    if not is_declaration(item) or item["key"] in self.recorded:
                        raise Damaged("a section frame that makes no sense")
                    claimed = self.sections.get(item["key"])
                    if claimed is not None:  # claimed by this run's plan: the same scan?
                        check_identity(self.path, item["key"], item["identity"],
                                       claimed.identity)
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
            check_hosts(self.path, self.in_file, set(self.sections))
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
                check_identity(self.path, key, section.identity, scan_identity(plan))
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
            self.writer.recorders.append(recorder)
        self._put(b"")
        return recorder

    def mark_done(self, key: str, recorder: Recorder | None = None) -> None:
        """Every outcome of the section is recorded (those of ``recorder`` too): a resume
        takes the section's outcomes as they are, without looking at its plan."""
        section = self.sections[key]
        section.done = True
        with self._lock:
            if recorder is not None:
                self.writer.queue.extend(recorder.frames())
                self.writer.recorders.remove(recorder)
            self.writer.queue.append(frame(DONE, json_payload(section.id)))
        self._put(b"")

    def note(self, obj: Any) -> None:
        """A record of the caller's own (JSON), given back by ``load`` in ``loaded.notes``."""
        self._put(frame(NOTE, json_payload(obj)))

    def _put(self, data: bytes) -> None:
        self.writer.put(data, started=lambda: registry.live(self))

    def flush(self, sync: bool = True) -> None:
        """Write (and sync) everything recorded so far."""
        self.writer.flush(sync)

    def close(self, sync: bool = True) -> None:
        """Stop the writer, write what is left (and sync it: a stop the run will continue
        from; a finished run whose report is about to be made durable need not), close the
        file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.writer.close(sync)
        finally:
            registry.closed(self)

    def remove(self) -> None:
        """The work is safely elsewhere (the report is in place and synced): the journal
        goes. (Should a power loss undo the unlink, a resume finds everything decided.)"""
        self.close(sync=False)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# ---- helpers -----------------------------------------------------------------------------

def _index(plan: ScanPlan) -> DecidedPairs:
    return DecidedPairs(needs_spec(plan), plan.ports)


def _declaration(section: Section) -> dict[str, Any]:
    return {"key": section.key, "id": section.id, "identity": section.identity,
            "positions": section.decided.positions, "ports": section.decided.width}
