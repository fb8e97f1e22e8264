"""The keys a scan's seed stands for: each host's port order and the shard layout.

A scan is replayed by its seed (the ``seed`` setting, recorded in the report's options):
every key that changes what is probed when, or which shard probes it, follows from the
seed here and from nothing else, so the same plan with the same seed probes in the same
order in any process, on any machine. The seed is drawn by the I/O side when none is given
(``io/local.py``): nothing here draws randomness.

Each key is a keyed hash of the seed (BLAKE2b, personalised per use) rather than the seed
itself, so seeds next to each other (1, 2, 3) give unrelated orders, and the port order
and the layout do not share bits.
"""

from __future__ import annotations

import hashlib


def _key(seed: int, use: bytes, size: int) -> int:
    data = seed.to_bytes(seed.bit_length() // 8 + 1, "big")
    return int.from_bytes(hashlib.blake2b(data, digest_size=size, person=use).digest(), "big")


def port_order_key(seed: int) -> int:
    """A job's port-order key (``Job.key``, 40 bits): never 0, which means "as given"."""
    return _key(seed, b"port-order", 5) or 1


def layout_key(seed: int) -> int:
    """The shard layout's key (``ShardLayout.key``, 48 bits)."""
    return _key(seed, b"shard-layout", 6)
