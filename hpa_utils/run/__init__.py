"""The run layer: the configuration (resolved once), the process's runtime, the notebook runner, the CLI.

Notebooks open their run with ``from hpa_utils.run import open_run``.
"""

from hpa_utils.run.session import Run, open_run

__all__ = ["Run", "open_run"]
