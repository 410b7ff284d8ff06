"""``python -m swiftkit`` is the ``swiftkit`` console script (``torchrun -m swiftkit sft ...`` runs one per rank)."""

import sys

from swiftkit.cli.main import main

sys.exit(main())
