"""``python -m effvid ...`` is the ``effvid`` command (and ``torchrun -m effvid train ...`` runs it
in several processes)."""

import sys

from .cli import main

sys.exit(main())
