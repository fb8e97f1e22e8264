"""What the plugins share, and what the reports read of their data: no plugin itself.

Nothing here imports nornir or a plugin, so the inventory plugin and the tasks can use
it without importing each other, and ``scan`` reads documents without loading nornir:
``ports`` (an address's ports, listed or folded into ``extraports``), ``provenance``
(the file entry an inventory value was written in).
"""
