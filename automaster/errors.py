"""Exceptions with exit codes: the CLI turns them into one-line messages, no traceback."""

from __future__ import annotations

import os


def one_line(text: object) -> str:
    """Collapse whitespace/newlines so a message always fits on one line."""
    return " ".join(str(text).split())


class AutomasterError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.message = one_line(message)
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


class UserError(AutomasterError):
    """A problem with the user's input, options or files (exit code 2)."""

    exit_code = 2


class InputError(UserError):
    """An input or reference file that cannot be used."""


class OutputError(UserError):
    """An output path that cannot be written."""


class SettingsError(UserError):
    """A settings (parameters) JSON file that cannot be used."""
