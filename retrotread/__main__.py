"""``python -m retrotread``: the same program as the ``retrotread`` command."""

import sys

from retrotread.cli import main

sys.exit(main())
