"""``python -m nasflow.cli``: the ``nasflow`` command."""

import sys

from nasflow.cli import main

sys.exit(main())
