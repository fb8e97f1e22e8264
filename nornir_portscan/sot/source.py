"""The one interface a source of truth offers the audit: read a scope in bulk, apply changes.

An adapter is one module (``nautobot.py``; a NetBox one would sit beside it). It fetches in
bulk (a few requests for the whole scope, never one per object: a scope of thousands of
addresses must not spend its time in round trips), and raises ``SotUnavailable`` for
anything that makes the server unusable, so the command line says one line and exits 3.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import PortscanError
from .model import Changes, Scope, Snapshot


class SotUnavailable(PortscanError):
    """The source of truth cannot be used: unreachable, the token refused, an answer that
    makes no sense. The message names the URL and the HTTP status, never the token."""

    def __init__(self, url: str, problem: str, status: int | None = None) -> None:
        self.url, self.problem, self.status = url, problem, status
        said = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{url}: {problem}{said}")


class SourceOfTruth(Protocol):
    """What the audit needs of a source of truth."""

    #: Where it is, for messages and the report's options (no credentials in it).
    url: str

    def read(self, scope: Scope) -> Snapshot:
        """Everything the audit compares for ``scope``: its networks, the prefixes, IP
        address records and the services of the devices and VMs owning them."""
        ...

    def apply(self, changes: Changes, status: str) -> dict[str, int]:
        """Write ``changes``; created addresses get ``status``. Returns counts of what was
        written (by what), zero where there was nothing to write."""
        ...
