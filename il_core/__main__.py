"""``python -m il_core`` runs the ``il-core`` command line."""

import sys

from il_core.cli import main

sys.exit(main())
