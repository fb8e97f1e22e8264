"""What to scan: target and port specifications, parsed and validated before any packet."""

from .ports import parse_ports
from .targets import Target, TargetItem, TargetSpec, parse_target, parse_targets

__all__ = ["Target", "TargetItem", "TargetSpec", "parse_ports", "parse_target", "parse_targets"]
