"""A scan spread over several engines: forked worker processes (``shard.py``) and the
workers of a Dask cluster (``cluster.py``), both cut by the one split of ``core.split``.
"""
