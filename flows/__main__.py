"""``python -m flows ...`` is ``lrp-audit ...``."""

import sys

from flows.cli import main

sys.exit(main())
