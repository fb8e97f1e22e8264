"""The keys a scan's seed stands for: each host's port order and the shard layout.

A scan is replayed by its seed (the ``seed`` setting, recorded in the report's options):
every key that changes what is probed when, or which shard probes it, follows from the
seed here and from nothing else, so the same plan with the same seed probes in the same
order in any process, on any machine. The seed is drawn by the I/O side when none is given
(``io/local.py``): nothing here draws randomness.

Each key is a hash of the seed (SplitMix64's finaliser, mixed with a constant per use)
rather than the seed itself, so seeds next to each other (1, 2, 3) give unrelated orders,
and the port order and the layout do not share bits. Plain integer arithmetic: ``hashlib``
would load OpenSSL into every scan (3.4 MiB of peak RSS in benchmarks/bench.py).
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
#: One constant per use of the seed: the port order's key and the layout's differ.
_PORT_ORDER, _SHARD_LAYOUT = 0x706F72742D6F7264, 0x6C61796F75742D6B  # "port-ord", "layout-k"


def _mix(x: int) -> int:
    """SplitMix64's step: a bijection of 64-bit integers that spreads every input bit."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _key(seed: int, use: int) -> int:
    """64 bits of ``seed`` (of any size: each 64-bit word is mixed in) for ``use``."""
    h = _mix(use)
    while True:
        h = _mix(h ^ (seed & _MASK))
        seed >>= 64
        if not seed:
            return h


def port_order_key(seed: int) -> int:
    """A job's port-order key (``Job.key``, 40 bits): never 0, which means "as given"."""
    return (_key(seed, _PORT_ORDER) >> 24) or 1


def layout_key(seed: int) -> int:
    """The shard layout's key (``ShardLayout.key``, 48 bits)."""
    return _key(seed, _SHARD_LAYOUT) >> 16
