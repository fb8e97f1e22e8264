"""nornir tasks: ``portscan``, its async twin ``aportscan``, and ``wait_for_ports``."""

from .portscan import ScanResult, aportscan, portscan
from .wait import wait_for_ports

__all__ = ["ScanResult", "aportscan", "portscan", "wait_for_ports"]
