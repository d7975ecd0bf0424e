"""``python -m flows.cli``: the ``alphagate`` script."""

from flows.cli import main

raise SystemExit(main())
