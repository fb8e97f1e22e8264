"""``python -m nornir_portscan`` is the command line."""

from .cli import console

# guarded: a spawned process (a Dask LocalCluster worker) imports this module again
if __name__ == "__main__":
    raise SystemExit(console())
