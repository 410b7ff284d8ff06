"""``python -m swiftkit`` is the ``swiftkit`` console script (``torchrun -m swiftkit sft ...`` runs one per rank)."""

import os
import sys

from swiftkit.cli.main import main
from swiftkit.core.distributed import ranks

status = main()
if ranks().distributed:
    # A rank of a launcher's run has written and closed its records. Python's teardown would then destroy the
    # process group's gloo threads in no set order, and a rank can abort there ("terminate called without an
    # active exception") after a run that succeeded, which torchrun reports as a failed rank: the rank ends here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
