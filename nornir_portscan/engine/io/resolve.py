"""Name resolution off the readiness loop.

``getaddrinfo`` blocks, so lookups run on a small thread pool and the
scheduler only checks whether a lookup's future is done.
"""

from __future__ import annotations

import socket
from concurrent.futures import Future, ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None


def _lookup(name: str) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    seen: dict[tuple[int, str], None] = {}
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET:
            seen.setdefault((4, str(sockaddr[0])), None)
        elif family == socket.AF_INET6:
            seen.setdefault((6, str(sockaddr[0]).split("%")[0]), None)
    return list(seen)


def resolve(name: str) -> Future[list[tuple[int, str]]]:
    """Start resolving ``name``: the future gives (ip version, address) pairs, empty if none."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="portscan-dns")
    return _pool.submit(_lookup, name)
