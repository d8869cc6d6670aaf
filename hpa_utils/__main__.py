"""``python -m hpa_utils``: the same subcommands as the ``hpa`` console command."""

import sys

from hpa_utils.run.cli import main

sys.exit(main())
