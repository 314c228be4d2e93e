"""Errors a user can fix. Entry points print them as one line and exit non-zero, never as a traceback."""

import functools
import sys


class UserError(Exception):
    """Bad input from the user: a path, a file's contents, a config value, a checkpoint."""


class DataError(UserError):
    """A dataset file or folder is missing or malformed. The message names the file and the cause."""


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or asks for something this machine cannot do."""


class CheckpointError(UserError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class NonFiniteError(UserError):
    """NaN or Inf where finite numbers are needed: weights of a checkpoint, input coordinates, features."""


def exit_on_user_error(main):
    """Wrap a script's main(): a UserError becomes `error: <message>` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
