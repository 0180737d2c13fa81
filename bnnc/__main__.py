"""``python -m bnnc`` runs the command line."""

import sys

from bnnc.compiler.cli import main

sys.exit(main())
