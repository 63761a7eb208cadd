"""``python -m mirror``: the same as the ``mirror`` console script."""

import sys

from mirror.cli import main

sys.exit(main())
