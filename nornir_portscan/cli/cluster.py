"""``--cluster``: connect before any output is written, and count outcomes across shards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from .common import EXIT_FAILED, fail


def cluster_client(address: str) -> None:
    """Connect to a Dask cluster before any output: without Dask, a one-line usage error
    (exit 2); a scheduler that does not answer, a one-line error and exit 3."""
    from ..engine.core.errors import EngineError
    from ..engine.shards.cluster import DaskMissing, connect

    try:
        connect(address)
    except DaskMissing:
        fail("--cluster needs Dask: pip install 'nornir-portscan[dask]'")
    except EngineError as exc:
        print(f"nornir-portscan: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def close_clients() -> None:
    """Close this process's cluster clients (and a local cluster) while threads still run."""
    if "nornir_portscan.engine.shards.cluster" in sys.modules:
        from ..engine.shards.cluster import close_all

        close_all()


def with_progress(batches: Iterator[Any], total: int, show: bool) -> Iterator[Any]:
    """Pass ``(outcomes, runs)`` batches through, counting outcomes on a bar on stderr."""
    if not show:
        yield from batches
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    terminal = sys.stderr.isatty()
    # asked for on a pipe or a file: drawn anyway, and left in place at the end
    console = Console(stderr=True, force_terminal=True if not terminal else None)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=terminal) as bar:
        task = bar.add_task("outcomes", total=total)
        for batch in batches:
            outcomes, runs = batch
            bar.advance(task, len(outcomes) + sum(len(r.ports) for r in runs))
            yield batch
