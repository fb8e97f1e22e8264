"""The engine's decisions, with no I/O: outcomes, jobs and probes, timing, planning, the
scheduler and its parts, and how a scan is split into shards.

Nothing here reads the clock, touches a socket or a descriptor limit, starts a thread or
draws randomness: ``now``, keys and answers are passed in by the I/O side (``engine.io``),
so every decision can be driven by hand in a test. ``tests/test_layers.py`` checks it.
"""
