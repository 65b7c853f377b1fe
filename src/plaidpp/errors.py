"""Errors a person can fix (bad input, missing file, bad option): the CLI prints one line and exits 2."""


class UserError(Exception):
    """Raised for problems in what the user gave us; never for bugs. Message: one line, says what to do."""
