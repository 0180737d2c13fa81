"""``python -m bench``: run the benchmark matrix (see :mod:`bench.cli`)."""

from bench.cli import main

raise SystemExit(main())
