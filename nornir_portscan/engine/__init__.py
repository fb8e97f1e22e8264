"""The asynchronous connect engine: outcome types, the sans-I/O scheduler, the readiness loop.

This package knows nothing of nornir; the nornir plugins build on it. ``core/`` decides
(no socket, clock or randomness), ``io/`` does one process's I/O, ``shards/`` spreads a
scan over processes or a Dask cluster; ``api.py`` runs a scan any of those ways.
"""

from .api import (
    ScanPlan,
    ScanStats,
    ascan,
    astream,
    plan_scan,
    run_plan,
    run_plan_batches,
    scan,
)
from .core.errors import EngineError
from .core.outcome import PortState, ProbeOutcome, classify
from .core.scheduler import Scheduler
from .core.work import Job, JobOptions

__all__ = ["EngineError", "Job", "JobOptions", "PortState", "ProbeOutcome",
           "ScanPlan", "ScanStats", "Scheduler", "ascan", "astream", "classify", "plan_scan",
           "run_plan", "run_plan_batches", "scan"]
