"""``python -m sparseviz`` is the ``sparseviz`` console script."""

import sys

from .cli import main

sys.exit(main())
