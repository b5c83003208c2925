"""Helpers shared by the command-line tools."""

import contextlib
import sys

from inpainting.errors import InpaintingError

USER_ERRORS = (InpaintingError, FileNotFoundError, PermissionError)


def message(err, flag_names=None):
    """The one-line message of a user's error, naming the parameters it concerns as flags."""
    if isinstance(err, InpaintingError):
        return err.describe(flags=True, flag_names=flag_names)
    return str(err)


@contextlib.contextmanager
def user_errors(flag_names=None):
    """Turns errors caused by the user's input into one line on stderr and exit status 1.

    Args:
        flag_names: {library parameter: flag name} for the tool's flags not named like the
            parameter they set.
    """
    try:
        yield
    except USER_ERRORS as err:
        print(f"error: {message(err, flag_names)}", file=sys.stderr)
        sys.exit(1)
