"""``python -m hpa_utils``: the same subcommands as the ``hpa`` console command."""

import sys

from .cli import main

sys.exit(main())
