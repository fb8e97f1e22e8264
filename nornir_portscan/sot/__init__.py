"""Auditing a source of truth (Nautobot today) against what actually listens.

Three parts, kept apart so that a NetBox adapter is one more file and the decisions run in
a test without any server:

- ``model``: what the audit reads from a source of truth (a ``Snapshot``: prefixes, IP
  address records, services, primary IPs) and what it reports (``Finding``) or writes back
  (``Changes``), as plain records;
- ``source``: the ``SourceOfTruth`` protocol an adapter implements (read a scope in bulk,
  apply changes), and the one error it raises when the server cannot be used;
- ``audit``: the decisions, with no I/O: which ports to probe, what the outcomes of the
  scan mean for the records (the four findings), and what ``--apply`` would change;
- ``nautobot``: the Nautobot adapter, on pynautobot (an optional extra).

The layer sits between the engine (whose outcomes it judges) and the nornir plugins (the
``portscan_services`` transform function reads a source of truth through it).
"""

from .model import Address, Changes, Finding, ObjectRef, Prefix, Scope, Service, Snapshot
from .source import SotUnavailable, SourceOfTruth

__all__ = ["Address", "Changes", "Finding", "ObjectRef", "Prefix", "Scope", "Service",
           "Snapshot", "SotUnavailable", "SourceOfTruth"]
