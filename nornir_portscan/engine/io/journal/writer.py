"""The journal's writer: a queue of frames and the one thread that writes and syncs them
(when: ``policy.py``), and the ``Recorder`` that gathers outcomes decided one at a time.

Nothing here knows what a frame says: ``Journal`` (``sections.py``) encodes, this writes."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic

from ...core.outcome import ProbeOutcome
from ...core.records import OUTCOMES, encode_batch, frame
from . import policy
from .errors import JournalError
from .fileformat import sync_dir, write_all


class Writer:
    """Owns the file descriptor's writes, syncs and closing. ``lock`` guards the queue and
    the recorders; ``Journal`` takes it too when it declares sections, so a section frame
    and the frames that follow it are queued in order."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.lock = threading.Lock()
        self._writing = threading.Lock()
        self._fd_lock = threading.Lock()  # who closes the file: close(), or a sync under way
        self._syncing = False
        self._fd_closed = False
        self.queue: list[bytes] = []
        self.recorders: list[Recorder] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None
        self.wrote = False  # recorded anything since it was read
        self.new = False  # created by this process, its directory not synced yet
        self.closed = False

    def put(self, data: bytes, started: Callable[[], None]) -> None:
        """Queue ``data`` (a frame, or nothing: only start the thread); ``started`` is
        called once, when the thread starts."""
        if self.error is not None:
            raise JournalError(f"cannot write the journal {self.path}: "
                               f"{self.error.strerror}")
        with self.lock:
            if data:
                self.queue.append(data)
                self.wrote = True
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._write_loop,
                                                name="portscan-journal", daemon=True)
                self._thread.start()
                started()

    def _write_loop(self) -> None:
        """Write what is queued every FLUSH_INTERVAL; sync when the policy says."""
        synced = monotonic()
        dirty = False
        while not self._stop.wait(policy.FLUSH_INTERVAL):
            try:
                dirty = self._write_queued() or dirty
                if policy.sync_due(dirty, monotonic() - synced, self.closed):
                    self._sync()
                    synced, dirty = monotonic(), False
            except OSError as exc:
                self.error = exc
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
            if self.new:  # a new file's name is durable once its directory is synced
                sync_dir(self.path)
                self.new = False
        finally:
            with self._fd_lock:
                self._syncing = False
                if self._fd_closed:
                    os.close(self.fd)

    def _write_queued(self) -> bool:
        with self._writing:  # one writer at a time: frames land whole, in queue order
            with self.lock:
                for recorder in self.recorders:
                    self.queue.extend(recorder.frames())
                queued, self.queue = self.queue, []
            if queued:
                write_all(self.fd, b"".join(queued))
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
        """Stop the thread, write what is left (and sync it unless told not to), close
        the file. Call once (``Journal.close`` does)."""
        self.closed = True
        self._stop.set()
        if self._thread is not None and sync:
            self._thread.join()  # (without sync: never wait for a sync under way)
        try:
            if self.error is None:
                self.flush(sync)
        finally:
            with self._fd_lock:
                self._fd_closed = True
                if not self._syncing:
                    os.close(self.fd)


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
        """What was added since the last call, as frames (called under the writer's lock)."""
        pending = self.pending
        batch = policy.RECORDER_BATCH
        taken = [pending.popleft() for _ in range(len(pending))]
        return [frame(OUTCOMES, encode_batch(self.section, taken[i:i + batch]))
                for i in range(0, len(taken), batch)]
