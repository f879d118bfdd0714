"""``python -m tinybnn ...`` runs the command line, the same as the ``tinybnn`` script."""

from tinybnn.cli import main

raise SystemExit(main())
