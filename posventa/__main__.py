"""``python -m posventa`` is the ``posventa`` command."""

import sys

from posventa.cli import main

sys.exit(main())
