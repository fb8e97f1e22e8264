"""``python -m nornir_portscan`` is the command line."""

from .cli import main

raise SystemExit(main())
