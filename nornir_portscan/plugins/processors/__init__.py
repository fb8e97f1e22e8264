"""nornir processors: ``ProgressProcessor`` draws scan progress on stderr."""

from .progress import ProgressProcessor

__all__ = ["ProgressProcessor"]
