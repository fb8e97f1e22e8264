"""The ``PortscanInventory`` plugin: SimpleInventory files plus subnets to audit."""

from .subnets import PortscanInventory

__all__ = ["PortscanInventory"]
