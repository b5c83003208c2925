"""Helpers shared by the command-line tools."""

import contextlib
import sys

from inpainting.errors import InpaintingError

USER_ERRORS = (InpaintingError, FileNotFoundError, PermissionError)


@contextlib.contextmanager
def user_errors():
    """Turns errors caused by the user's input into one line on stderr and exit status 1."""
    try:
        yield
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
