"""The report's file: it appears at its path only when complete, and a crash leaves nothing.

A report is written to a file with no name (``O_TMPFILE``), which vanishes with the process
whatever kills it, and is given a name only when complete, then renamed over the path. An
unnamed file is named through ``/proc/self/fd`` or, where the kernel refuses that (it
does on recent kernels), ``linkat(AT_EMPTY_PATH)``, which Linux 6.10 and later allow to the
file's opener (and root always). Whether that works is tried once per file system with a
file of no size, so a report is never written where it could not be named (and then
copied). Where unnamed files cannot be made or named, a hidden ``.portscan-NAME-*`` file is
written and renamed instead, locked (``flock``) while its writer lives: the next report
written to the same path removes one whose writer died (a SIGKILL cannot clean up).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from ..errors import PortscanError

#: st_dev of a directory's file system -> whether unnamed files made there can be named.
_nameable: dict[int, bool] = {}
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
#: A leftover younger than this is never removed: its writer may be between creating it
#: and locking it.
_LEFTOVER_AGE = 10.0


@contextmanager
def output_stream(path: str | None, durable: bool = False) -> Iterator[IO[str]]:
    """stdout, or a file that appears at ``path`` only when complete (after partial results
    too: an interrupted scan never leaves a half-written file, only a complete file with
    fewer rows). ``durable`` syncs the file and its directory before returning (a resumed
    scan deletes its journal next: the report must be on disk first)."""
    if path is None or path == "-":
        yield sys.stdout
        return
    if os.path.exists(path) and not os.path.isfile(path):
        # a device or FIFO (/dev/null, a pipe): never rename over it
        with open(path, "w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _report_file(directory, path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
            if tmp is None:
                tmp = _name(stream.fileno(), directory) or _copy(stream.fileno(), directory)
        os.replace(tmp, path)
        if durable:
            _sync_directory(directory)
    except BaseException:
        # a crash before the writer finished: keep nothing rather than a torn file
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _report_file(directory: str, path: str) -> tuple[int, str | None]:
    """An open file to write the report into, and its name (None: it has none yet)."""
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask  # a report gets the mode any new file would
    flags = getattr(os, "O_TMPFILE", 0)
    try:
        if flags and _unnamed_files_work(directory, flags):
            try:
                return os.open(directory, flags | os.O_RDWR | os.O_CLOEXEC, mode), None
            except OSError:
                pass
        return _hidden_file(directory, path, mode)
    except OSError as exc:
        raise PortscanError(f"cannot write {path}: {exc.strerror}") from None


def _unnamed_files_work(directory: str, flags: int) -> bool:
    """Whether an unnamed file made in ``directory`` can be given a name: tried once per
    file system, with an empty one."""
    device = os.stat(directory).st_dev
    known = _nameable.get(device)
    if known is None:
        try:
            probe = os.open(directory, flags | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            known = False
        else:
            try:
                named = _name(probe, directory)
                if named is not None:
                    os.unlink(named)
                known = named is not None
            finally:
                os.close(probe)
        _nameable[device] = known
    return known


def _name(fd: int, directory: str) -> str | None:
    """Give an unnamed file a temporary name in ``directory`` (to be renamed over the
    report: a link cannot replace a file); None when the kernel will not."""
    for _ in range(100):
        tmp = os.path.join(directory, f".portscan-{os.urandom(6).hex()}")
        try:
            os.link(f"/proc/self/fd/{fd}", tmp, follow_symlinks=True)
            return tmp
        except FileExistsError:
            continue
        except OSError:
            pass
        failed = _link_empty_path(fd, tmp)
        if failed == errno.EEXIST:
            continue
        return tmp if failed == 0 else None
    return None


def _link_empty_path(fd: int, tmp: str) -> int:
    """``linkat(fd, "", AT_FDCWD, tmp, AT_EMPTY_PATH)``: 0, or the errno it failed with."""
    import ctypes  # only where /proc cannot name the file

    linkat = getattr(ctypes.CDLL(None, use_errno=True), "linkat", None)
    if linkat is None:
        return errno.ENOSYS
    if linkat(fd, b"", _AT_FDCWD, os.fsencode(tmp), _AT_EMPTY_PATH) == 0:
        return 0
    return ctypes.get_errno() or errno.EPERM


def _copy(fd: int, directory: str) -> str:
    """The last resort: a named copy (naming worked when tried, and not now)."""
    out, tmp = tempfile.mkstemp(prefix=".portscan-", dir=directory)
    try:
        os.fchmod(out, os.fstat(fd).st_mode & 0o777)
        size = os.lseek(fd, 0, os.SEEK_END)
        sent = 0
        while sent < size:
            sent += os.copy_file_range(fd, out, size - sent, sent, sent)
        os.fsync(out)
    finally:
        os.close(out)
    return tmp


def _hidden_file(directory: str, path: str, mode: int) -> tuple[int, str]:
    """A named temporary file, locked while this process lives; leftovers of the same
    report whose writer died are removed first."""
    prefix = f".portscan-{os.path.basename(path)[:100]}-"
    _remove_leftovers(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released when the process ends, however it ends
    os.fchmod(fd, mode)  # mkstemp makes 0600
    return fd, tmp


def _remove_leftovers(directory: str, prefix: str) -> None:
    """Remove this report's temporary files whose writer is gone (no lock held on them)."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or time.time() - info.st_mtime < _LEFTOVER_AGE:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.lstat(full).st_ino == info.st_ino:
                os.unlink(full)
        except OSError:
            continue  # locked: its writer is alive; or gone already
        finally:
            os.close(fd)


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
