"""Errors that reach the user as one line.

Library code raises these for problems a user can fix (a missing file, a corrupt
video, unreadable weights). Command-line entry points turn them into one line on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class InputError(UserError):
    """A file or argument that cannot be used: missing, corrupt, wrong kind."""


class WeightsError(UserError):
    """Model weights that cannot be found, downloaded or read."""
