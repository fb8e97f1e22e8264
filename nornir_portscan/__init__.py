"""nornir_portscan: a fast, exact TCP connect scanner for nornir.

Imports here stay light: the command line's start-up time matters for CI gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .engine import PortState, ProbeOutcome, ascan, scan
    from .engine.shards.forkserver import serving as fork_server
    from .errors import PortscanError, SpecError

__all__ = ["PortState", "PortscanError", "ProbeOutcome", "SpecError", "__version__", "ascan",
           "fork_server", "scan"]


def __getattr__(name: str) -> Any:
    if name in ("PortState", "ProbeOutcome", "ascan", "scan"):
        from . import engine
        return getattr(engine, name)
    if name == "fork_server":  # a runbook's: see docs/performance.md
        from .engine.shards.forkserver import serving
        return serving
    if name in ("PortscanError", "SpecError"):
        from . import errors
        return getattr(errors, name)
    raise AttributeError(name)
