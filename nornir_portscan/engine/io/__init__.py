"""The engine's I/O in one process: the readiness loop (the only code that touches probe
sockets), descriptor limits, name lookups, one process's scan and the shared engine thread.

It carries out what ``engine.core`` decides; it knows nothing of shards or clusters
(``engine.shards``).
"""
