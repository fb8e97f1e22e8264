"""The journal file on disk: where it lives, its header and section declarations, and
the raw writes and syncs. The frames themselves are ``core/records.py``'s."""

from __future__ import annotations

import os
from typing import Any

from ...core.records import HEADER, MAGIC, NEED_MORE, Damaged, parse_frame, read_json
from .errors import JournalMismatch, JournalUnusable

FORMAT = "nornir-portscan journal"
VERSION = 1
#: Bytes read at a time while loading.
CHUNK = 1 << 22


def journal_beside(report: str) -> str:
    """The journal of a report file: in its directory, named after it."""
    return f"{report}.journal"


def is_declaration(item: Any) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("key"), str)
            and isinstance(item.get("id"), int) and item["id"] >= 0
            and isinstance(item.get("identity"), dict))


def header_sections(path: str, kind: str, header: Any) -> list[dict[str, Any]]:
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
    if not all(is_declaration(item) for item in items):
        raise JournalUnusable(f"{path} is not a nornir-portscan journal (its sections)")
    return items


def read_header(fd: int) -> tuple[Any, int]:
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


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def sync_dir(path: str) -> None:
    """Make a new file's name durable: sync the directory it is in."""
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
