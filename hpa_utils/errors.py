"""The project's one error type for bad input data.

Every check on user-supplied files (datasets, caches, submissions) raises
:class:`DataError` with a message that names the file and, where there is one,
the CSV row, so that the CLI can print it as one line without a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file (and row) and what is wrong.

    Attributes:
        problems: every individual problem found, one sentence each. A check
            that collects several problems raises one DataError holding them all.
    """

    def __init__(self, message: str | None = None, problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message or "invalid data"]
        super().__init__(message or "\n".join(self.problems))
