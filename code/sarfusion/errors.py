"""One error type for bad input, so the CLI can print it as one line and exit non-zero."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong band count, mismatched sizes.

    The message always names the offending file (when there is one) and what is wrong.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
