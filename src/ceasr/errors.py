"""Errors a user can cause. Each names the item (file, row, flag) and the reason in one line.

The CLI prints ``str(error)`` on one line and exits non-zero; batch jobs catch these, report, count and skip.
Anything else that escapes is our bug and keeps its traceback.
"""


class CeasrError(Exception):
    """Base class for every error caused by user input."""


class AudioError(CeasrError):
    """An audio file that cannot be read or holds no usable audio. ``path`` is the file, ``reason`` why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ManifestError(CeasrError):
    """A manifest (or one of its rows) that cannot be used. ``line`` is 1-based, or None for the whole file."""

    def __init__(self, path, reason: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ConfigError(CeasrError):
    """A bad configuration file, field or command-line override."""
